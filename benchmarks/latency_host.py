"""Build the shipped host latency table and validate it (issue 5's host figures).

    python benchmarks/latency_host.py [--samples 100] [--table predictors/latency/tables/host.json]
    python benchmarks/latency_host.py --tiny --samples 4 --table T.json --results DIR   # seconds (smoke test)

1. `nas latency build --device host --threads 1` for the default resolutions into the table file
   (resumable: run again after a kill), timing the build;
2. `nas latency validate --samples N` on random subnets (resumable via its samples journal),
   storing the fitted correction in the table;
3. writes benchmarks/results/latency_host.json (build time, unit count, validation figures for the
   table and the FLOPs baseline, machine info and library versions) and latency_host.png.

Measure on a quiet machine: anything else running on the cores distorts every number. `--tiny`
builds only the units of the --samples subnets at the smallest resolution, a few runs each, and
validates on them: it checks the pipeline and measures nothing (give --table and --results).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reporting import TINY_TIMING  # noqa: E402

from nas.atomic import atomic_write_text  # noqa: E402
from nas.blocks.units import arch_units  # noqa: E402
from predictors.latency.build import DEFAULT_POLICY, build_table, default_resolutions, open_or_create  # noqa: E402
from predictors.latency.table import load_table  # noqa: E402
from predictors.latency.validate import machine_info, sample_archs, validate  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="predictors/latency/tables/host.json")
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the report, plot and validation go "
                                                                "(default benchmarks/results)")
    ap.add_argument("--tiny", action="store_true", help="only the --samples subnets' units at the smallest "
                                                       "resolution, a few runs each (smoke test)")
    args = ap.parse_args(argv)
    path, results = Path(args.table), args.results
    resolutions = [min(default_resolutions())] if args.tiny else default_resolutions()
    units = None
    if args.tiny:  # the units validation will need, and no others
        header = open_or_create(path, "host", 1, resolutions)
        units = {u.key: u for a in sample_archs(header, args.samples, args.seed) for u in arch_units(a)}
    t0 = time.perf_counter()
    report = build_table(path, "host", 1, resolutions, policy=TINY_TIMING if args.tiny else DEFAULT_POLICY,
                         progress=_progress("build"), units=units)
    build_s = time.perf_counter() - t0
    table = load_table(path)
    work = results / "latency_host_samples"
    result = validate(table, path, args.samples, args.seed, work, progress=_progress("validate"))
    shutil.copy(work / "validate.png", results / "latency_host.png")
    build = {"units_measured_this_run": report.measured, "seconds_this_run": round(build_s, 1),
             "noisy_timings_retimed": report.retimed, "already_there": report.skipped}
    previous = results / "latency_host.json"
    if report.measured == 0 and previous.exists():  # a rerun that only revalidates keeps the full build's record
        build = json.loads(previous.read_text()).get("build", build) | {"revalidated_after": build}
    summary = {
        "command": f"python benchmarks/latency_host.py --samples {args.samples} --seed {args.seed}"
                   + (" --tiny" if args.tiny else ""),
        "table": str(path), "resolutions": resolutions, "units": len(table.entries),
        "build": build,
        "overhead_us": table.overhead_us, "machine": machine_info(),
        **{k: v for k, v in result.items() if k not in ("points", "machine")},
    }
    atomic_write_text(results / "latency_host.json", json.dumps(summary, indent=1) + "\n")
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
