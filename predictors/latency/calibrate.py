"""`nas latency calibrate`: a table measured on another machine, fitted to this one in a minute or two.

Why: building a table takes ~15 minutes of quiet machine, and a table measured elsewhere can be
off by a large factor (issue 24: the shipped `host` table, on another VM with the same CPU string,
was up to 3x slow). Machines of one kind differ mostly by speed, and mostly by one factor, so a
minute of timing fixes most of it; `nas latency build --device host` stays the exact route.

How:
1. every probe network (`machine.PROBES`) is timed here (`passes` interleaved fresh-session passes,
   the lowest pass median kept), giving this machine's fingerprint, which the written table carries;
2. each probe's reference is what the source table says about it on its own machine: its own probe
   timing where the source has one (a pure machine-to-machine ratio), else its prediction (the
   shipped table has no probe; the fit then also absorbs the table's own error on these networks,
   which the fit error includes);
3. one scale is fitted (least squares on relative error, `validate.fit_relative`). Per-op-class
   scales - conv families (stem, mv2, repvit, head) and attention families (mobilevit, lgl, levit,
   former), each reference split by the source table's own share of the two in that network - only
   where the data say so: enough probes (`MIN_PROBES_PER_CLASS`), each scale positive, and a
   leave-one-out error lower than one scale's by more than `PER_CLASS_GAIN_PCT` points. The stated
   fit error is leave-one-out (each probe predicted by the scales fitted without it), not in-sample.

4. per op (`per_op` K > 0, the default 4): K units of each op of the source table, spread over its
   sizes, are timed here too (two passes, the lower median kept), and every other entry is carried
   over by its op's ratio at its size (`cross_runtime.fit_ratios`: log ratio on log time, the
   fit the LiteRT table derives with). Machines differ per op and per size, not by one factor:
   small per-call-bound units (Mobile-Former's bridges) scale unlike large conv units. The per-op
   table is kept where its error on the probe networks (which it was not fitted on) is below the
   one scale's leave-one-out error. `benchmarks/latency_calibrate_per_op.py` scores both on 200
   subnets and the zoo.

The written table: every entry times its class's scale (per op: its op's ratio, and the overhead
timed here); the per-call overhead and the correction's absolute terms (per unit, per MB, offset)
times the one scale, its weight-read bandwidth divided by it;
kind `calibrated`; this machine's fingerprint; and `calibration`, recording the source machine and
table, method, scales and each probe's figures. Outputs label it `calibrated from <source machine>` (`machine.verdict`).
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nas.blocks.units import arch_units
from nas.errors import ParameterError, UserError
from predictors.latency import machine
from predictors.latency.build import DEFAULT_POLICY, time_units
from predictors.latency.cross_runtime import fit_ratios, mapped_entry, sample_units, summary
from predictors.latency.machine import PROBES, Fingerprint, origin
from predictors.latency.measure import call_overhead_us
from predictors.latency.predict import predict
from predictors.latency.table import Correction, Entry, LatencyTable, new_table
from predictors.latency.unit_export import entry_unit
from predictors.latency.validate import fit_relative

CONV_OPS = ("stem", "mv2", "repvit", "head")
CLASSES = ("conv", "attention")
PER_CLASS_GAIN_PCT = 2.0
MIN_PROBES_PER_CLASS = 4  # two scales fitted leave-one-out need at least 3 points left; one more to spare
PASSES = 5
PER_OP = 4  # units of each op timed here (cross_runtime.MIN_PAIRS: an op's own fit needs 4)
UNIT_PASSES = 2


def op_class(op: str) -> str:
    return "conv" if op.split(".", 1)[0] in CONV_OPS else "attention"


@dataclass(frozen=True)
class ProbePoint:
    name: str
    resolution: int
    here_ms: float
    reference_ms: float
    conv_share: float | None  # the source table's share of conv-family time in this network (None: cannot predict it)


def reference_points(source: LatencyTable, mine: Fingerprint) -> tuple[list[ProbePoint], str]:
    """Each probe network timed here against the source's figure for it, and which figure that is
    ("probe": the source machine's own timing; "prediction": the source table's prediction)."""
    theirs = origin(source).probe
    use_probe = theirs is not None and mine.probe is not None and theirs.protocol == mine.probe.protocol
    points = []
    for spec in PROBES:
        timed = mine.probe.models.get(spec.name) if mine.probe else None
        if timed is None:
            continue
        arch = spec.arch()
        share, predicted = None, None
        try:
            predicted = predict(arch, source).ms
            parts = {c: 0.0 for c in CLASSES}
            for unit in arch_units(arch):
                parts[op_class(unit.op)] += source.entries[unit.key].us - source.overhead_us
            share = parts["conv"] / sum(parts.values()) if sum(parts.values()) > 0 else None
        except UserError:
            pass  # the source lacks a unit of this network: only its probe timing (if any) can be used
        if use_probe:
            stored = theirs.models.get(spec.name)
            reference = stored.ms if stored is not None and stored.arch_hash == timed.arch_hash else None
        else:
            reference = predicted
        if reference is not None and reference > 0:
            points.append(ProbePoint(spec.name, spec.resolution, timed.ms, reference, share))
    return points, "probe" if use_probe else "prediction"


def leave_one_out(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Relative error on each point of the fit made without it."""
    errs = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errs[i] = features[i] @ fit_relative(features[keep], y[keep]) / y[i] - 1
    return errs


