"""`nas latency validate --device host --samples N`: how well the table predicts this machine."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.cli.progress import counting_bar
from nas.errors import UserError
from predictors.latency.devices import open_device_table
from predictors.latency.validate import correction_of, validate


def run(args: argparse.Namespace) -> int:
    if args.samples < 4:
        raise UserError(f"--samples: expected at least 4, got {args.samples}")
    if args.repeats < 2:
        raise UserError(f"--repeats: expected at least 2 (the measurement's agreement with itself needs two "
                        f"independent timings of each subnet), got {args.repeats}")
    if args.zoo_repeats is not None and args.zoo_repeats < 2:
        raise UserError(f"--zoo-repeats: expected at least 2, got {args.zoo_repeats}")
    if args.zoo_repeats is not None and not args.zoo:
        raise UserError("--zoo-repeats: only with --zoo")
    table, path = open_device_table(args.device, args.table)
    out = Path(args.out) if args.out else Path("runs/latency") / f"validate-{table.device}"
    zoo_note = f" and the zoo ({args.zoo_repeats or args.repeats} timings each)" if args.zoo else ""
    print(f"validating {table.label}: {args.samples} random subnets ({args.repeats} interleaved timings each)"
          + zoo_note, flush=True)
    with counting_bar("measuring subnets end to end", args.quiet) as progress:
        report = validate(table, path, args.samples, args.seed, out, progress=progress, store=not args.no_store,
                          repeats=args.repeats, zoo=args.zoo, zoo_repeats=args.zoo_repeats, pin=not args.no_pin)
    for name, key in (("LUT (plain sum)", "lut_plain_sum"),
                      ("LUT (corrected, out-of-fold)", "lut_corrected_out_of_fold"),
                      ("LUT (+ weights' terms, out-of-fold)", "lut_weights_out_of_fold"),
                      ("FLOPs line (out-of-fold)", "flops_linear_out_of_fold")):
        if key not in report:  # a table whose entries lack weight bytes has no floor to compare
            continue
        print(f"{name:35s} {_bands(report[key])}  MAPE: {report[key]['mape']:6.2%}  "
              f"Kendall tau: {report[key]['kendall_tau']:.3f}")
    rep = report["measurement_repeatability"]
    if rep:
        print(f"{'measurement vs itself':35s} {_bands(rep)}  (two half-measurements of {rep['subnets']} subnets, "
              f"{rep['timings_per_half']} timing(s) each: the floor of every figure)")
    for r, fig in report["per_resolution"].items():
        noise = fig["measurement_repeatability"]
        print(f"  {r + ' px':8s} {fig['samples']:4d} subnets  LUT {_bands(fig['lut'])}  FLOPs "
              f"{_bands(fig['flops_linear_out_of_fold'])}" + (f"  itself {_bands(noise)}" if noise else ""))
    if "zoo" in report:
        z = report["zoo"]
        worst = sorted(z["models"], key=lambda m: -abs(m["error_pct"]))[:3]
        print(f"zoo: {z['within_10pct']} of {z['of']} within 10%, {z['within_5pct']} within 5% (worst: "
              + ", ".join(f"{m['name']} {m['error_pct']:+.1f}%" for m in worst) + "); with this run's correction "
              f"{z['refitted_within_10pct']} / {z['refitted_within_5pct']}")
    c = report["correction"]
    print(f"correction: x{c['scale']:.4f} {c['per_unit_us']:+.1f} us per unit{correction_of(report, '').weight_note} "
          f"({'not used' if not c['used'] else 'not stored' if args.no_store else 'stored'})")
    proto = report["protocol"]
    pin = "not pinned" if proto["pinned_cpu"] is None else f"pinned to CPU {proto['pinned_cpu']}"
    print(f"protocol: {pin}, a disturbed timing taken again up to {proto['retries']} times; "
          f"{proto['disturbed_kept']} of {proto['timings_with_share']} kept timings still disturbed")
    print(f"report: {out / 'validate.json'}  plot: {out / 'validate.png'}")
    return 0


def _bands(m: dict) -> str:
    return f"within 5%: {m['within_5pct']:6.1%}  within 10%: {m['within_10pct']:6.1%}"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="compare table predictions with end-to-end measurement",
                       description="Measure N random subnets end to end with ONNX Runtime (two or more interleaved "
                                   "passes) and report, overall and per resolution, against the table's prediction, "
                                   "a FLOPs-fitted line and the measurement's agreement with itself: % within 5% and "
                                   "10%, mean abs % error, Kendall tau. Fits and stores a linear correction where it "
                                   "helps. Resumes an interrupted run from its samples.jsonl.")
    p.add_argument("--device", default="host", help="device whose table to validate (measured here: host)")
    p.add_argument("--table", metavar="FILE", help="a table file instead of the device's")
    p.add_argument("--samples", type=int, default=100, help="random subnets (default 100)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeats", type=int, default=2,
                   help="end-to-end timings per subnet (at least 2), in interleaved passes with fresh sessions; the "
                        "lowest median is kept; the odd- against the even-numbered timings measure the "
                        "measurement's own agreement (default 2; 6: two 3-pass measurements)")
    p.add_argument("--zoo", action="store_true",
                   help="also time the reference-zoo models (at their resolution) in the same passes, reported apart")
    p.add_argument("--zoo-repeats", type=int, metavar="K",
                   help="timings per zoo model (default: --repeats); the passes beyond --repeats time the zoo only")
    p.add_argument("--out", metavar="DIR", help="report folder (default runs/latency/validate-<device>)")
    p.add_argument("--no-store", action="store_true", help="do not write the correction into the table")
    p.add_argument("--no-pin", action="store_true",
                   help="do not pin the timings to one CPU (pinning repeats better on some VMs and worse on others: "
                        "benchmarks/latency_repeatability.py says which this machine is)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)
