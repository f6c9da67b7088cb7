"""Timing ONNX models with ONNX Runtime, the one way every latency number here is taken.

CPU execution provider, fixed intra-op threads, full graph optimisation, warm-up, then timed runs
until both a minimum count and a minimum total time are reached; the median is the figure and the
10th/90th percentiles its spread. Each `session.run` includes the runtime's fixed per-call cost,
which `call_overhead_us` measures on a model that does (almost) nothing, so that a sum of unit
timings can count it once instead of once per unit.

On a shared machine a timing can be disturbed by another job taking the core: every timing
records its CPU share (process CPU time over wall time while it ran; ~1 for an undisturbed
single-threaded run), so that `time_passes` can take a disturbed pass again, and `pinned` keeps
the process on one CPU where the OS allows it. Whether these buy repeatability on a given machine
is what `benchmarks/latency_repeatability.py` measures.
"""
from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from nas.export import onnx_bytes


@dataclass(frozen=True)
class Timing:
    median_us: float
    p10_us: float
    p90_us: float
    runs: int
    cpu_share: float = 1.0  # process CPU time / wall time while timing; well below 1: another job had the core

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
    return time_calls(lambda: run(None, feeds), policy)


def time_calls(call: Callable[[], object], policy: RunPolicy = RunPolicy()) -> Timing:
    """Median and spread of `call()` under `policy`: the one timing loop of every runtime (an ONNX
    Runtime session here, the LiteRT interpreter in `litert.py`), so their figures compare."""
    for _ in range(policy.warmup):
        call()
    times: list[float] = []
    cpu0, start = time.process_time(), time.perf_counter()
    while len(times) < policy.max_runs and (len(times) < policy.min_runs
                                            or time.perf_counter() - start < policy.min_seconds):
        t0 = time.perf_counter()
        call()
        times.append(time.perf_counter() - t0)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    us = np.asarray(times) * 1e6
    return Timing(float(np.median(us)), float(np.percentile(us, 10)), float(np.percentile(us, 90)), len(times),
                  cpu / wall if wall > 0 else 1.0)


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
    from onnx import TensorProto, helper  # onnx: ~1 s (protobuf), only to time the per-call overhead

    graph = helper.make_graph(
        [helper.make_node("Add", ["input", "input"], ["output"])], "overhead",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


OVERHEAD_POLICY = RunPolicy(warmup=50, min_runs=2000, min_seconds=0.2, max_runs=5000)  # a call of ~1-50 us


def call_overhead_us(threads: int) -> Timing:
    """The runtime's fixed cost per inference: many runs of `overhead_model`."""
    return time_model(overhead_model(), threads, OVERHEAD_POLICY)


DISTURBED_BELOW = 0.9  # CPU share under which a single-threaded timing was disturbed by another job


def time_passes(models: Mapping[str, bytes], threads: int, policy: RunPolicy, passes: int, retries: int = 2,
                min_cpu_share: float = DISTURBED_BELOW) -> dict[str, list[Timing]]:
    """`passes` timings of every model, interleaved (pass k times each model once) and each in a
    fresh session: a burst of load, or one session's unlucky memory layout, then spoils one pass
    of a model rather than all of them. A timing whose CPU share shows another job took the core
    is taken again, up to `retries` times, keeping the least disturbed one."""
    found: dict[str, list[Timing]] = {name: [] for name in models}
    for _ in range(passes):
        for name, model in models.items():
            found[name].append(undisturbed(functools.partial(time_model, model, threads, policy), retries,
                                           min_cpu_share))
    return found


def undisturbed(time_once: Callable[[], Timing], retries: int = 2, min_cpu_share: float = DISTURBED_BELOW
                ) -> Timing:
    """`time_once()`, taken again up to `retries` times while its CPU share shows another job had
    the core; the least disturbed timing is kept (load only adds time, and says so in the share)."""
    best = time_once()
    for _ in range(retries):
        if best.cpu_share >= min_cpu_share:
            break
        timing = time_once()
        if timing.cpu_share > best.cpu_share:
            best = timing
    return best


@contextlib.contextmanager
def pinned(cpu: int | None = None) -> Iterator[int | None]:
    """Keep this process on one CPU while timing (the last one it may use, unless `cpu` is given),
    so that the scheduler does not migrate it mid-run; yields the CPU, or None where the OS does
    not allow it (not Linux, or a restricted container). The previous affinity is restored."""
    getter, setter = getattr(os, "sched_getaffinity", None), getattr(os, "sched_setaffinity", None)
    if getter is None or setter is None:
        yield None
        return
    before = getter(0)
    target = max(before) if cpu is None else cpu
    try:
        setter(0, {target})
    except OSError:
        yield None
        return
    try:
        yield target
    finally:
        setter(0, before)


def network_onnx(model: torch.nn.Module, resolution: int) -> bytes:
    """A built network as `nas export` exports it (inference form, dynamic batch), for timing at batch 1."""
    return onnx_bytes(model, torch.zeros(1, 3, resolution, resolution), check=False)