@dataclass(frozen=True)
class Fit:
    method: str  # "one scale" | "per op class"
    scale: float  # the one scale (also what the overhead and correction terms take)
    class_scales: dict[str, float]
    loo_pct: np.ndarray  # leave-one-out relative error per probe, percent (the chosen method's)
    one_scale_pct: float
    per_class_pct: float | None

    @property
    def error_pct(self) -> float:
        return float(np.mean(np.abs(self.loo_pct)))


def fit_scales(points: list[ProbePoint]) -> Fit:
    """One scale, or per-op-class scales where the data say so (see the module docstring)."""
    here_ms = np.array([p.here_ms for p in points])
    ref = np.array([p.reference_ms for p in points])
    scale = float(fit_relative(ref[:, None], here_ms)[0])
    one_loo = 100 * leave_one_out(ref[:, None], here_ms)
    one_err = float(np.mean(np.abs(one_loo)))
    fit = Fit("one scale", scale, {c: scale for c in CLASSES}, one_loo, one_err, None)
    shares = [p.conv_share for p in points]
    if len(points) < MIN_PROBES_PER_CLASS or any(s is None for s in shares):
        return fit
    split = np.stack([ref * np.array(shares), ref * (1 - np.array(shares))], axis=1)
    if np.linalg.matrix_rank(split) < 2:
        return fit
    coef = fit_relative(split, here_ms)
    loo = 100 * leave_one_out(split, here_ms)
    per_err = float(np.mean(np.abs(loo)))
    fit = Fit(fit.method, scale, fit.class_scales, one_loo, one_err, per_err)
    if np.all(coef > 0) and per_err < one_err - PER_CLASS_GAIN_PCT:
        return Fit("per op class", scale, dict(zip(CLASSES, map(float, coef))), loo, one_err, per_err)
    return fit


def time_sample(source: LatencyTable, per_op: int, passes: int = UNIT_PASSES) -> LatencyTable:
    """`per_op` units of each op of `source` (its timed entries, spread over their sizes) timed
    here, `passes` times each, the lower median kept; with this machine's per-call overhead."""
    units = {k: entry_unit(e) for k, e in source.entries.items() if e.derived is None}
    chosen = list(sample_units(units, source, per_op).values())
    timed = new_table(source.device, "measured", source.threads, source.resolutions,
                      call_overhead_us(source.threads).median_us)
    for _ in range(passes):
        for unit, entry in time_units(chosen, source.threads, DEFAULT_POLICY, source.runtime):
            old = timed.entries.get(unit.key)
            if isinstance(entry, Entry) and (old is None or entry.us < old.us):
                timed.entries[unit.key] = entry
    return timed


def per_op_entries(source: LatencyTable, timed: LatencyTable) -> tuple[dict[str, Entry], dict[str, Any]]:
    """Every source entry on this machine: timed here where it was, else carried over by its op's
    ratio at its size (the op's fit, or the one over all ops where it has too few units timed)."""
    fits = fit_ratios(timed, source)
    entries = {}
    for key, e in source.entries.items():
        if key in timed.entries:
            entries[key] = timed.entries[key]
            continue
        fit = fits.get(e.op, fits["*"])
        entries[key] = mapped_entry(e, fit.ratio_of(e, source.overhead_us), source.overhead_us, timed.overhead_us)
    return entries, summary(fits)


def probe_errors_pct(table: LatencyTable, points: list[ProbePoint]) -> np.ndarray:
    """Each probe network's error (percent) as `table` predicts it, against its timing here."""
    specs = {spec.name: spec for spec in PROBES}
    return np.array([100 * (predict(specs[p.name].arch(), table).ms / p.here_ms - 1) for p in points])


