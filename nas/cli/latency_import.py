"""`nas latency import`: a device's runner results become its measured table."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli.args import output_file, path_name
from nas.errors import UserError
from predictors.latency.devices import default_build_path, open_device_table
from predictors.latency.probe import load_results, measured_table
from predictors.latency.table import save_table

SHOW = 3  # keys listed per unknown/missing group


def _some(keys: list[str]) -> str:
    more = f", ... ({len(keys) - SHOW} more)" if len(keys) > SHOW else ""
    return ", ".join(keys[:SHOW]) + more


def run_import(args: argparse.Namespace) -> int:
    if args.out:
        output_file("--out", args.out)
    rows, info, source = load_results(args.results)
    reference, ref_path = open_device_table(args.device, args.table)
    report = measured_table(rows, info, reference, args.device)
    if not report.imported:
        raise UserError(f"{source}: none of its {len(rows) - 1} keys is in the {reference.label} table {ref_path}; "
                        "was the pack made from another table?")
    if report.missing and not (args.out or args.allow_partial):
        raise UserError(f"{source}: {len(report.missing)} of {len(reference.entries)} units of {ref_path} are not "
                        f"measured, and the {args.device} table it would replace covers them; measure them all, "
                        "or pass --out FILE (or --allow-partial to replace it anyway)")
    out = save_table(report.table, Path(args.out) if args.out else default_build_path(args.device))
    print(f"{out}: measured {args.device} table, {report.imported} units from {source} "
          f"(overhead {report.table.overhead_us:.1f} us, cpu {report.table.cpu})")
    if report.unknown:
        print(f"warning: {len(report.unknown)} keys not in {ref_path} were skipped: {_some(report.unknown)}")
    if report.missing:
        print(f"warning: {len(report.missing)} of {len(reference.entries)} table units have no measurement; "
              f"predictions needing them will fail: {_some(report.missing)}")
    return 0


def _device_name(text: str) -> str:
    return path_name(text)  # the default table file is runs/latency/<device>.json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="turn a probe pack's results into a measured table",
                       description="Read results.csv written by a probe pack's runner (or a zip holding it and "
                                   "run_info.json), check it, and write a measured table for the device, with "
                                   "unit descriptions from the device's current table.")
    p.add_argument("results", help="results.csv or a .zip containing it")
    p.add_argument("--device", default="pixel6", type=_device_name,
                   help="device the results were measured on (default pixel6)")
    p.add_argument("--table", metavar="FILE", help="table the pack was made from (default: the device's)")
    p.add_argument("--out", metavar="FILE", help="table file (default runs/latency/<device>.json)")
    p.add_argument("--allow-partial", action="store_true",
                   help="replace the device's table even when the results cover only part of it")
    p.set_defaults(func=run_import)
