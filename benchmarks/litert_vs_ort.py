"""LiteRT against ONNX Runtime here, paired in one run; the LiteRT table validated; pixel6 from each (issue 25).

    python benchmarks/litert_vs_ort.py [--litert-table T] [--ort-table host] [--subnets 100] [--passes 2]
    python benchmarks/litert_vs_ort.py --tiny --litert-table T --ort-table T2 --results DIR   # smoke test

Needs the litert-convert extra. The models: --subnets random members of the hybrid space
(`validate.sample_archs`, --seed) and the 17 reference-zoo models at their own resolution. Pass k
times every model with LiteRT (the .tflite `nas export --tflite` writes for it: converted once,
kept in the work folder), then every model with ONNX Runtime (`nas export`'s ONNX), each timing in
a fresh session and appended to a journal per runtime: a killed run resumes where it stopped, and
the two runtimes see the machine in the same state, pass by pass.

Writes benchmarks/results/litert_vs_ort.json/.md/.png:
- paired: each model's LiteRT / ORT ratio (lowest median over the passes of each), per zoo model,
  and for the subnets overall, per resolution and per block family;
- each table's validation in `nas latency validate`'s form (plain sum, 2-fold corrected, FLOPs line,
  the measurement's own repeatability and the table against it, per resolution, the zoo models),
  the LiteRT table's split by how many of a model's units were derived rather than timed;
- the pixel6 estimate's leave-one-out error on the four published figures, from each table.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reporting import machine, repo_path  # noqa: E402

from nas.arch.schema import ArchConfig  # noqa: E402
from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.blocks.units import arch_units  # noqa: E402
from nas.cli.latency_estimate import host_table  # noqa: E402
from nas.cli.main import error_line  # noqa: E402
from nas.errors import UserError  # noqa: E402
from nas.export import ConversionError, require_converter  # noqa: E402
from predictors.latency import cross_runtime, pixel6  # noqa: E402
from predictors.latency.predict import predict  # noqa: E402
from predictors.latency.table import LatencyTable  # noqa: E402
from predictors.latency.validate import (  # noqa: E402
    Sample,
    collect,
    evaluate,
    machine_info,
    sample_archs,
    store_correction,
    tflite_file,
    zoo_archs,
    zoo_report,
)

RESULTS = Path(__file__).parent / "results"
SHIPPED_LITERT = Path(__file__).resolve().parents[1] / "predictors" / "latency" / "tables" / "host_litert.json"


def family(arch: ArchConfig) -> str:
    """The blocks a model mixes beyond inverted residuals ('mv2' when none): the space's families."""
    blocks = sorted({s.block for s in arch.stages} - {"mv2"})
    return "+".join(blocks) or "mv2"


def convert_all(archs: list[ArchConfig], cache: Path, processes: int) -> dict[str, str]:
    """Convert every model to .tflite before any timing, `processes` at a time (20-40 s each; no
    timing runs meanwhile, so using every core disturbs nothing). Converted files are kept: a rerun
    converts only what is missing. Returns {arch hash: reason} of the models the converter rejects
    (kept in cache/rejected.json, so a rerun does not try them again)."""
    rejected_file = cache / "rejected.json"
    rejected = json.loads(rejected_file.read_text()) if rejected_file.is_file() else {}
    todo = [a for a in archs if a.arch_hash() not in rejected and not (cache / f"{a.arch_hash()}.tflite").is_file()]
    if todo:
        with mp.get_context("spawn").Pool(processes, initializer=_one_thread) as pool:
            for i, (h, why) in enumerate(pool.imap_unordered(_convert, [(a, cache) for a in todo]), 1):
                if why:
                    rejected[h] = why
                    atomic_write_text(rejected_file, json.dumps(rejected, indent=1) + "\n")
                _progress("converting", i, len(todo))
    return {a.arch_hash(): rejected[a.arch_hash()] for a in archs if a.arch_hash() in rejected}


def _one_thread() -> None:
    torch.set_num_threads(1)


def _convert(job: tuple[ArchConfig, Path]) -> tuple[str, str | None]:
    """(arch hash, None) once converted, or (arch hash, the converter's last error line)."""
    arch, cache = job
    try:
        tflite_file(arch, cache)
    except ConversionError as exc:
        return arch.arch_hash(), str(exc)
    return arch.arch_hash(), None


