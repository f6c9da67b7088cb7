"""`nas latency pack`: a zip of the table's unit models and a runner, to measure a device where it is."""
from __future__ import annotations

import argparse

from nas.cli.args import output_file, resolutions
from nas.cli.progress import counting_bar
from nas.errors import UserError
from nas.export import require_converter
from predictors.latency.devices import open_device_table
from predictors.latency.probe import select_keys, write_pack


def run_pack(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit: expected a positive integer, got {args.limit}")
    output_file("--out", args.out)  # before any unit is exported
    table, path = open_device_table(args.device, args.table)
    wanted = resolutions(args.resolutions) if args.resolutions else None
    keys = select_keys(table, wanted, args.limit)
    if args.runtime == "litert":
        require_converter()
    with counting_bar("exporting unit models", args.quiet, total=len(keys)) as progress:
        report = write_pack(table, args.out, keys, progress=progress, runtime=args.runtime)
    print(f"{report.path}: {report.models} unit models of {table.label} table {path} "
          f"({report.bytes / 1e6:.1f} MB); unzip it on the device and follow its README.md")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("pack", help="zip the table's unit models and a runner for a real device",
                       description="Export one static ONNX (or .tflite) model per table entry, a manifest, a "
                                   "runner script (ONNX Runtime or LiteRT, writes results.csv) and instructions, into "
                                   "one zip. Measure on the device, then `nas latency import results.csv --device "
                                   "DEVICE`.")
    p.add_argument("--device", default="pixel6", help="device whose table's units to pack (default pixel6)")
    p.add_argument("--table", metavar="FILE", help="a table file instead of the device's")
    p.add_argument("--out", required=True, metavar="ZIP", help="output zip file")
    p.add_argument("--resolutions", metavar="R,...", help="only the units the space and zoo need at these resolutions")
    p.add_argument("--runtime", choices=("onnxruntime", "litert"), default="onnxruntime",
                   help="ONNX models timed with ONNX Runtime (default), or .tflite models timed with LiteRT, the "
                        "phone's own runtime (needs the litert-convert extra; ~1.5 s a unit to convert)")
    p.add_argument("--limit", type=int, help="only the first N entries (quick checks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_pack)
