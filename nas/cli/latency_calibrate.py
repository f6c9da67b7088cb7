"""`nas latency calibrate --device host`: the shipped (or any measured) table fitted to this machine."""
from __future__ import annotations

import argparse
from pathlib import Path

from nas.errors import UserError
from predictors.latency.calibrate import PASSES, PER_OP, calibrate
from predictors.latency.devices import SHIPPED, default_build_path
from predictors.latency.machine import PROBES
from predictors.latency.table import load_table, save_table


def run(args: argparse.Namespace) -> int:
    if args.device != "host":
        raise UserError(f"--device: only 'host' (this machine) can be calibrated here, not {args.device!r}")
    passes = PASSES if args.passes is None else args.passes
    if passes < 2:
        raise UserError(f"--passes: expected at least 2, got {passes}")
    source_path = Path(args.source) if args.source else SHIPPED / f"{args.device}.json"
    out = Path(args.out) if args.out else default_build_path(args.device)
    if out.resolve() == source_path.resolve():
        raise UserError(f"--out: {out} is the table being calibrated; write the calibrated table elsewhere")
    if out.exists():
        existing = load_table(out)
        if existing.kind == "measured":
            raise UserError(f"{out}: holds a measured table (a build of your own?), which calibrating would replace; "
                            "delete it or pass --out FILE")
    source = load_table(source_path)  # another machine's by assumption: no verdict (and no warning) for it
    if args.per_op < 0:
        raise UserError(f"--per-op: expected 0 (probe scales only) or more units per op, got {args.per_op}")
    print(f"timing {len(PROBES)} probe networks here, {passes} interleaved passes"
          + (f", then {args.per_op} units of each op twice" if args.per_op else "") + " (a minute or two) ...",
          flush=True)
    table = calibrate(source, source_path, passes=passes, per_op=args.per_op)
    cal = table.calibration or {}
    print(f"{'probe':10s} {'px':>4s} {'reference ms':>13s} {'here ms':>8s} {'fitted ms':>10s} {'loo err':>8s}   "
          f"(reference: the source's {cal['reference']})")
    for p in cal["probes"]:
        print(f"{p['name']:10s} {p['resolution']:4d} {p['reference_ms']:13.3f} {p['here_ms']:8.3f} "
              f"{p['fitted_ms']:10.3f} {p['loo_error_pct']:+7.1f}%")
    per_class = cal["per_class_error_pct"]
    scales = ", ".join(f"{k} x{v:.3f}" for k, v in cal["class_scales"].items())
    print(f"{cal.get('scales_method', cal['method'])}: x{cal['scale']:.4f} "
          f"(leave-one-out error {cal['one_scale_error_pct']:.1f}%)"
          + (f"; per op class {scales} ({per_class:.1f}%)" if per_class is not None else "")
          + (" -> per op class kept" if cal["method"] == "per op class" else ""))
    if "per_op" in cal:
        po = cal["per_op"]
        print(f"per op: {po['units_timed']} units timed here, every other entry carried by its op's ratio at its "
              f"size ({'the source correction carried' if po['correction'] == 'carried' else 'no correction'}): probe "
              f"error {po['probe_error_pct']:.1f}% -> {'kept' if po['kept'] else 'not kept'}")
    save_table(table, out)
    print(f"{out}: {table.label}, {len(table.entries)} units from {source_path}")
    print("check it on random subnets and the zoo: nas latency validate --device host --no-store --zoo")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a table measured elsewhere to this machine (about a minute)",
                       description="Time a few fixed probe networks here, fit the source table (default: the "
                                   "shipped one) to this machine - one scale, one per op class, or (timing a few "
                                   "units of each op) one ratio per op and size, where the probes say so - and "
                                   "write it as this machine's table, labelled `calibrated "
                                   "from <machine>` with its leave-one-out fit error. `nas latency build --device "
                                   "host` is the exact (slower) route.")
    p.add_argument("--device", default="host", help="only 'host' (this machine)")
    p.add_argument("--from", dest="source", metavar="FILE",
                   help="measured table to calibrate (default: the shipped table of --device)")
    p.add_argument("--out", metavar="FILE", help="calibrated table file (default runs/latency/<device>.json, which "
                                                 "then wins over the shipped table)")
    p.add_argument("--passes", type=int, help="interleaved timing passes over the probes (default 5)")
    p.add_argument("--per-op", type=int, default=PER_OP, metavar="K",
                   help=f"also time K units of each op here and carry every other entry by its op's ratio at its "
                        f"size, kept where the probes say it is better (default {PER_OP}; 0: probe scales only)")
    p.set_defaults(func=run)
