#!/usr/bin/env python3
"""Probe-pack runner: time every model of a `nas latency pack` zip on the device it runs on.

Shipped inside the pack as runner.py; needs only Python 3.9+, numpy and onnxruntime, so it runs on
a phone (see the pack's README). Each model is timed the way the host tables are (CPU execution
provider, fixed threads, full graph optimisation, warm-up then timed runs; median and 10th/90th
percentile), and `__overhead__` (a single Add on one float) measures the per-call cost that the
table counts once per inference. Writes results.csv (key,median_us,p10_us,p90_us,runs) and
run_info.json (runtime, machine) for `nas latency import`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

COLUMNS = ("key", "median_us", "p10_us", "p90_us", "runs")


def make_session(path: Path, threads: int):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def time_model(path: Path, threads: int, warmup: int, runs: int, min_seconds: float) -> tuple[float, float, float, int]:
    """(median, p10, p90 in microseconds, runs) of session.run on random inputs."""
    session = make_session(path, threads)
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
             for i in session.get_inputs()}
    for _ in range(warmup):
        session.run(None, feeds)
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    us = np.asarray(times) * 1e6
    return float(np.median(us)), float(np.percentile(us, 10)), float(np.percentile(us, 90)), len(times)


def run_info(threads: int) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "machine": platform.machine(), "platform": platform.platform(), "ort_version": ort.__version__,
            "threads": threads, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the probe pack's ONNX models; write results.csv.")
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent), help="unzipped pack folder")
    parser.add_argument("--out", default="results.csv", help="results file (default results.csv)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (default 1)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30, help="at least this many timed runs per model")
    parser.add_argument("--min-seconds", type=float, default=0.05, help="and at least this long per model")
    parser.add_argument("--limit", type=int, help="only the first N models (a quick check)")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    models = [manifest["overhead"], *manifest["models"][:args.limit]]
    out = Path(args.out)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i, model in enumerate(models):
            median, p10, p90, n = time_model(folder / model["file"], args.threads, args.warmup, args.runs,
                                             args.min_seconds)
            writer.writerow([model["key"], f"{median:.3f}", f"{p10:.3f}", f"{p90:.3f}", n])
            fh.flush()
            print(f"[{i + 1}/{len(models)}] {median:10.1f} us  {model['key']}", file=sys.stderr)
    os.replace(tmp, out)
    out.with_name("run_info.json").write_text(json.dumps(run_info(args.threads), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(models)} rows) and {out.with_name('run_info.json')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
