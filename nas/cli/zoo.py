"""`nas zoo`: the reference models with our parameter/FLOP counts next to the published ones."""
from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from search_spaces.reference import fidelity, zoo_names

PARAMS_TOL, FLOPS_TOL = 0.05, 0.15  # what tests/test_zoo.py holds every entry to


def run(args: argparse.Namespace) -> int:
    rows = [fidelity(n) for n in zoo_names()]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if args.markdown:
        print(markdown(rows))
        return 0
    table = Table(title="reference zoo (ours vs published; FLOPs = multiply-accumulates, fvcore)",
                  caption="deploy: every BN folded, the RepViT convention")
    for col in ("name", "family", "px", "params M", "pub", "err", "params M (deploy)", "err",
                "FLOPs M", "pub", "err", "FLOPs M (deploy)", "err", "top-1"):
        table.add_column(col, justify="left" if col in ("name", "family") else "right")

    def err(row: dict, key: str, tol: float) -> str:
        if f"{key}_err" not in row:
            return "-"
        e = row[f"{key}_err"]
        return f"[{'green' if abs(e) <= tol else 'red'}]{e:+.1%}[/]"

    for r in rows:
        table.add_row(r["name"], "+".join(r["families"]), str(r["resolution"]), f"{r['params'] / 1e6:.2f}",
                      f"{r.get('params_published', 0) / 1e6:.1f}", err(r, "params", PARAMS_TOL),
                      f"{r['params_deploy'] / 1e6:.2f}", err(r, "params_deploy", PARAMS_TOL),
                      f"{r['flops'] / 1e6:.0f}", f"{r.get('flops_published', 0) / 1e6:.0f}",
                      err(r, "flops", FLOPS_TOL), f"{r['flops_deploy'] / 1e6:.0f}",
                      err(r, "flops_deploy", FLOPS_TOL), str(r["top1"] or "-"))
    Console().print(table)
    return 0


def markdown(rows: list[dict], per_line: int = 2) -> str:
    """The README's zoo table: params and MACs in the RepViT deploy convention (every BN folded)
    beside the papers', `per_line` models to a table row."""
    cells = [f"{r['name']} | {r['params_deploy'] / 1e6:.2f} | {r.get('params_published', 0) / 1e6:.1f} | "
             f"{r['flops_deploy'] / 1e6:.0f} | {r.get('flops_published', 0) / 1e6:.0f}" for r in rows]
    cells += [" | | | | "] * (-len(cells) % per_line)
    head = ["| " + " | ".join(["model | params M | paper | MACs M | paper"] * per_line) + " |",
            "|" + "---|---:|---:|---:|---:|" * per_line]
    return "\n".join(head + ["| " + " | ".join(cells[i:i + per_line]) + " |" for i in range(0, len(cells), per_line)])


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("zoo", help="list the reference models and their published figures",
                       description="List the reference zoo (published models as ArchConfigs) with our "
                                   f"params/FLOPs against the papers' (tolerance {PARAMS_TOL:.0%} params, "
                                   f"{FLOPS_TOL:.0%} FLOPs). Zoo names work wherever an ARCH path does.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--markdown", action="store_true",
                   help="print the README's table: deploy-convention params/MACs (every BN folded) and the papers'")
    p.set_defaults(func=run)
