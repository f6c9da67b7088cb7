"""`nas latency build|predict|show|validate|calibrate|pack|import`: the latency-table builder and its uses."""
from __future__ import annotations

import argparse
import json
from collections import Counter

from rich.console import Console
from rich.table import Table

from nas.cli import latency_calibrate, latency_estimate, latency_import, latency_pack, latency_validate
from nas.cli.args import output_file, resolutions
from nas.cli.latency_estimate import host_table, shown_path
from nas.cli.progress import counting_bar
from nas.errors import UserError
from nas.export import require_converter
from predictors.latency import cross_runtime
from predictors.latency.build import build_table, default_resolutions, needed_units
from predictors.latency.devices import default_build_path, open_device_table
from predictors.latency.measure import RunPolicy
from predictors.latency.predict import predict
from predictors.latency.table import load_table, runtime_note, save_table
from search_spaces.reference import resolve_arch


def run_build(args: argparse.Namespace) -> int:
    wanted = resolutions(args.resolutions) if args.resolutions else default_resolutions()
    out = output_file("--out", args.out) if args.out else default_build_path(args.device)
    if args.threads < 1:
        raise UserError(f"--threads: expected a positive integer, got {args.threads}")
    units, reference = None, None
    if args.sample_per_op is not None:
        if args.runtime != "litert":
            raise UserError("--sample-per-op: only with --runtime litert (an ONNX Runtime table is timed in full)")
        if args.sample_per_op < 1:
            raise UserError(f"--sample-per-op: expected a positive integer, got {args.sample_per_op}")
        reference, ref_path = host_table(args.derive_from)
        units = cross_runtime.zoo_units(wanted) | cross_runtime.sample_units(
            needed_units(wanted), reference, args.sample_per_op)
    if args.runtime == "litert":
        require_converter()
    with counting_bar(f"measuring {args.device} units ({args.runtime})", args.quiet) as progress:
        report = build_table(out, args.device, args.threads, wanted, RunPolicy(), limit=args.limit,
                             progress=progress, units=units, runtime=args.runtime, passes=args.passes)
    what = "timed a second time" if args.passes == 2 else "noisy timings retimed"
    print(f"{report.path}: {report.measured} units measured in {report.seconds:.0f} s, {report.skipped} already there, "
          f"{report.total} needed for resolutions {','.join(map(str, wanted))}; {report.retimed} {what}")
    if reference is not None and args.limit is None:
        table = load_table(out)
        derived = cross_runtime.derive_missing(table, reference, shown_path(ref_path), needed_units(wanted))
        save_table(table, out)
        print(f"{derived} further units derived from {shown_path(ref_path)} by per-op LiteRT/ORT ratios fitted on "
              f"the {table.derivation['timed']} timed ones (each entry says so; predictions count them); held-out "
              f"error per unit: median {table.derivation['leave_one_out']['*']['median_abs']:.0%}")
    return 0


def run_predict(args: argparse.Namespace) -> int:
    arch = resolve_arch(args.arch)
    table, path = open_device_table(args.device, args.table)
    pred = predict(arch, table, breakdown=True)
    if args.json:
        print(json.dumps({"arch": arch.name, "arch_hash": arch.arch_hash(), "device": table.device,
                          "kind": table.kind, "label": table.kind_note, "machine": table.provenance.where,
                          "ms": round(pred.ms, 4), "plain_ms": round(pred.plain_ms, 4),
                          "error_pct": pred.error_pct, "pipeline_ms": pred.pipeline_ms, "table": str(path),
                          "derived_units": pred.derived, "runtime": runtime_note(table),
                          "sections": [{"name": n, "ms": round(ms, 4), "units": k} for n, ms, k in pred.sections]},
                         indent=2))
        return 0
    out = Table(title=f"{arch.name} at {arch.resolution}px on {table.label}")
    for col in ("part", "units", "ms"):
        out.add_column(col, justify="right" if col != "part" else "left")
    for name, ms, k in pred.sections:
        out.add_row(name, str(k), f"{ms:.3f}")
    out.add_row("runtime call", "", f"{table.overhead_us / 1000:.3f}")
    c = table.correction
    if c.bandwidth_gbs:
        out.caption = f"each unit at least its weights' read time at {c.bandwidth_gbs:g} GB/s (the table's floor)"
    if (c.scale, c.per_unit_us, c.offset_us, c.per_mb_us) != (1.0, 0.0, 0.0, 0.0):
        summed = sum(ms for _, ms, _ in pred.sections) + table.overhead_us / 1000
        out.add_row("correction", "", f"{pred.ms - summed:+.3f}")
    Console().print(out)
    print(f"predicted: {pred.label}; {runtime_note(table)}")
    if table.kind == "estimated":
        print(f"note: {table.device} is an ESTIMATED table ({(table.estimate or {}).get('method', 'see the file')})")
    return 0


