"""`nas search ... --verify` / `--refine K --data DIR`: the finalists stage after the search.

--verify     the finalists (spread over the budget's upper range) are timed end to end here with
             the table's runtime (ONNX Runtime; LiteRT for a LiteRT table); the winner is the most
             accurate one whose *measured* latency fits. Only for tables of this machine (`host`):
             a phone cannot be measured here.
--refine K   K finalists race with real training (the standalone recipe, successive halving:
             all train the first rung, the better half continue their runs, the best to the full
             recipe); the winner is chosen on val top-1, never test. The finalists come from the
             front widened by the predictor's out-of-fold error (finalists.near_front), so that
             slower members it cannot tell from its favourite get their race. Resumable: each run
             is a training folder under the output folder's refine/ (named by member and recipe:
             studies under one --out share a member's run), each result is in the study.
Both rewrite best.json to the winner (meta.search.finalists records every measurement and rung)
and write finalists.json. Default off: the plain search stays seconds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from nas.arch import save_arch
from nas.atomic import atomic_write_text
from nas.data import load_dataset
from nas.errors import UserError
from nas.export import require_converter
from nas.search.finalists import Plan, choose
from nas.search.results import complete_rows, result_arch
from predictors.latency.validate import measure_arch


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verify", action="store_true",
                   help="measure the finalists end to end here (host tables only); the winner is the most "
                        "accurate one whose measured latency fits")
    p.add_argument("--refine", type=int, default=0, metavar="K",
                   help="race K finalists with real training (successive halving to the full recipe; needs "
                        "--data); the winner is the best val top-1. Resumable")
    p.add_argument("--refine-epochs", type=int, default=4, help="the race's full recipe in epochs (default 4)")
    p.add_argument("--refine-batch-size", type=int, default=64, help="the race's batch size (default 64)")


def check(args: argparse.Namespace, table: Any) -> None:
    """Refuse a finalists request that cannot run, before the search starts."""
    if args.refine < 0 or args.refine > 32:
        raise UserError(f"--refine {args.refine}: expected 0 (off) to 32 finalists")
    if args.refine_epochs < 1 or args.refine_batch_size < 1:
        raise UserError("--refine-epochs / --refine-batch-size: expected positive numbers")
    if args.refine and not args.data:
        raise UserError("--refine: the race trains the finalists; give the dataset with --data DIR")
    if args.verify and table.kind == "estimated":
        raise UserError(f"--verify: the {table.device} table is an estimate of a device that is not here; "
                        "measured verification needs a table of this machine (--device host)")
    if args.verify and table.runtime == "litert":
        require_converter()  # the finalists are converted to .tflite and timed with LiteRT, like the table


def finish(args: argparse.Namespace, study: Any, ctx: Any, run_dir: Path) -> dict[str, Any] | None:
    """Run the finalists stage if asked; rewrite best.json to the winner. Returns the record."""
    if not (args.verify or args.refine):
        return None
    problem = ctx.problem
    rows = complete_rows(study, problem.space, problem.budget_ms)
    holdout = problem.source.describe().get("holdout") or {}  # a supernet states no error: margin 0
    plan = Plan(k=args.refine or 5, verify=args.verify, refine=bool(args.refine), epochs=args.refine_epochs,
                batch_size=args.refine_batch_size, threads=problem.table.threads,
                margin=float(holdout.get("mae") or 0.0))
    data = load_dataset(args.data) if args.refine else None
    try:
        winner, record = choose(study, rows, problem.space, problem.budget_ms, plan, run_dir.parent / "refine",
                                data=data,
                                measure=lambda arch: measure_arch(arch, plan.threads, problem.table.runtime,
                                                                     run_dir / "tflite"))
    except ValueError as exc:
        raise UserError(f"--verify/--refine: {exc}") from None
    best = result_arch(ctx, winner, f"{ctx.study}-best")
    best = best.with_meta(search={**best.meta["search"], "finalists": record})
    save_arch(best, run_dir / "best.json")
    atomic_write_text(run_dir / "finalists.json", json.dumps(record, indent=1) + "\n")
    _print(record)
    return record


def _print(record: dict[str, Any]) -> None:
    table = Table(title=f"finalists (winner chosen on {record['chosen_on']})")
    for col in ("trial", "predicted %", "table ms", "measured ms", "fits", "val top-1 by epoch"):
        table.add_column(col, justify="right")
    for f in record["finalists"]:
        mark = " *" if f["arch_hash"] == record["winner"] else ""
        val = ", ".join(f"{e}: {100 * v:.1f}" for e, v in sorted(f["val_acc"].items(), key=lambda kv: int(kv[0])))
        table.add_row(f"{f['trial']}{mark}", f"{100 * f['predicted_acc']:.2f}", f"{f['predicted_ms']:.3f}",
                      "-" if f["measured_ms"] is None else f"{f['measured_ms']:.3f}",
                      "-" if f["fits"] is None else ("yes" if f["fits"] else "no"), val or "-")
    Console().print(table)
