"""Build the shipped host latency table and validate it (issue 5's host figures).

    python benchmarks/latency_host.py [--samples 100] [--table predictors/latency/tables/host.json]

1. `nas latency build --device host --threads 1` for the default resolutions into the table file
   (resumable: run again after a kill), timing the build;
2. `nas latency validate --samples N` on random subnets (resumable via its samples journal),
   storing the fitted correction in the table;
3. writes benchmarks/results/latency_host.json (build time, unit count, validation figures for the
   table and the FLOPs baseline, machine info and library versions) and latency_host.png.

Measure on a quiet machine: anything else running on the cores distorts every number.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from nas.atomic import atomic_write_text
from predictors.latency.build import build_table, default_resolutions
from predictors.latency.table import load_table
from predictors.latency.validate import machine_info, validate

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="predictors/latency/tables/host.json")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    path = Path(args.table)
    resolutions = default_resolutions()
    t0 = time.perf_counter()
    report = build_table(path, "host", 1, resolutions, progress=_progress("build"))
    build_s = time.perf_counter() - t0
    table = load_table(path)
    work = RESULTS / "latency_host_samples"
    result = validate(table, path, args.samples, args.seed, work, progress=_progress("validate"))
    shutil.copy(work / "validate.png", RESULTS / "latency_host.png")
    build = {"units_measured_this_run": report.measured, "seconds_this_run": round(build_s, 1),
             "noisy_timings_retimed": report.retimed, "already_there": report.skipped}
    previous = RESULTS / "latency_host.json"
    if report.measured == 0 and previous.exists():  # a rerun that only revalidates keeps the full build's record
        build = json.loads(previous.read_text()).get("build", build) | {"revalidated_after": build}
    summary = {
        "command": f"python benchmarks/latency_host.py --samples {args.samples} --seed {args.seed}",
        "table": str(path), "resolutions": resolutions, "units": len(table.entries),
        "build": build,
        "overhead_us": table.overhead_us, "machine": machine_info(),
        **{k: v for k, v in result.items() if k not in ("points", "machine")},
    }
    atomic_write_text(RESULTS / "latency_host.json", json.dumps(summary, indent=1) + "\n")
    lut, fl = result["lut"], result["flops_linear_out_of_fold"]
    print(f"build: {report.measured} units in {build_s:.0f} s ({report.skipped} already there)")
    print(f"LUT:   {lut['within_5pct']:.0%} within 5%, {lut['within_10pct']:.0%} within 10%, MAPE {lut['mape']:.1%}, "
          f"tau {lut['kendall_tau']:.3f}")
    print(f"FLOPs: {fl['within_5pct']:.0%} within 5%, {fl['within_10pct']:.0%} within 10%, MAPE {fl['mape']:.1%}, "
          f"tau {fl['kendall_tau']:.3f}")


def _progress(what: str):
    state = {"last": 0.0}

    def report(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - state["last"] > 30 or done == total:
            state["last"] = now
            print(f"{what}: {done}/{total}", flush=True)
    return report


if __name__ == "__main__":
    main()