def run_show(args: argparse.Namespace) -> int:
    table, path = open_device_table(args.device, args.table)
    print(f"{path}: {table.label}, {len(table.entries)} units, resolutions {table.resolutions}")
    print(f"cpu {table.cpu}; {runtime_note(table)}; created {table.created}")
    if table.machine:
        probe = table.machine.probe
        print(f"measured on {table.machine.name}" + (f"; probe noise ±{probe.noise_pct:.0f}%, taken {probe.taken}"
                                                     if probe else ""))
    if table.calibration:
        cal = table.calibration
        print(f"calibrated from {cal.get('from')} ({cal.get('from_table')}): {cal.get('method')} "
              f"x{cal.get('scale')}, leave-one-out fit error {cal.get('fit_error_pct')}% on the probe networks")
    c = table.correction
    print(f"per-call overhead {table.overhead_us:.1f} us; correction x{c.scale:.4f} {c.per_unit_us:+.1f} us/unit "
          f"{c.offset_us:+.1f} us{c.weight_note} ({c.note})")
    derived = sum(e.derived is not None for e in table.entries.values())
    if derived:
        print(f"{derived} entries derived, not timed on the table's machine (each entry says how)")
    if table.unavailable:
        key, why = next(iter(sorted(table.unavailable.items())))
        print(f"{len(table.unavailable)} units the runtime could not run, e.g. {key}: {why}")
    for op, n in Counter(e.op for e in table.entries.values()).most_common():
        print(f"  {op:16s} {n:6d}")
    return 0


def _common(p: argparse.ArgumentParser, table: bool = True) -> None:
    p.add_argument("--device", default="host", help="device name (see `nas devices`; default host)")
    if table:
        p.add_argument("--table", metavar="FILE", help="a table file instead of the device's")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("latency", help="build, inspect and use per-device latency tables",
                       description="Per-device latency lookup tables of measured unit latencies (ONNX Runtime).")
    s = p.add_subparsers(dest="latency_command", metavar="SUBCOMMAND")
    s.required = True

    b = s.add_parser("build", help="measure the units a table must cover (resumable)",
                     description="Export every needed unit to ONNX and time it with ONNX Runtime (CPU EP), or "
                                 "convert it to .tflite and time it with LiteRT (--runtime litert). "
                                 "Killed and run again, it continues where it stopped.")
    b.add_argument("--device", default="host", help="only 'host' (this machine) can be measured here")
    b.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    b.add_argument("--resolutions", metavar="R,...",
                   help="resolutions to cover (default: every one the hybrid space and the reference zoo use)")
    b.add_argument("--out", metavar="FILE", help="table file (default runs/latency/<device>.json)")
    b.add_argument("--runtime", choices=("onnxruntime", "litert"), default="onnxruntime",
                   help="time units with ONNX Runtime (default) or LiteRT/XNNPACK, the phone's runtime "
                        "(needs the litert-convert extra; ~1.5 s a unit: see --sample-per-op)")
    b.add_argument("--sample-per-op", type=int, metavar="K",
                   help="LiteRT: time the zoo's units and K units of each op, derive the rest from --derive-from")
    b.add_argument("--derive-from", default="host", metavar="DEVICE|FILE",
                   help="the ONNX Runtime table the untimed LiteRT entries are derived from (default host)")
    b.add_argument("--limit", type=int, help="stop after measuring this many units")
    b.add_argument("--passes", type=int, choices=(1, 2), default=1,
                   help="2: time every unit a second time, in shuffled order, keeping the lower median (about twice "
                        "the build time; for a machine whose speed drifts over minutes: docs/latency.md)")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)

    pr = s.add_parser("predict", help="predicted latency of an architecture, per stage",
                      description="Sum of the table's unit latencies for ARCH, less the per-call overheads, "
                                  "plus one, with the table's validated correction.")
    pr.add_argument("arch", help="architecture JSON file or reference-zoo name")
    _common(pr)
    pr.add_argument("--json", action="store_true", help="machine-readable output")
    pr.set_defaults(func=run_predict)

    sh = s.add_parser("show", help="a table's provenance and contents", description="Summarise a latency table.")
    _common(sh)
    sh.set_defaults(func=run_show)
    # The longer sub-commands live next to the code they drive.
    for extra in (latency_validate, latency_calibrate, latency_estimate, latency_pack, latency_import):
        extra.add_parser(s)
