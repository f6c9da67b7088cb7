#!/usr/bin/env python3
"""Probe-pack runner: time every model of a `nas latency pack` zip on the device it runs on.

Shipped inside the pack as runner.py; needs only Python 3.9+, numpy and the pack's runtime:
onnxruntime for an ONNX pack, the LiteRT interpreter (`ai-edge-litert`, or the older
`tflite-runtime`) for a .tflite pack, so it runs on a phone (see the pack's README). Each model is
timed the way the host tables are (fixed threads; ONNX Runtime: CPU execution provider, full graph
optimisation; LiteRT: its default XNNPACK delegate; warm-up then timed runs; median and 10th/90th
percentile), and `__overhead__` (a single add on one float) measures the per-call cost that the
table counts once per inference. Writes results.csv (key,median_us,p10_us,p90_us,runs) and
run_info.json (runtime, machine) for `nas latency import`.

Without Python on the phone, a .tflite pack can be timed with LiteRT's own `benchmark_model` tool
(see README.md), one log per model; `--from-benchmark-logs DIR` then turns the logs into the same
results.csv on any computer. That tool reports a mean, not percentiles: the rows carry its
`Inference (avg)` as median, p10 and p90, and run_info.json says so.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import re
import sys
import time
from importlib import metadata
from pathlib import Path

import numpy as np

COLUMNS = ("key", "median_us", "p10_us", "p90_us", "runs")


def make_session(path: Path, threads: int):
    import onnxruntime as ort  # only an ONNX pack needs it: the phone running a .tflite pack may lack it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def litert_module():
    """The LiteRT interpreter module: ai-edge-litert, or the older tflite-runtime package."""
    try:
        from ai_edge_litert import interpreter  # only a .tflite pack needs it (not the ONNX packs' phones)
    except ImportError:
        from tflite_runtime import interpreter  # the package's name before LiteRT
    return interpreter


def make_call(path: Path, threads: int, runtime: str):
    """A no-argument function running the model once on fixed random inputs."""
    rng = np.random.default_rng(0)
    if runtime == "litert":
        interp = litert_module().Interpreter(model_path=str(path), num_threads=threads)
        interp.allocate_tensors()
        for d in interp.get_input_details():
            interp.set_tensor(d["index"], rng.standard_normal(d["shape"]).astype(np.float32))
        return interp.invoke
    session = make_session(path, threads)
    feeds = {i.name: rng.standard_normal([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
             for i in session.get_inputs()}
    return lambda: session.run(None, feeds)


def time_model(path: Path, threads: int, warmup: int, runs: int, min_seconds: float, runtime: str = "onnxruntime"
               ) -> tuple[float, float, float, int]:
    """(median, p10, p90 in microseconds, runs) of one inference on random inputs."""
    call = make_call(path, threads, runtime)
    for _ in range(warmup):
        call()
    times = []
    start = time.perf_counter()
    while len(times) < runs or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    us = np.asarray(times) * 1e6
    return float(np.median(us)), float(np.percentile(us, 10)), float(np.percentile(us, 90)), len(times)


AVG = re.compile(r"Inference \(avg\):\s*([0-9.]+(?:[eE][+-]?[0-9]+)?)")


def benchmark_log_us(path: Path) -> float:
    """The steady-state mean (us) in a `benchmark_model` log: the last 'Inference (avg): X' of its
    'Inference timings in us' summary."""
    found = AVG.findall(path.read_text(encoding="utf-8", errors="replace"))
    if not found:
        raise SystemExit(f"{path}: no 'Inference (avg): <us>' line (is it a benchmark_model log?)")
    return float(found[-1])


def run_info(threads: int, runtime: str) -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware")):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "machine": platform.machine(), "platform": platform.platform(), "runtime": runtime,
            "ort_version": runtime_version(runtime), "threads": threads, "python": platform.python_version(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def runtime_version(runtime: str) -> str:
    """The runtime package's version (`ort_version` in run_info.json, as the tables name it)."""
    if runtime == "onnxruntime":
        import onnxruntime  # as in make_session: only ONNX packs need it

        return onnxruntime.__version__

    for package in ("ai-edge-litert", "tflite-runtime"):
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def write_results(out: Path, rows: list[list[str]], info: dict) -> None:
    """results.csv (written whole, then renamed into place) and run_info.json beside it."""
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    os.replace(tmp, out)
    out.with_name("run_info.json").write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(rows)} rows) and {out.with_name('run_info.json')}", file=sys.stderr)


def from_logs(models: list[dict], logs: Path, out: Path, threads: int, runtime: str) -> int:
    """results.csv from one `benchmark_model` log per model (logs/<model file stem>.log)."""
    rows = []
    for model in models:
        us = benchmark_log_us(logs / (Path(model["file"]).stem + ".log"))
        rows.append([model["key"], f"{us:.3f}", f"{us:.3f}", f"{us:.3f}", 1])
    info = {**run_info(threads, runtime), "cpu": "the phone benchmark_model ran on (logs converted elsewhere)",
            "timer": "LiteRT benchmark_model 'Inference (avg)': a mean; p10 and p90 are that mean too (no spread)"}
    info.pop("machine"), info.pop("platform")
    write_results(out, rows, info)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time the probe pack's models; write results.csv.")
    parser.add_argument("--dir", default=str(Path(__file__).resolve().parent), help="unzipped pack folder")
    parser.add_argument("--out", default="results.csv", help="results file (default results.csv)")
    parser.add_argument("--threads", type=int, default=1, help="the runtime's threads (default 1)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--runs", type=int, default=30, help="at least this many timed runs per model")
    parser.add_argument("--min-seconds", type=float, default=0.05, help="and at least this long per model")
    parser.add_argument("--limit", type=int, help="only the first N models (a quick check)")
    parser.add_argument("--from-benchmark-logs", metavar="DIR",
                        help="read LiteRT benchmark_model logs (DIR/<model file stem>.log) instead of timing")
    args = parser.parse_args(argv)
    folder = Path(args.dir)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    runtime = manifest.get("runtime", "onnxruntime")
    models = [manifest["overhead"], *manifest["models"][:args.limit]]
    if args.from_benchmark_logs:
        return from_logs(models, Path(args.from_benchmark_logs), Path(args.out), args.threads, runtime)
    rows = []
    for i, model in enumerate(models):
        median, p10, p90, n = time_model(folder / model["file"], args.threads, args.warmup, args.runs,
                                         args.min_seconds, runtime)
        rows.append([model["key"], f"{median:.3f}", f"{p10:.3f}", f"{p90:.3f}", n])
        print(f"[{i + 1}/{len(models)}] {median:10.1f} us  {model['key']}", file=sys.stderr)
    write_results(Path(args.out), rows, run_info(args.threads, runtime))
    return 0


if __name__ == "__main__":
    sys.exit(main())