def time_both(litert: LatencyTable, ort: LatencyTable, archs: list[ArchConfig], work: Path, passes: int
              ) -> tuple[list[Sample], list[Sample]]:
    """Pass by pass, LiteRT then ORT over every model (journals in `work`; resumable)."""
    found: tuple[list[Sample], list[Sample]] = ([], [])
    for k in range(1, passes + 1):
        for i, (table, name) in enumerate(((litert, "litert"), (ort, "onnxruntime"))):
            found[i][:] = collect(table, archs, work / f"{name}.jsonl", repeats=k,
                                  progress=lambda d, n, name=name, k=k: _progress(f"pass {k} {name}", d, n))
    return found


def _progress(what: str, done: int, total: int) -> None:
    if done == total or done % 10 == 0:
        print(f"  {what}: {done}/{total}", file=sys.stderr, flush=True)


def paired(archs: list[ArchConfig], lt: list[Sample], ort: list[Sample], zoo_from: int) -> dict[str, Any]:
    """LiteRT / ORT per model and summarised."""
    rows = [{"name": a.name if i >= zoo_from else a.arch_hash(), "resolution": a.resolution, "family": family(a),
             "ort_ms": round(o.measured_ms, 4), "litert_ms": round(s.measured_ms, 4),
             "ratio": round(s.measured_ms / o.measured_ms, 4)}
            for i, (a, s, o) in enumerate(zip(archs, lt, ort))]
    subnets, zoo = rows[:zoo_from], rows[zoo_from:]

    def summary(group: list[dict[str, Any]]) -> dict[str, Any]:
        ratios = sorted(r["ratio"] for r in group)
        q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
        return {"models": len(group), "median_ratio": round(statistics.median(ratios), 4),
                "q25": round(q[0], 4), "q75": round(q[2], 4), "min": ratios[0], "max": ratios[-1]}

    def by(key: str) -> dict[str, Any]:
        return {str(v): summary([r for r in subnets if r[key] == v]) for v in sorted({r[key] for r in subnets})}

    return {"zoo": zoo, "subnets": summary(subnets) if subnets else None, "subnets_by_resolution": by("resolution"),
            "subnets_by_family": by("family"), "subnet_rows": subnets}


def table_validation(table: LatencyTable, archs: list[ArchConfig], samples: list[Sample], zoo_from: int,
                     ort_reference: LatencyTable) -> dict[str, Any]:
    """`nas latency validate`'s figures for `table` on these timings (subnets), and its zoo report."""
    preds = [predict(a, table) for a in archs]
    subnets = [replace(s, plain_ms=p.plain_ms, units=len(arch_units(a)))
               for s, p, a in zip(samples[:zoo_from], preds, archs)]
    result = evaluate(subnets)
    result.pop("_series")
    result["zoo"] = zoo_report(archs[zoo_from:], samples[zoo_from:], [p.ms for p in preds[zoo_from:]])
    result["table"] = {"label": table.label, "runtime": table.runtime, "version": table.ort_version,
                       "entries": len(table.entries),
                       "derived": sum(e.derived is not None for e in table.entries.values())}
    derived = [p.derived / len(arch_units(a)) for p, a in zip(preds, archs)]
    if table.runtime == "litert":
        result["derivation_leave_one_out"] = cross_runtime.leave_one_out(table, ort_reference)
    result["derived_unit_share"] = {"subnets_median": round(statistics.median(derived[:zoo_from]), 4),
                                    "zoo_max": round(max(derived[zoo_from:], default=0.0), 4)}
    return result


def pixel6_loo(table: LatencyTable) -> dict[str, Any]:
    """The pixel6 estimate's fit from `table`: leave-one-out % errors on the published figures."""
    try:
        est = pixel6.calibrate(pixel6.calibration_points(table))
    except UserError as exc:
        return {"skipped": str(exc)}
    return {k: est[k] for k in ("a", "b_ms", "loo_error_pct", "error_pct", "points")}


def pixel6_loo_measured(archs: list[ArchConfig], samples: list[Sample]) -> dict[str, Any]:
    """The same fit on this machine's end-to-end timings of the calibration models (no table in
    between): which runtime's host timings map better onto the published Pixel 6 figures."""
    measured = {(a.name, a.resolution): s.measured_ms for a, s in zip(archs, samples)}
    figures = pixel6.published_figures()
    points = [pixel6.Point(an.zoo, an.resolution, measured[(an.zoo, an.resolution)], *figures[an.model])
              for an in pixel6.ANCHORS if (an.zoo, an.resolution) in measured]
    if len(points) < len(pixel6.ANCHORS):
        return {"skipped": "the calibration models were not timed (--no-zoo)"}
    est = pixel6.calibrate(points)
    return {k: est[k] for k in ("a", "b_ms", "loo_error_pct", "error_pct", "points")}


