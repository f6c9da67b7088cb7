"""`nas latency validate`: table predictions against end-to-end measurement of random subnets.

N members of the hybrid space (at the table's resolutions) are exported as users export them
(`nas export`: inference form, dynamic batch; for a LiteRT table, as `nas export --tflite`
converts them) and timed end to end with the same runtime and settings as the table, in two or
more interleaved passes over the list (a fresh session each time); each timing is appended to a
journal so an interrupted run resumes. The protocol is the one `benchmarks/latency_repeatability.py`
found to repeat best on the Zen 3 VM: the process pinned to one CPU where the OS allows (`pin`),
and a timing whose CPU share shows another job took the core taken again (`RETRIES`).

The figures are stated against the measurement's own noise, measured in the same run on the same
subnets: how often a subnet's two half-measurements (the lowest median of its odd-numbered
timings, and of its even-numbered ones) agree within ±5% / ±10% is the most any predictor can
score on this machine, so the table's shares are also given as a fraction of it, overall and
per resolution. With `zoo`, the reference-zoo models are timed in the same passes and reported
apart (the table's prediction as it stands, not part of any fit).

Two predictors are compared on the same samples, both out-of-fold (2-fold: fitted on one half,
scored on the other, so neither is graded on what it was fitted on):
- the table: the plain sum of units (less per-call overheads, plus one), then a linear
  correction `scale * sum + per_unit * units` where the plain sum is biased (work between units,
  cache effects) - and, where the table's entries carry weight bytes, `+ per_mb * weight MB` with
  each unit's cost first raised to its weight-read floor at the bandwidth of `BANDWIDTHS_GBS` that
  fits the training half best (0: no floor; `weights.py`); the correction fitted on all samples,
  whichever of the two is better out of fold, is stored;
- the baseline users would otherwise use: latency linearly fitted on fvcore FLOPs.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch

from nas.arch.schema import ArchConfig, parse_arch
from nas.atomic import append_json_line, atomic_write, atomic_write_bytes, atomic_write_text, read_json_lines
from nas.blocks.units import arch_units
from nas.builder import build_model
from nas.errors import ParameterError, UserError
from nas.profile import profile_arch
from predictors.latency import litert
from predictors.latency.machine import cpu_model, here
from predictors.latency.measure import (
    DISTURBED_BELOW,
    RunPolicy,
    Timing,
    make_session,
    network_onnx,
    pinned,
    random_feeds,
    time_model,
    time_session,
    undisturbed,
)
from predictors.latency.predict import arch_entries, predict, unit_cost_us
from predictors.latency.table import Correction, Entry, LatencyTable, Runtime, save_table
from search_spaces.hybrid import HybridSpace
from search_spaces.reference import load_zoo, zoo_names

E2E_POLICY = RunPolicy(warmup=10, min_runs=30, min_seconds=0.3, max_runs=1000)
RETRIES = 2  # a disturbed end-to-end timing is taken again up to this many times (benchmarks/latency_repeatability.py)
BANDWIDTHS_GBS = (0.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0)  # 0.0: no weight-read floor


@dataclass(frozen=True)
class Sample:
    arch_hash: str
    resolution: int
    flops: int
    plain_ms: float  # table prediction before correction (set by `validate` from the table as it is now)
    measured_ms: float
    p10_ms: float
    p90_ms: float
    units: int = 0  # latency units of the arch (filled in on every run)
    timings: int = 1  # end-to-end timings taken; the lowest median is kept
    medians_ms: tuple[float, ...] = ()  # every timing's median, in order (older journals lack them)
    cpu_shares: tuple[float, ...] = ()  # each kept timing's CPU share (< DISTURBED_BELOW: disturbed)


def sample_archs(table: LatencyTable, n: int, seed: int) -> list[ArchConfig]:
    """n members of the hybrid space, resolution drawn from the table's resolutions."""
    space = HybridSpace(num_classes=1000)
    resolutions = [r for r in space.resolutions if r in table.resolutions]
    if not resolutions:
        raise UserError(f"{table.label}: the table covers none of the space's resolutions {list(space.resolutions)}")
    rng = random.Random(seed)
    archs = []
    for _ in range(n):
        arch = space.sample(rng)
        archs.append(parse_arch({**arch.to_dict(), "resolution": rng.choice(resolutions)}))
    return archs


