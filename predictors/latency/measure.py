"""Timing ONNX models with ONNX Runtime, the one way every latency number here is taken.

CPU execution provider, fixed intra-op threads, full graph optimisation, warm-up, then timed runs
until both a minimum count and a minimum total time are reached; the median is the figure and the
10th/90th percentiles its spread. Each `session.run` includes the runtime's fixed per-call cost,
which `call_overhead_us` measures on a model that does (almost) nothing, so that a sum of unit
timings can count it once instead of once per unit.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int

    def as_dict(self) -> dict[str, float | int]:
        return {"us": round(self.median_us, 3), "p10": round(self.p10_us, 3), "p90": round(self.p90_us, 3),
                "n": self.runs}


@dataclass(frozen=True)
class RunPolicy:
    """How long to time one model: warm-up, then at least `min_runs` and `min_seconds`."""

    warmup: int = 5
    min_runs: int = 20
    min_seconds: float = 0.015
    max_runs: int = 400


def make_session(model: bytes, threads: int) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def time_session(session: ort.InferenceSession, feeds: dict[str, np.ndarray], policy: RunPolicy = RunPolicy()
                 ) -> Timing:
    """Median and spread of `session.run` on `feeds` (wall clock, perf_counter)."""
    run = session.run
    for _ in range(policy.warmup):
        run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < policy.max_runs and (len(times) < policy.min_runs
                                            or time.perf_counter() - start < policy.min_seconds):
        t0 = time.perf_counter()
        run(None, feeds)
        times.append(time.perf_counter() - t0)
    us = np.asarray(times) * 1e6
    return Timing(float(np.median(us)), float(np.percentile(us, 10)), float(np.percentile(us, 90)), len(times))


def random_feeds(session: ort.InferenceSession, seed: int = 0) -> dict[str, np.ndarray]:
    """Standard-normal inputs of the session's (static) input shapes."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in session.get_inputs():
        shape = [d if isinstance(d, int) else 1 for d in inp.shape]
        feeds[inp.name] = rng.standard_normal(shape, dtype=np.float32)
    return feeds


def time_model(model: bytes, threads: int, policy: RunPolicy = RunPolicy()) -> Timing:
    session = make_session(model, threads)
    return time_session(session, random_feeds(session), policy)


def overhead_model() -> bytes:
    """A single Add on one float: what one ONNX Runtime call costs with (almost) nothing to compute."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "input"], ["output"])], "overhead",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def call_overhead_us(threads: int) -> Timing:
    """The runtime's fixed cost per inference: many runs of `overhead_model`."""
    return time_model(overhead_model(), threads, RunPolicy(warmup=50, min_runs=2000, min_seconds=0.2, max_runs=5000))