def markdown(report: dict[str, Any]) -> str:
    p, lt, ort = report["paired"], report["litert_table"], report["ort_table"]
    lines = ["# LiteRT vs ONNX Runtime on this machine (benchmarks/litert_vs_ort.py)", "",
             f"{report['machine']['fingerprint']['cpu']}; {report['passes']} passes per runtime, interleaved; "
             f"LiteRT {report['versions']['ai-edge-litert']}, ONNX Runtime {report['versions']['onnxruntime']}; "
             "1 thread. Ratio = LiteRT / ORT end-to-end (lowest median over the passes).", "",
             "| zoo model | px | ORT ms | LiteRT ms | LiteRT/ORT |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['name']} | {r['resolution']} | {r['ort_ms']:.2f} | {r['litert_ms']:.2f} | {r['ratio']:.2f} |"
              for r in p["zoo"]]
    if p["subnets"]:
        s = p["subnets"]
        lines += ["", f"{s['models']} random subnets: median ratio {s['median_ratio']:.2f} "
                      f"(quartiles {s['q25']:.2f}-{s['q75']:.2f}, range {s['min']:.2f}-{s['max']:.2f})", "",
                  "| subnets by family | n | median ratio | quartiles |", "|---|---:|---:|---|"]
        lines += [f"| {k} | {v['models']} | {v['median_ratio']:.2f} | {v['q25']:.2f}-{v['q75']:.2f} |"
                  for k, v in p["subnets_by_family"].items()]
    lines += ["", "| table | runtime | within 5% | within 10% | measurement's own 5% / 10% | vs own 5% / 10% "
                  "| zoo within 10% |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, v in (("LiteRT", lt), ("ORT", ort)):
        rep, vs, z = v["measurement_repeatability"] or {}, v["lut_vs_measurement_noise"] or {}, v["zoo"]
        lines.append(f"| {v['table']['label']} | {name} | {v['lut']['within_5pct']:.0%} "
                     f"| {v['lut']['within_10pct']:.0%} "
                     f"| {rep.get('within_5pct', float('nan')):.0%} / {rep.get('within_10pct', float('nan')):.0%} "
                     f"| {vs.get('within_5pct') or float('nan'):.2f} / {vs.get('within_10pct') or float('nan'):.2f} "
                     f"| {z['within_10pct']}/{z['of']} |")
    lines += ["", "pixel6 estimate (pixel6_ms = a * host_ms + b on the four published figures), leave-one-out "
                  "median |error|, from each runtime's host figures:", "",
              "| host figures from | LiteRT | ONNX Runtime |", "|---|---:|---:|"]
    for what, key in (("the tables' predictions", "pixel6"), ("end-to-end timings here", "pixel6_from_measured")):
        cells = [report[key][rt].get("error_pct") for rt in ("litert", "onnxruntime")]
        lines.append(f"| {what} | " + " | ".join("-" if c is None else f"{c:.1f}%" for c in cells) + " |")
    if report.get("not_convertible"):
        lines += ["", f"{len(report['not_convertible'])} sampled model(s) the converter rejects are left out: "
                      + "; ".join(f"{h}: {why}" for h, why in report["not_convertible"].items())]
    share = lt["derived_unit_share"]
    lines += ["", f"LiteRT table: {lt['table']['derived']} of {lt['table']['entries']} entries derived from the ORT "
                  f"table by per-op ratios; median share of a subnet's units derived {share['subnets_median']:.0%}, "
                  f"of a zoo model's at most {share['zoo_max']:.0%}."]
    loo = lt.get("derivation_leave_one_out", {})
    if "*" in loo:
        lines += ["", "Derivation held out unit by unit (per-op fit on the other timed units): median |error| "
                      f"{loo['*']['median_abs']:.1%}, 90th percentile {loo['*']['p90_abs']:.1%} over "
                      f"{loo['*']['units']} units; per op: "
                      + ", ".join(f"{op} {v['median_abs']:.0%}" for op, v in loo.items() if op != "*") + "."]
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure  # matplotlib: only when the figure is drawn

    p = report["paired"]
    fig = Figure(figsize=(10, 4.5))
    a, b = fig.subplots(1, 2)
    rows = p["subnet_rows"]
    a.scatter([r["ort_ms"] for r in rows], [r["ratio"] for r in rows], s=10, alpha=0.6, label="random subnets")
    a.scatter([r["ort_ms"] for r in p["zoo"]], [r["ratio"] for r in p["zoo"]], s=18, c="tab:red", label="zoo")
    for r in p["zoo"]:
        a.annotate(r["name"], (r["ort_ms"], r["ratio"]), fontsize=5)
    a.axhline(1.0, c="k", lw=0.8)
    a.set(xscale="log", xlabel="ONNX Runtime end-to-end (ms)", ylabel="LiteRT / ONNX Runtime",
          title="paired, this machine")
    a.legend(fontsize=7)
    pts = report["litert_points"]
    b.scatter([q["measured_ms"] for q in pts], [q["predicted_ms"] for q in pts], s=10,
              c=["tab:red" if q["zoo"] else "tab:blue" for q in pts])
    lo = min(q["measured_ms"] for q in pts) * 0.8
    hi = max(q["measured_ms"] for q in pts) * 1.2
    b.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    b.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="0.9")
    b.set(xscale="log", yscale="log", xlabel="LiteRT measured (ms)", ylabel="LiteRT table prediction (ms)",
          title="LiteRT table vs measurement (red: zoo)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=120))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--litert-table", default=str(SHIPPED_LITERT), help="LiteRT host table (device name or file)")
    ap.add_argument("--ort-table", default="host", help="ONNX Runtime host table (device name or file)")
    ap.add_argument("--subnets", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--passes", type=int, default=2)
    ap.add_argument("--no-zoo", action="store_true", help="random subnets only (the smoke test)")
    ap.add_argument("--processes", type=int, default=2, help="conversions run in parallel before timing")
    ap.add_argument("--store", action="store_true",
                    help="store the correction fitted on the subnets into the LiteRT table, as `nas latency "
                         "validate` does (the zoo models are not in the fit)")
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--work", type=Path, help="journals and converted models (default RESULTS/litert_vs_ort_samples)")
    args = ap.parse_args(argv)
    try:
        require_converter()
        litert, lt_path = host_table(args.litert_table)
        ort, ort_path = host_table(args.ort_table)
        if (litert.runtime, ort.runtime) != ("litert", "onnxruntime"):
            raise UserError(f"--litert-table / --ort-table: expected a LiteRT and an ONNX Runtime table, got "
                            f"{litert.runtime} and {ort.runtime}")
        subnets = sample_archs(ort, args.subnets, args.seed)
        zoo = [] if args.no_zoo else zoo_archs(ort)
        archs = subnets + zoo
        preds = [predict(a, t) for a in archs for t in (litert, ort)]  # a missing unit fails now, not after hours
    except UserError as exc:
        print(error_line(exc), file=sys.stderr)
        return 2
    del preds
    work = args.work or args.results / "litert_vs_ort_samples"
    rejected = convert_all(archs, work / "tflite", args.processes)
    subnets = [a for a in subnets if a.arch_hash() not in rejected]
    zoo = [a for a in zoo if a.arch_hash() not in rejected]
    archs = subnets + zoo
    lt_samples, ort_samples = time_both(litert, ort, archs, work, args.passes)
    n = len(subnets)
    lt_val = table_validation(litert, archs, lt_samples, n, ort)
    if args.store:
        store_correction(litert, lt_path, lt_val, "benchmarks/litert_vs_ort.py")
        lt_val = table_validation(litert, archs, lt_samples, n, ort)  # the zoo models with it
    report = {
        "litert_table": lt_val, "ort_table": table_validation(ort, archs, ort_samples, n, ort),
        "paired": paired(archs, lt_samples, ort_samples, n),
        "pixel6": {"litert": pixel6_loo(litert), "onnxruntime": pixel6_loo(ort)},
        "pixel6_from_measured": {"litert": pixel6_loo_measured(archs, lt_samples),
                                 "onnxruntime": pixel6_loo_measured(archs, ort_samples)},
        "tables": {"litert": repo_path(lt_path), "onnxruntime": repo_path(ort_path)},
        "subnets": n, "zoo": len(zoo), "seed": args.seed, "passes": args.passes,
        "not_convertible": rejected,
        "versions": {"ai-edge-litert": metadata.version("ai-edge-litert"),
                     "litert-torch": metadata.version("litert-torch"),
                     "onnxruntime": metadata.version("onnxruntime")},
        "machine": {**machine_info(1), **machine()},
        "litert_points": [{"measured_ms": s.measured_ms, "predicted_ms": round(predict(a, litert).ms, 4),
                           "zoo": i >= n} for i, (a, s) in enumerate(zip(archs, lt_samples))],
    }
    args.results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.results / "litert_vs_ort.json", json.dumps(report, indent=1) + "\n")
    atomic_write_text(args.results / "litert_vs_ort.md", markdown(report))
    plot(report, args.results / "litert_vs_ort.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