def zoo_archs(table: LatencyTable) -> list[ArchConfig]:
    """The reference-zoo models at their own resolution, where the table covers it."""
    return [a for a in (load_zoo(n) for n in zoo_names()) if a.resolution in table.resolutions]


def measure_network(model: torch.nn.Module, resolution: int, threads: int) -> Timing:
    """End-to-end ONNX Runtime timing of a built network at batch 1, exported as `nas export` does."""
    session = make_session(network_onnx(model, resolution), threads)
    return time_session(session, random_feeds(session), E2E_POLICY)


class ArchTimer:
    """End-to-end timings of archs at batch 1 with one runtime, as validate takes them.

    Each arch is exported once per timer (as `nas export` writes it; for LiteRT the .tflite
    `nas export --tflite` converts, kept in `cache` across runs): the export costs several times
    the timing (2.6 s against 0.4 s for Mobile-Former-26M), so exporting once buys more timings in
    the same minutes. Every timing is in a fresh session, and one whose CPU share shows another job
    had the core is taken again up to `retries` times (`measure.undisturbed`)."""

    def __init__(self, threads: int, runtime: Runtime = "onnxruntime", cache: Path | None = None, retries: int = 0):
        self.threads, self.runtime, self.cache, self.retries = threads, runtime, cache, retries
        self._models: dict[str, bytes] = {}

    def model(self, arch: ArchConfig) -> bytes:
        h = arch.arch_hash()
        if h not in self._models:
            self._models[h] = tflite_file(arch, self.cache) if self.runtime == "litert" \
                else network_onnx(build_model(arch), arch.resolution)
        return self._models[h]

    def __call__(self, arch: ArchConfig) -> Timing:
        model, run = self.model(arch), litert.time_tflite if self.runtime == "litert" else time_model
        return undisturbed(lambda: run(model, self.threads, E2E_POLICY), self.retries)


def measure_arch(arch: ArchConfig, threads: int, runtime: Runtime = "onnxruntime", cache: Path | None = None
                 ) -> tuple[float, float, float]:
    """(median, p10, p90) ms of one end-to-end run of `arch` at batch 1 with `runtime`; LiteRT
    times the .tflite `nas export --tflite` writes, converted once and kept in `cache` (the
    conversion takes 10-30 s, many times the timing)."""
    t = ArchTimer(threads, runtime, cache)(arch)
    return t.median_us / 1000, t.p10_us / 1000, t.p90_us / 1000


def tflite_file(arch: ArchConfig, cache: Path | None) -> bytes:
    """The .tflite of `arch` (untrained, zero parameters filled), from `cache` when converted before."""
    path = cache / f"{arch.arch_hash()}.tflite" if cache is not None else None
    if path is not None and path.is_file():
        return path.read_bytes()
    data = litert.network_tflite(build_model(arch), arch.resolution)
    if path is not None:
        atomic_write_bytes(path, data)
    return data


def collect(table: LatencyTable, archs: list[ArchConfig], journal: Path, repeats: int | Sequence[int] = 2,
            progress: Callable[[int, int], None] | None = None, retries: int = RETRIES) -> list[Sample]:
    """Time every arch `repeats` times (one count for all, or one per arch), in separate passes
    over the list so that one burst of interference cannot hit all timings of a model; keep the
    lowest median (interference only adds time). A disturbed timing is taken again up to
    `retries` times (`ArchTimer`). Every timing is appended to `journal` (an fsynced JSON line),
    so a rerun resumes."""
    counts = [repeats] * len(archs) if isinstance(repeats, int) else list(repeats)
    if len(counts) != len(archs):
        raise ParameterError("repeats", f": expected one count per arch ({len(archs)}), got {len(counts)}")
    done: dict[str, Sample] = {}
    for record in read_json_lines(journal):
        try:
            sample = Sample(**{**record, "medians_ms": tuple(record.get("medians_ms", ())),
                               "cpu_shares": tuple(record.get("cpu_shares", ()))})
        except TypeError:
            continue
        done[sample.arch_hash] = sample  # later lines (more timings) replace earlier ones
    journal.parent.mkdir(parents=True, exist_ok=True)
    timer = ArchTimer(table.threads, table.runtime, journal.parent / "tflite", retries)
    step, total = 0, sum(counts)
    for timing in range(1, max(counts, default=0) + 1):
        for arch, count in zip(archs, counts):
            if timing > count:
                continue
            h = arch.arch_hash()
            prev = done.get(h)
            if prev is None or prev.timings < timing:
                t = timer(arch)
                med, p10, p90 = t.median_us / 1000, t.p10_us / 1000, t.p90_us / 1000
                if prev is None:
                    prev = Sample(h, arch.resolution, profile_arch(arch)["flops"], 0.0, med, p10, p90, timings=0)
                elif med < prev.measured_ms:
                    prev = replace(prev, measured_ms=med, p10_ms=p10, p90_ms=p90)
                done[h] = replace(prev, timings=timing, medians_ms=(*prev.medians_ms, med),
                                  cpu_shares=(*prev.cpu_shares, round(t.cpu_share, 3)))
                append_json_line(journal, done[h].__dict__)
            step += 1
            if progress:
                progress(step, total)
    return [done[a.arch_hash()] for a in archs]


