"""`nas latency estimate --device pixel6 --from host`: a table for a device that cannot be measured here."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from predictors.latency.devices import default_build_path, table_path
from predictors.latency.pixel6 import estimate_table
from predictors.latency.table import load_table, save_table

ESTIMABLE = ("pixel6",)


def host_table(source: str):
    """(table, path) from a device name or a table file."""
    path = Path(source) if source.endswith(".json") or Path(source).is_file() else table_path(source)
    return load_table(path), path


def shown_path(path: Path) -> str:
    """`path` relative to the working folder where it lies below it: tables record where they came
    from, and a shipped table should not record one machine's absolute checkout path."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def run_estimate(args: argparse.Namespace) -> int:
    if args.device not in ESTIMABLE:
        raise UserError(f"--device: no estimate method for {args.device!r} (estimable: {', '.join(ESTIMABLE)})")
    host, host_path = host_table(args.source)
    table = estimate_table(host, shown_path(host_path))
    out = save_table(table, Path(args.out) if args.out else default_build_path(args.device))
    est = table.estimate or {}
    flagged = sum(e.extrapolated for e in table.entries.values())
    print(f"{out}: {table.label} table, {len(table.entries)} units from {host_path}")
    print(f"pixel6_ms = {est['a']:.4f} * host_ms + {est['b_ms']:.3f}; leave-one-out error "
          + ", ".join(f"{k} {v:+.1f}%" for k, v in est["loo_error_pct"].items())
          + f"; median |error| {est['error_pct']:.1f}%")
    print(f"predictions give the model alone ({est['a']:.4f} * host_ms); "
          f"the pipeline's {est['b_ms']:.3f} ms is stated beside them")
    print(f"{flagged} units of ops no calibration model has are flagged extrapolated "
          f"({', '.join(est['extrapolated_ops']) or 'none'})")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="estimate a device's table from the host table and published figures",
                       description="Build the ESTIMATED table of a device that cannot be measured here (pixel6) by "
                                   "mapping a measured host table through published latencies of reference models; "
                                   "the fit's leave-one-out error is stored in the table.")
    p.add_argument("--device", default="pixel6", help=f"device to estimate ({', '.join(ESTIMABLE)})")
    p.add_argument("--from", dest="source", default="host", metavar="DEVICE|FILE",
                   help="measured host table: a device name or a table file (default host)")
    p.add_argument("--out", metavar="FILE", help="table file (default runs/latency/<device>.json)")
    p.set_defaults(func=run_estimate)
