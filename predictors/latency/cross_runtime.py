"""A LiteRT table from a sample of timed units and the ONNX Runtime table: what is timed, how the rest is derived.

Timing a unit with LiteRT means converting it first (~1-2 s, `litert.py`), and the converter takes
static shapes, so a full LiteRT table (~11.9k units) would take ~5 h on one core where the ONNX
table takes ~15 min. `nas latency build --runtime litert --sample-per-op K` therefore times:

- every unit of the reference-zoo models and of the Pixel 6 calibration models (`zoo_units`): the
  models users compare against and the ones the pixel6 estimate is fitted on are predicted from
  LiteRT timings only;
- K units of each op of the space, spread over the op's range of sizes (`sample_units`: evenly
  spaced ranks of the ONNX table's timing);

and derives every other entry from the ONNX table's entry of the same unit (`derive_missing`):

    litert_us = overhead_lt + r * (ort_us - overhead_ort)

where r is fitted per op on the units timed in both (`fit_ratios`, a fit of log r on log ort_us:
the two runtimes' ratio moves with a unit's size, e.g. per-invoke costs weigh on small units). The
ORT entries may come from another machine (the shipped table); r then also carries the two
machines' speed ratio, which is what a derived entry needs. Each derived entry names its source,
ratio and the fit it used (`Entry.derived`; the fits, with their pair counts and held-out error, are
in `LatencyTable.derivation`); every prediction that uses one says how
many of its units were derived, and `benchmarks/litert_vs_ort.py` measures what that costs.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from nas.blocks.units import Unit, arch_units
from nas.errors import ParameterError
from predictors.latency.build import zoo_models
from predictors.latency.pixel6 import ANCHORS
from predictors.latency.table import Entry, LatencyTable
from search_spaces.reference import load_zoo

METHOD = ("ONNX Runtime entry less its per-call overhead, times the op's LiteRT/ORT ratio at that size "
          "(least squares of log ratio on log ORT time over the op's units timed in both), plus LiteRT's overhead")
MIN_PAIRS = 4  # below this an op has no fit of its own: the one over all ops' units ('*') is used


def zoo_units(resolutions: Iterable[int]) -> dict[str, Unit]:
    """Every unit of the reference zoo at `resolutions` (as the ORT builder prices them) and of the
    Pixel 6 calibration models at their published input size."""
    units = {u.key: u for arch in zoo_models(resolutions) for u in arch_units(arch)}
    for anchor in ANCHORS:
        arch = load_zoo(anchor.zoo).model_copy(update={"resolution": anchor.resolution})
        units.update((u.key, u) for u in arch_units(arch))
    return dict(sorted(units.items()))


def sample_units(units: dict[str, Unit], reference: LatencyTable, per_op: int) -> dict[str, Unit]:
    """`per_op` units of each op (all, where it has fewer), at evenly spaced ranks of their timing
    in `reference`, so that each op's sample spans its sizes; deterministic."""
    if per_op < 1:
        raise ParameterError("per_op", f": expected a positive count, got {per_op}")
    by_op: dict[str, list[tuple[float, str]]] = {}
    for key, unit in units.items():
        if key in reference.entries:
            by_op.setdefault(unit.op, []).append((reference.entries[key].us, key))
    chosen: dict[str, Unit] = {}
    for ranked in by_op.values():
        ranked.sort()
        n = len(ranked)
        if n <= per_op:
            picks: Iterable[int] = range(n)
        elif per_op == 1:
            picks = [n // 2]
        else:
            picks = sorted({round(i * (n - 1) / (per_op - 1)) for i in range(per_op)})
        chosen.update((ranked[i][1], units[ranked[i][1]]) for i in picks)
    return dict(sorted(chosen.items()))


@dataclass(frozen=True)
class RatioFit:
    """log(litert / ort) = a + b * log(ort_us), both less their per-call overheads."""

    a: float
    b: float
    pairs: int
    rmse_log: float  # in-sample scatter of log ratio around the fit

    def ratio(self, ort_us: float) -> float:
        return math.exp(self.a + self.b * math.log(max(ort_us, 1e-3)))

    def ratio_of(self, entry: Entry, overhead_us: float) -> float:
        """The ratio at `entry`'s size: its time less its table's per-call overhead."""
        return self.ratio(_net(entry, overhead_us))


MIN_NET_US = 1.0


def _net(entry: Entry, overhead: float) -> float:
    return max(entry.us - overhead, 1e-3)


def timed_pairs(litert: LatencyTable, ort: LatencyTable) -> dict[str, list[tuple[float, float]]]:
    """Op -> (ort_us, litert_us), both less overheads, of the units timed in `litert` (not derived)
    that `ort` has. A unit within MIN_NET_US of its table's per-call overhead is left out: its
    time is all overhead, so its ratio is noise over a near-zero net (Mobile-Former's token entry
    on the shipped host table: 16.8 us against an 18.8 us overhead)."""
    pairs: dict[str, list[tuple[float, float]]] = {}
    for key, e in litert.entries.items():
        if e.derived is None and key in ort.entries:
            pair = (ort.entries[key].us - ort.overhead_us, e.us - litert.overhead_us)
            if min(pair) >= MIN_NET_US:
                pairs.setdefault(e.op, []).append(pair)
    return pairs


def fit_ratio(pairs: list[tuple[float, float]]) -> RatioFit:
    """Least squares of log ratio on log ORT time; a constant ratio where the sizes do not spread."""
    x = np.log([o for o, _ in pairs])
    y = np.log([lt / o for o, lt in pairs])
    if len(pairs) >= MIN_PAIRS and np.ptp(x) > 0.5:
        b, a = np.polyfit(x, y, 1)
    else:
        a, b = float(np.median(y)), 0.0
    resid = y - (a + b * x)
    return RatioFit(float(a), float(b), len(pairs), float(np.sqrt(np.mean(resid ** 2))))


def fit_ratios(litert: LatencyTable, ort: LatencyTable) -> dict[str, RatioFit]:
    """One fit per op with at least MIN_PAIRS timed units, and '*' over all timed units."""
    pairs = timed_pairs(litert, ort)
    if not pairs:
        raise ParameterError("litert", ": no unit timed in both tables takes longer than its per-call overhead; "
                             "nothing to derive a ratio from")
    fits = {op: fit_ratio(p) for op, p in pairs.items() if len(p) >= MIN_PAIRS}
    fits["*"] = fit_ratio([p for ps in pairs.values() for p in ps])
    return fits


def mapped_entry(entry: Entry, ratio: float, from_overhead_us: float, to_overhead_us: float) -> Entry:
    """`entry` of one table carried to another by `ratio` on its time less the per-call overhead
    (p10 and p90 mapped like the median): to_overhead + ratio * (us - from_overhead). The unit and
    its weight bytes stay what they are. Also calibrate's per-op route (another machine, one runtime)."""

    def mapped(us: float) -> float:
        return round(to_overhead_us + ratio * max(us - from_overhead_us, 0.0), 3)

    return Entry(us=mapped(entry.us), p10=mapped(entry.p10), p90=mapped(entry.p90), n=entry.n, op=entry.op,
                 args=entry.args, inputs=entry.inputs, weight_bytes=entry.weight_bytes)


def derived_entry(ort_entry: Entry, fit: RatioFit, op_key: str, ort: LatencyTable, litert: LatencyTable,
                  source: str) -> Entry:
    """The LiteRT stand-in of one ORT entry; the entry names its source, ratio and fit
    (`LatencyTable.derivation` holds the fits and the method)."""
    r = fit.ratio_of(ort_entry, ort.overhead_us)
    return mapped_entry(ort_entry, r, ort.overhead_us, litert.overhead_us).model_copy(
        update={"derived": {"from": source, "ratio": round(r, 4), "fit_op": op_key}})


def derive_missing(litert: LatencyTable, ort: LatencyTable, source: str, keys: Iterable[str] | None = None) -> int:
    """Fill (in place) every entry of `keys` (default: all of `ort`'s) that `ort` has and `litert`
    has not timed with a derived one; the number derived. Re-running re-derives from the timed
    entries as they are now."""
    fits = fit_ratios(litert, ort)
    count = 0
    for key in ort.entries if keys is None else keys:
        e = ort.entries.get(key)
        have = litert.entries.get(key)
        if e is None:
            continue
        if have is not None and have.derived is None:
            continue
        op_key = e.op if e.op in fits else "*"
        litert.entries[key] = derived_entry(e, fits[op_key], op_key, ort, litert, source)
        if key in litert.unavailable:  # a stand-in for a unit LiteRT could not run: the entry says so
            litert.entries[key].derived["unavailable"] = litert.unavailable[key]
        count += 1
    litert.derivation = {"method": METHOD, "from": source, "timed": sum(e.derived is None for e in
                                                                         litert.entries.values()),
                         "derived": count, "fits": summary(fits), "leave_one_out": leave_one_out(litert, ort)}
    return count


def summary(fits: dict[str, RatioFit]) -> dict[str, dict[str, float]]:
    """Per op: the fit, its scatter, and the ratio it gives a 100 us unit (for reports)."""
    return {op: {"pairs": f.pairs, "a": round(f.a, 4), "b": round(f.b, 4), "rmse_log": round(f.rmse_log, 4),
                 "ratio_at_100us": round(f.ratio(100.0), 4)} for op, f in sorted(fits.items())}


def leave_one_out(litert: LatencyTable, ort: LatencyTable) -> dict[str, dict[str, float]]:
    """How well the derivation predicts a timed unit it was not fitted on: per op (and '*'), the
    median and 90th percentile of |derived / timed - 1| over its timed units, each held out in turn
    (with its op's fit on the rest, as `derive_missing` would make it)."""
    pairs = timed_pairs(litert, ort)
    found: dict[str, dict[str, float]] = {}
    every: list[float] = []
    for op, ps in sorted(pairs.items()):
        if len(ps) <= MIN_PAIRS:
            continue
        errors = []
        for i, (o, lt) in enumerate(ps):
            fit = fit_ratio(ps[:i] + ps[i + 1:])
            errors.append(abs((litert.overhead_us + fit.ratio(o) * o) / (litert.overhead_us + lt) - 1))
        every += errors
        found[op] = {"units": len(ps), "median_abs": round(float(np.median(errors)), 4),
                     "p90_abs": round(float(np.percentile(errors, 90)), 4)}
    if every:
        found["*"] = {"units": len(every), "median_abs": round(float(np.median(every)), 4),
                      "p90_abs": round(float(np.percentile(every, 90)), 4)}
    return found
