"""Can a table measured on one machine be moved to another by scaling? One scale, two, or one per block family.

    python benchmarks/latency_family_scales.py [--validate benchmarks/results/latency_host_calibrated]
        [--table predictors/latency/tables/host.json] [--out benchmarks/results/latency_family_scales.json]

Why (issue 24): `nas latency calibrate` fits the shipped table to a new machine with one scale (or
conv vs attention), from six probe networks. On the AVX-512 machine of this benchmark's report the
calibrated table put the zoo's Mobile-Former models 48-54% low while MobileViT and RepViT stayed
within 7%: the families' relative speed changed between the two CPUs. This script asks, with no
new timing, how far per-family scales would take the table: it reads a `nas latency validate
--zoo` run made on the new machine (its random subnets and zoo models, each timed several times),
splits each network's prediction by the source table into one sum per block family (stem, mv2,
repvit, head, mobilevit, lgl, levit, former), and fits this machine's timings as

    measured ~ sum over classes (scale_class x that class's sum of unit times) + per_unit x units

for three class sets (one scale; conv vs attention; per family), each scored out of fold on the
subnets (2-fold) and, fitted on all subnets, on the zoo models (never in a fit) - beside the
measurement's own agreement with itself on the same networks. Seconds; reads committed files.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from reporting import machine, repo_path  # noqa: E402

from nas.atomic import atomic_write_text, read_json_lines  # noqa: E402
from nas.blocks.units import arch_units  # noqa: E402
from predictors.latency.derive import earlier_form  # noqa: E402
from predictors.latency.table import load_table  # noqa: E402
from predictors.latency.validate import (  # noqa: E402
    Sample,
    fit_relative,
    metrics,
    out_of_fold,
    repeatability,
    sample_archs,
    zoo_archs,
)

FAMILIES = ("stem", "mv2", "repvit", "head", "mobilevit", "lgl", "levit", "former")
CLASS_SETS = {"one scale": {f: "all" for f in FAMILIES},
              "conv vs attention": {f: ("conv" if f in ("stem", "mv2", "repvit", "head") else "attention")
                                    for f in FAMILIES},
              "per family": {f: f for f in FAMILIES}}


def family_sums(arch: Any, table: Any) -> dict[str, float]:
    """The source table's time for `arch`, split by block family (ms, per-call overhead removed)."""
    out = dict.fromkeys(FAMILIES, 0.0)
    for unit in arch_units(arch):
        out[unit.op.split(".", 1)[0]] += (table.entries[unit.key].us - table.overhead_us) / 1000
    return out


def features(sums: list[dict[str, float]], units: np.ndarray, classes: dict[str, str]) -> tuple[np.ndarray, list]:
    """Columns: one per class present in the data, plus units (the per-unit term), plus 1 (the overhead)."""
    names = sorted({classes[f] for s in sums for f in FAMILIES if s[f] > 0})
    cols = [[sum(s[f] for f in FAMILIES if classes[f] == c) for s in sums] for c in names]
    return np.column_stack([*map(np.array, cols), units, np.ones(len(sums))]), [*names, "per_unit_ms", "offset_ms"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--validate", type=Path, default=ROOT / "benchmarks" / "results" / "latency_host_calibrated",
                    help="a `nas latency validate --zoo` report folder (validate.json + samples.jsonl)")
    ap.add_argument("--table", type=Path, default=ROOT / "predictors" / "latency" / "tables" / "host.json",
                    help="the source table (measured on the other machine)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "latency_family_scales.json")
    args = ap.parse_args(argv)
    try:
        report = json.loads((args.validate / "validate.json").read_text())
        timed = {r["arch_hash"]: r for r in read_json_lines(args.validate / "samples.jsonl")}  # last line wins
        table = load_table(args.table)
    except (OSError, ValueError, KeyError) as exc:
        ap.error(f"--validate/--table: expected a validate report folder and a table ({exc})")
    subnets = sample_archs(table, report["samples"], report["seed"])
    # the committed run timed the zoo as the table knew it (Mobile-Former's earlier head and shuffles)
    zoo = [a for a in map(earlier_form, zoo_archs(table)) if a.arch_hash() in timed]
    if any(a.arch_hash() not in timed for a in subnets):
        ap.error(f"--validate: {args.validate} does not hold every subnet of its own seed/samples")

    def data(archs: list[Any]) -> tuple[list[dict[str, float]], np.ndarray, np.ndarray, list[Sample]]:
        samples = [Sample(**{**timed[a.arch_hash()], "medians_ms": tuple(timed[a.arch_hash()]["medians_ms"])})
                   for a in archs]
        return ([family_sums(a, table) for a in archs], np.array([len(arch_units(a)) for a in archs], float),
                np.array([s.measured_ms for s in samples]), samples)

    s_sums, s_units, s_y, s_samples = data(subnets)
    z_sums, z_units, z_y, z_samples = data(zoo)
    result: dict[str, Any] = {}
    for name, classes in CLASS_SETS.items():
        x, cols = features(s_sums, s_units, classes)
        coef = fit_relative(x, s_y)
        zx, zcols = features(z_sums, z_units, classes)
        missing = [c for c in zcols if c not in cols]
        zx = np.column_stack([zx[:, zcols.index(c)] if c in zcols else np.zeros(len(zoo)) for c in cols])
        zoo_pred = zx @ coef
        zoo_err = 100 * (zoo_pred / z_y - 1)
        result[name] = {"coefficients": dict(zip(cols, map(lambda v: round(float(v), 4), coef))),
                        "subnets_out_of_fold": metrics(out_of_fold(x, s_y), s_y),
                        "zoo": {"within_10pct": int(np.sum(np.abs(zoo_err) <= 10)),
                                "within_5pct": int(np.sum(np.abs(zoo_err) <= 5)), "of": len(zoo),
                                "classes_unseen_in_fit": missing,
                                "error_pct": {a.name: round(float(e), 1) for a, e in zip(zoo, zoo_err)}}}
    out = {"command": "python benchmarks/latency_family_scales.py", "validate": repo_path(args.validate),
           "source_table": repo_path(args.table), "validate_table": report.get("table_label"),
           "subnets": len(subnets), "zoo_models": len(zoo),
           "measurement_repeatability": {"subnets": repeatability(s_samples), "zoo": repeatability(z_samples)},
           "fits": result, "validate_machine_cpu": report.get("machine", {}).get("cpu"), "machine": machine()}
    atomic_write_text(args.out, json.dumps(out, indent=1) + "\n")
    rep = out["measurement_repeatability"]["subnets"]
    print(f"measurement vs itself: within 5% {rep['within_5pct']:.1%}, within 10% {rep['within_10pct']:.1%}")
    for name, r in result.items():
        m = r["subnets_out_of_fold"]
        print(f"{name:18s} subnets out of fold: within 5% {m['within_5pct']:.1%}, within 10% {m['within_10pct']:.1%}, "
              f"MAPE {m['mape']:.1%}; zoo {r['zoo']['within_10pct']}/{r['zoo']['of']} within 10%")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