def fit_relative(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least squares on relative error (rows divided by y): coefficients of y ~ features @ coef.
    Relative, because a 1 ms network and a 30 ms one should count alike in the % figures."""
    w = 1.0 / y
    coef, *_ = np.linalg.lstsq(features * w[:, None], y * w, rcond=None)
    return coef


def out_of_fold(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """2-fold predictions: each half predicted by the fit on the other half."""
    pred = np.empty_like(y)
    idx = np.arange(len(y))
    for k in (0, 1):
        test, train = idx % 2 == k, idx % 2 != k
        pred[test] = features[test] @ fit_relative(features[train], y[train])
    return pred


def floored_sums(entries: list[Entry], overhead_us: float, bandwidths: tuple[float, ...] = BANDWIDTHS_GBS
                 ) -> np.ndarray | None:
    """The plain sum in ms (one overhead, each unit's timing less it) with each unit raised to its
    weight-read floor, at each bandwidth; None where an entry lacks its weight bytes."""
    if any(e.weight_bytes is None for e in entries):
        return None
    costs = np.array([[unit_cost_us(e, overhead_us, bw) for e in entries] for bw in bandwidths])
    return (costs.sum(axis=1) + overhead_us) / 1000


def weight_mb(entries: list[Entry]) -> float | None:
    """The network's weights in MB (1e6 bytes), summed over its units; None where an entry lacks them."""
    if any(e.weight_bytes is None for e in entries):
        return None
    return sum(e.weight_bytes for e in entries) / 1e6


def select_out_of_fold(candidates: list[np.ndarray], y: np.ndarray) -> tuple[np.ndarray, int]:
    """2-fold predictions where each half's model is the candidate feature set (with its linear
    fit) that fits the other half best by mean relative error; and the candidate best on all."""
    def fit_error(features: np.ndarray, idx: np.ndarray) -> float:
        pred = features[idx] @ fit_relative(features[idx], y[idx])
        return float(np.mean(np.abs(pred - y[idx]) / y[idx]))

    pred, idx = np.empty_like(y), np.arange(len(y))
    for k in (0, 1):
        test, train = idx % 2 == k, idx % 2 != k
        best = min(candidates, key=lambda f: fit_error(f, train))
        pred[test] = best[test] @ fit_relative(best[train], y[train])
    chosen = min(range(len(candidates)), key=lambda i: fit_error(candidates[i], idx))
    return pred, chosen


def metrics(pred: np.ndarray, measured: np.ndarray) -> dict[str, float | None]:
    """Shares within ±5% / ±10%, mean/max abs and mean signed relative error, Kendall tau (None
    under 3 points, where a rank correlation says nothing)."""
    from scipy.stats import kendalltau  # scipy: ~1 s, only when a validation is scored (`nas search` loads this)

    err = (pred - measured) / measured
    tau = float(kendalltau(pred, measured).statistic) if len(measured) >= 3 else None
    return {"within_5pct": float(np.mean(np.abs(err) <= 0.05)), "within_10pct": float(np.mean(np.abs(err) <= 0.10)),
            "mape": float(np.mean(np.abs(err))), "max_abs_pct": float(np.max(np.abs(err))),
            "mean_signed_pct": float(np.mean(err)), "kendall_tau": tau}


def repeatability(samples: list[Sample]) -> dict[str, Any] | None:
    """How well the measurement agrees with itself: each subnet's timings split into two
    independent halves (odd- and even-numbered passes, fresh sessions), each half's lowest median
    compared as a prediction of the other's. With 2 timings these are the two timings; with 2k,
    two k-pass measurements (the protocol `benchmarks/latency_repeatability.py` found to repeat
    best). No predictor can be checked more finely than this on the same machine; None where the
    journal holds no per-timing medians."""
    timed = [s for s in samples if len(s.medians_ms) >= 2]
    pairs = [(min(s.medians_ms[0::2]), min(s.medians_ms[1::2])) for s in timed]
    if len(pairs) < 2:
        return None
    first, second = np.array([a for a, _ in pairs]), np.array([b for _, b in pairs])
    err = np.abs(first - second) / np.minimum(first, second)
    return {"subnets": len(pairs), "timings_per_half": min(len(s.medians_ms) for s in timed) // 2,
            "within_5pct": float(np.mean(err <= 0.05)), "within_10pct": float(np.mean(err <= 0.10)),
            "median_abs_pct": float(np.median(err))}


def against_noise(lut: dict[str, Any], rep: dict[str, Any] | None) -> dict[str, float | None] | None:
    """The table's within-±5% / ±10% shares as a fraction of the measurement's own (1.0: as good
    as the measurement agrees with itself); None without a repeatability figure."""
    if rep is None:
        return None
    return {band: (round(lut[band] / rep[band], 4) if rep[band] else None) for band in ("within_5pct", "within_10pct")}


def per_resolution(samples: list[Sample], lut: np.ndarray, flops: np.ndarray) -> dict[str, dict[str, Any]]:
    """The same figures for each resolution's subnets (the plain sum errs most at small sizes)."""
    measured = np.array([s.measured_ms for s in samples])
    found: dict[str, dict[str, Any]] = {}
    for r in sorted({s.resolution for s in samples}):
        idx = np.array([s.resolution == r for s in samples])
        rep = repeatability([s for s in samples if s.resolution == r])
        lut_m = metrics(lut[idx], measured[idx])
        found[str(r)] = {"samples": int(idx.sum()), "lut": lut_m,
                         "flops_linear_out_of_fold": metrics(flops[idx], measured[idx]),
                         "measurement_repeatability": rep, "lut_vs_measurement_noise": against_noise(lut_m, rep)}
    return found


def evaluate(samples: list[Sample], floored: np.ndarray | None = None, weights: np.ndarray | None = None
             ) -> dict[str, Any]:
    """Figures for the plain sum, the linearly corrected table, the same with the weights' terms
    (where `floored` gives each sample's `floored_sums` and `weights` its `weight_mb`: each unit
    raised to its weight-read floor at the bandwidth each fold picks, plus a cost per MB of the
    network's weights) and the FLOPs line; which of the table's three to keep (the lowest
    out-of-fold mean error); and the measurement's own repeatability, the floor under all of them -
    overall and per resolution."""
    if len(samples) < 4:
        raise ParameterError("samples", f": need at least 4 samples to fit and check a correction, got {len(samples)}")
    plain = np.array([s.plain_ms for s in samples])
    measured = np.array([s.measured_ms for s in samples])
    units = np.array([float(s.units) for s in samples])
    lut_features = np.stack([plain, units], axis=1)
    flops_features = np.stack([[float(s.flops) for s in samples], np.ones(len(samples))], axis=1)
    corrected = out_of_fold(lut_features, measured)
    flops_pred = out_of_fold(flops_features, measured)
    plain_m, corrected_m = metrics(plain, measured), metrics(corrected, measured)
    best, best_m, features, bandwidth, extra = corrected, corrected_m, lut_features, 0.0, {}
    if floored is not None and weights is not None:
        candidates = [np.stack([floored[:, j], units, weights], axis=1) for j in range(len(BANDWIDTHS_GBS))]
        with_weights, chosen = select_out_of_fold(candidates, measured)
        weights_m = metrics(with_weights, measured)
        extra = {"lut_weights_out_of_fold": weights_m, "bandwidths_tried_gbs": list(BANDWIDTHS_GBS)}
        if weights_m["mape"] < corrected_m["mape"]:
            best, best_m, features, bandwidth = with_weights, weights_m, candidates[chosen], BANDWIDTHS_GBS[chosen]
    scale, per_unit_ms, *per_mb_ms = fit_relative(features, measured)
    use = best_m["mape"] < plain_m["mape"]
    lut, lut_m = (best, best_m) if use else (plain, plain_m)
    rep = repeatability(samples)
    return {
        "samples": len(samples),
        "lut_plain_sum": plain_m,
        "lut_corrected_out_of_fold": corrected_m,
        **extra,
        "flops_linear_out_of_fold": metrics(flops_pred, measured),
        "correction": {"scale": float(scale) if use else 1.0,
                       "per_unit_us": float(per_unit_ms) * 1000 if use else 0.0, "fitted_on": len(samples),
                       "bandwidth_gbs": bandwidth if use else 0.0,
                       "per_mb_us": float(per_mb_ms[0]) * 1000 if use and per_mb_ms else 0.0, "used": use},
        "lut": lut_m,
        "measurement_repeatability": rep,
        "lut_vs_measurement_noise": against_noise(lut_m, rep),
        "per_resolution": per_resolution(samples, lut, flops_pred),
        "_series": {"measured": measured, "lut": lut, "flops": flops_pred},
    }


def machine_info(threads: int = 1) -> dict[str, Any]:
    """Where a report's figures were taken: versions, and this machine's fingerprint (with the speed
    probe this process compares tables against), so that reports from two machines can be told apart."""
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__, "fingerprint": here(threads).model_dump()}


def plot(result: dict[str, Any], table: LatencyTable, path: Path) -> None:
    # matplotlib: ~0.5 s, only when validate.png is drawn; Figure, not pyplot: no global backend or figure state
    from matplotlib.figure import Figure

    s = result["_series"]
    fig = Figure(figsize=(5.5, 5))
    ax = fig.subplots()
    lo, hi = 0.8 * s["measured"].min(), 1.2 * s["measured"].max()
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8, label="exact")
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9", label="±10%")
    lut, fl = result["lut"], result["flops_linear_out_of_fold"]
    ax.scatter(s["measured"], s["flops"], s=12, c="tab:orange", alpha=0.7,
               label=f"FLOPs line: {fl['within_10pct']:.0%} within 10%, tau {fl['kendall_tau']:.2f}")
    ax.scatter(s["measured"], s["lut"], s=12, c="tab:blue",
               label=f"LUT: {lut['within_10pct']:.0%} within 10%, tau {lut['kendall_tau']:.2f}")
    ax.set(xscale="log", yscale="log", xlabel="measured end-to-end (ms)", ylabel="predicted (ms)",
           title=f"{table.label}, {result['samples']} random subnets")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def zoo_report(archs: list[ArchConfig], samples: list[Sample], predicted_ms: list[float],
               refitted_ms: list[float]) -> dict[str, Any]:
    """Each zoo model's measurement (and its timings' spread) against the table's prediction as it
    stands, and with the correction this run fitted on the subnets (the zoo is no part of that fit)."""
    def err(p: float, s: Sample) -> float:
        return round(100 * (p / s.measured_ms - 1), 2)

    rows = [{"name": a.name, "resolution": a.resolution, "measured_ms": s.measured_ms, "medians_ms": list(s.medians_ms),
             "predicted_ms": round(p, 4), "error_pct": err(p, s),
             "refitted_ms": round(q, 4), "refitted_error_pct": err(q, s)}
            for a, s, p, q in zip(archs, samples, predicted_ms, refitted_ms)]
    return {"models": rows, "within_10pct": sum(abs(r["error_pct"]) <= 10 for r in rows),
            "within_5pct": sum(abs(r["error_pct"]) <= 5 for r in rows), "of": len(rows),
            "refitted_within_10pct": sum(abs(r["refitted_error_pct"]) <= 10 for r in rows),
            "refitted_within_5pct": sum(abs(r["refitted_error_pct"]) <= 5 for r in rows),
            "measurement_repeatability": repeatability(samples)}


