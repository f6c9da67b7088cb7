"""How long a full host table build takes from nothing (issue 5's build-time target: <= 15 min).

    python benchmarks/latency_build_time.py [--work DIR] [--tiny]

Builds a fresh table for the default resolutions into --work (not the shipped table), exactly as
`nas latency build --device host --threads 1` does: listing the units, exporting and timing them,
then the retiming pass for noisy entries. Wall time from the call to the finished file. Resumable
like any build (a rerun continues; its time then covers only what was left, and the report says
so). Run it on an otherwise idle machine. `--tiny` (for tests) times a few units of the smallest
resolution a few runs each: it checks the pipeline and measures nothing.

Writes benchmarks/results/latency_build_time.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import TINY_TIMING  # noqa: E402

from nas.atomic import atomic_write_text  # noqa: E402
from predictors.latency.build import DEFAULT_POLICY, build_table, default_resolutions  # noqa: E402
from predictors.latency.validate import machine_info  # noqa: E402

TARGET_S = 900
TINY_UNITS = 5


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "hybrid-nas-build-time"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "latency_build_time.json"))
    ap.add_argument("--tiny", action="store_true",
                    help=f"{TINY_UNITS} units of the smallest resolution, a few runs each (smoke test)")
    args = ap.parse_args(argv)
    table = Path(args.work) / "host.json"
    table.parent.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    resolutions = [min(default_resolutions())] if args.tiny else default_resolutions()
    report = build_table(table, "host", 1, resolutions, policy=TINY_TIMING if args.tiny else DEFAULT_POLICY,
                         limit=TINY_UNITS if args.tiny else None)
    seconds = time.perf_counter() - tic
    fresh = report.skipped == 0
    result = {"seconds": round(seconds, 1), "target_s": TARGET_S,
              "passed": fresh and not args.tiny and seconds <= TARGET_S, "tiny": args.tiny,
              "from_nothing": fresh, "units": report.total, "measured_this_run": report.measured,
              "already_there": report.skipped, "noisy_timings_retimed": report.retimed,
              "measurement_seconds": round(report.seconds, 1), "resolutions": resolutions,
              "machine": machine_info()}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"build: {report.measured} units measured ({report.skipped} already there, {report.retimed} retimed) "
          f"in {seconds:.0f} s{'' if fresh else ' (a resumed build: not a full-build time)'} -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