def calibrated_table(source: LatencyTable, source_path: Path, mine: Fingerprint, points: list[ProbePoint],
                     reference: str, fit: Fit) -> LatencyTable:
    """The source's entries and terms scaled to this machine, recording how (module docstring)."""
    s = fit.scale
    entries = {k: Entry(**{**e.model_dump(), "us": e.us * f, "p10": e.p10 * f, "p90": e.p90 * f})
               for k, e in source.entries.items() for f in (fit.class_scales[op_class(e.op)],)}
    c = source.correction
    correction = Correction(scale=c.scale, per_unit_us=c.per_unit_us * s, offset_us=c.offset_us * s,
                            bandwidth_gbs=c.bandwidth_gbs / s, per_mb_us=c.per_mb_us * s, fitted_on=c.fitted_on,
                            note=f"{c.note} (the source's; absolute terms x{s:.4f})")
    probes = [{"name": p.name, "resolution": p.resolution, "here_ms": round(p.here_ms, 4),
               "reference_ms": round(p.reference_ms, 4), "conv_share": None if p.conv_share is None else
               round(p.conv_share, 3),
               "fitted_ms": round(p.reference_ms * (s if fit.method == "one scale" else
                                                    fit.class_scales["conv"] * p.conv_share
                                                    + fit.class_scales["attention"] * (1 - p.conv_share)), 4),
               "loo_error_pct": round(float(e), 2)} for p, e in zip(points, fit.loo_pct)]
    record: dict[str, Any] = {
        "from": origin(source).name, "from_table": str(source_path), "from_kind": source.kind,
        "from_created": source.created, "from_validation": source.validation,
        "reference": reference, "method": fit.method, "scale": round(s, 5),
        "class_scales": {k: round(v, 5) for k, v in fit.class_scales.items()},
        "fit_error_pct": round(fit.error_pct, 2), "max_error_pct": round(float(np.max(np.abs(fit.loo_pct))), 2),
        "one_scale_error_pct": round(fit.one_scale_pct, 2),
        "per_class_error_pct": None if fit.per_class_pct is None else round(fit.per_class_pct, 2),
        "fit_error_is": "leave-one-out mean abs % error on the probe networks", "probes": probes}
    return LatencyTable(device=source.device, kind="calibrated", cpu=mine.cpu, ort_version=mine.ort_version,
                        threads=source.threads,
                        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        resolutions=source.resolutions, overhead_us=source.overhead_us * s, correction=correction,
                        machine=mine, calibration=record, entries=entries)


def with_per_op(table: LatencyTable, source: LatencyTable, points: list[ProbePoint], timed: LatencyTable,
                per_op: int) -> LatencyTable:
    """`table` (the probe scales' calibration) or, where its probe error is lower, the per-op one;
    either way the calibration record says what the per-op route gave. The per-op table is tried
    with the source's correction (scaled as in `table`) and with none: that correction was fitted
    to what the source machine pays between units, which units timed here need not share (on the
    Zen 3 host the carried per-unit term put the 64 px probes 35-40% high, none 5-9%)."""
    entries, fits = per_op_entries(source, timed)
    base = table.model_copy(update={"entries": entries, "overhead_us": timed.overhead_us})
    candidates = {"carried": base, "none": base.model_copy(update={"correction": Correction(
        note="none: the per-op entries were timed here; `nas latency validate` fits this machine's")})}
    errors = {name: probe_errors_pct(t, points) for name, t in candidates.items()}
    mean = {name: float(np.mean(np.abs(e))) for name, e in errors.items()}
    best = min(mean, key=mean.__getitem__)
    cal = dict(table.calibration or {})
    kept = mean[best] < cal["fit_error_pct"]
    cal["per_op"] = {"units_each": per_op, "units_timed": len(timed.entries), "passes": UNIT_PASSES,
                     "overhead_here_us": round(timed.overhead_us, 3), "probe_error_pct": round(mean[best], 2),
                     "correction": best, "probe_error_pct_by_correction": {k: round(v, 2) for k, v in mean.items()},
                     "kept": kept, "fits": fits}
    if not kept:
        return table.model_copy(update={"calibration": cal})
    cal.update(scales_method=cal["method"], method=f"per op ({per_op} units each timed here)",
               fit_error_pct=round(mean[best], 2),
               max_error_pct=round(float(np.max(np.abs(errors[best]))), 2),
               fit_error_is="mean abs % error on the probe networks, which the per-op fit does not use",
               probes=[{**p, "fitted_ms": round(p["here_ms"] * (1 + e / 100), 4), "loo_error_pct": round(float(e), 2)}
                       for p, e in zip(cal["probes"], errors[best])])
    return candidates[best].model_copy(update={"calibration": cal})


def calibrate(source: LatencyTable, source_path: Path, mine: Fingerprint | None = None,
              passes: int = PASSES, per_op: int = PER_OP, timed: LatencyTable | None = None) -> LatencyTable:
    """The source table fitted to this machine (`mine`: this machine's fingerprint with a full
    probe; timed now, `passes` passes, when not given). With `per_op` > 0 the per-op route is
    tried too, on `timed` (the sampled units timed here; timed now when not given)."""
    if source.kind != "measured":
        raise UserError(f"{source_path}: is a {source.kind} table; calibrate from a measured one (a calibrated "
                        f"table names its source under calibration.from_table)")
    if per_op < 0:
        raise ParameterError("per_op", f": expected 0 (probe scales only) or more units per op, got {per_op}")
    if mine is None:
        mine = machine.here(source.threads, fresh=True, quick=False, passes=passes)
    points, reference = reference_points(source, mine)
    if len(points) < 2:
        raise UserError(f"{source_path}: only {len(points)} of the {len(PROBES)} probe networks can be compared with "
                        "it (it neither holds their timings nor covers their units); build this machine's table "
                        "with `nas latency build --device host`")
    table = calibrated_table(source, source_path, mine, points, reference, fit_scales(points))
    if not per_op:
        return table
    return with_per_op(table, source, points, timed if timed is not None else time_sample(source, per_op), per_op)