def validate(table: LatencyTable, table_path: Path, n: int, seed: int, out_dir: Path,
             progress: Callable[[int, int], None] | None = None, store: bool = True,
             repeats: int = 2, zoo: bool = False, zoo_repeats: int | None = None, pin: bool = True
             ) -> dict[str, Any]:
    """Measure, compare, write report JSON + PNG into out_dir and (store) the correction into the
    table. The zoo models are timed `zoo_repeats` times (default `repeats`): a zoo count out of 17
    needs a larger measurement than a share of 200 subnets. `pin`: time on one CPU where the OS
    allows (it helped on one 2-core VM and hurt on another: `benchmarks/latency_repeatability.py`
    says which a machine is)."""
    if table.kind not in ("measured", "calibrated"):
        raise UserError(f"{table_path}: only a measured or calibrated table can be validated here ({table.label})")
    archs = sample_archs(table, n, seed)
    extra = zoo_archs(table) if zoo else []
    # Predicted first: a table that lacks a unit fails now, not after minutes of measuring; and
    # from the table as it is now (entries may have been retimed since a sample was timed).
    preds = [predict(arch, table) for arch in archs + extra]
    zoo_count = zoo_repeats or repeats
    counts = [repeats] * len(archs) + [zoo_count] * len(extra)
    with pinned() if pin else contextlib.nullcontext() as cpu:  # no migration mid-timing
        timed = collect(table, archs + extra, out_dir / "samples.jsonl", counts, progress)
    shares = [x for sample in timed for x in sample.cpu_shares]
    protocol = {"pinned_cpu": cpu, "retries": RETRIES, "disturbed_below": DISTURBED_BELOW,
                "timings_with_share": len(shares), "disturbed_kept": sum(x < DISTURBED_BELOW for x in shares)}
    samples = [replace(s, plain_ms=p.plain_ms, units=len(arch_units(a)))
               for s, p, a in zip(timed[:len(archs)], preds, archs)]
    entries = [[e for _, es in arch_entries(a, table) for e in es] for a in archs]
    sums, mbs = [floored_sums(es, table.overhead_us) for es in entries], [weight_mb(es) for es in entries]
    known = all(x is not None for x in sums)
    result = evaluate(samples, np.stack(sums) if known else None, np.array(mbs) if known else None)
    if zoo:
        fitted = table.model_copy(update={"correction": correction_of(result, "validate (this run)")}) \
            if result["correction"]["used"] else table
        result["zoo"] = zoo_report(extra, timed[len(archs):], [p.ms for p in preds[len(archs):]],
                                   [predict(a, fitted).ms for a in extra])
    plot(result, table, out_dir / "validate.png")
    series = result.pop("_series")
    report = {"table": str(table_path), "device": table.device, "timings_per_subnet": repeats,
              "timings_per_zoo_model": zoo_count if zoo else None, "protocol": protocol,
              "kind": table.kind,
              "table_label": table.provenance.label, "table_created": table.created,
              "threads": table.threads, "seed": seed, "machine": machine_info(table.threads), **result,
              "points": [{"arch_hash": s.arch_hash, "resolution": s.resolution, "flops": s.flops,
                          "measured_ms": s.measured_ms, "p10_ms": s.p10_ms, "p90_ms": s.p90_ms,
                          "plain_ms": s.plain_ms, "lut_ms": float(lut), "flops_ms": float(f)}
                         for s, lut, f in zip(samples, series["lut"], series["flops"])]}
    atomic_write_text(out_dir / "validate.json", json.dumps(report, indent=1) + "\n")
    if store:
        store_correction(table, table_path, result, "`nas latency validate`")
    return report


def correction_of(result: dict[str, Any], by: str) -> Correction:
    """`evaluate`'s chosen correction as a table's."""
    c = result["correction"]
    fitted = Correction(scale=c["scale"], per_unit_us=c["per_unit_us"], bandwidth_gbs=c.get("bandwidth_gbs", 0.0),
                        per_mb_us=c.get("per_mb_us", 0.0), fitted_on=c["fitted_on"])
    fitted.note = (f"fitted by {by}: the plain sum was biased{fitted.weight_note}" if c["used"]
                   else "none: the plain sum was not improved by a linear correction")
    return fitted


def store_correction(table: LatencyTable, table_path: Path, result: dict[str, Any], by: str) -> None:
    """Write `evaluate`'s chosen correction and headline figures into the table file."""
    table.correction = correction_of(result, by)
    table.validation = {k: round(v, 4) for k, v in result["lut"].items()} | {
        "samples": result["samples"], "flops_baseline_within_10pct": round(
            result["flops_linear_out_of_fold"]["within_10pct"], 4)}
    save_table(table, table_path)
