"""A finished (or interrupted) study as files: best.json, pareto.json, trials.csv, pareto.png, report.md.

Everything is derived from the study's storage, so the files can be rewritten at any time (each
worker does at its end) and always describe every trial so far. `best.json` is a plain ArchConfig
whose `meta.search` says where its figures come from: the device table (measured or estimated,
with its error), the accuracy source (and how well it ranks), hashes of both, the seed.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from nas import __version__
from nas.arch import save_arch
from nas.arch.schema import ArchConfig
from nas.atomic import atomic_write, atomic_write_text
from nas.errors import UserError
from nas.profile import profile_arch
from nas.search.problem import SearchProblem
from nas.search.run import SURPLUS_ATTR
from predictors.latency.table import runtime_note
from search_spaces.hybrid import HybridSpace
from search_spaces.reference import load_zoo_scaled, zoo_names


@dataclass(frozen=True)
class Row:
    number: int
    accuracy: float
    latency_ms: float
    feasible: bool
    params: dict[str, Any] = field(repr=False)


def complete_rows(study: optuna.Study, space: HybridSpace, budget_ms: float) -> list[Row]:
    """One row per distinct architecture (samplers propose some twice, and trials that differ only
    in parameters their member does not use are the same architecture; the first trial stands)."""
    rows, seen = [], set()
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        params = space.canonical_params(t.params)
        key = tuple(sorted(params.items()))
        if key in seen:
            continue
        seen.add(key)
        latency = float(t.user_attrs["latency_ms"])
        rows.append(Row(t.number, float(t.values[0]), latency, latency <= budget_ms, params))
    return rows


def pareto_front(rows: list[Row]) -> list[Row]:
    """Feasible rows no other feasible row beats on both accuracy (higher) and latency (lower)."""
    front, best_acc = [], float("-inf")
    for row in sorted((r for r in rows if r.feasible), key=lambda r: (r.latency_ms, -r.accuracy)):
        if row.accuracy > best_acc:
            front.append(row)
            best_acc = row.accuracy
    return front


def zoo_points(problem: SearchProblem) -> list[dict[str, Any]]:
    """Reference-zoo models at the space's largest resolution and class count: latency on the same
    table, and accuracy where the source can rate them (members of the space; otherwise None).
    Models whose units the table lacks at that resolution are left out."""
    space = problem.space
    points = []
    for name in zoo_names():
        arch = load_zoo_scaled(name, max(space.resolutions), space.num_classes)
        try:
            latency = problem.latency_ms(arch)
        except UserError:
            continue
        accuracy = problem.source.rate(arch, space.encode(arch)) if space.contains(arch)[0] else None
        points.append({"name": name, "latency_ms": latency, "accuracy": accuracy})
    return points


@dataclass
class SearchContext:
    """What the result files say about the run besides its trials."""

    study: str
    problem: SearchProblem
    table_path: str
    table_sha256: str
    sampler: str
    seed: int
    storage: str


def result_arch(ctx: SearchContext, row: Row, name: str) -> ArchConfig:
    """The ArchConfig of a result row, with meta.search saying where its figures come from."""
    problem, table = ctx.problem, ctx.problem.table
    estimate = table.estimate or {}
    return problem.space.decode(row.params).model_copy(update={"name": name}).with_meta(search={
        "study": ctx.study, "trial": row.number, "device": table.device, "budget_ms": problem.budget_ms,
        "latency_ms": round(row.latency_ms, 4), "latency_kind": table.provenance.tag,
        "latency_label": table.kind_note, "latency_runtime": runtime_note(table),
        "latency_error_pct": estimate.get("error_pct"), "latency_pipeline_ms": estimate.get("pipeline_ms"),
        "latency_table": {"path": ctx.table_path, "sha256": ctx.table_sha256},
        "accuracy": round(row.accuracy, 5), "accuracy_source": problem.source.describe(),
        "objective": problem.objective, "sampler": ctx.sampler, "seed": ctx.seed,
        "package": f"hybrid-nas {__version__}"})


def write_results(study: optuna.Study, ctx: SearchContext, run_dir: Path, top: int = 5) -> dict[str, Any]:
    """Write every result file; returns a summary (best row, top rows with params/FLOPs, counts)."""
    problem = ctx.problem
    rows = complete_rows(study, problem.space, problem.budget_ms)
    feasible = sorted((r for r in rows if r.feasible), key=lambda r: (-r.accuracy, r.latency_ms))
    front = pareto_front(rows)
    states = [t.state for t in study.get_trials(deepcopy=False)]
    summary: dict[str, Any] = {
        "complete": states.count(TrialState.COMPLETE), "distinct": len(rows), "feasible": len(feasible),
        "failed": states.count(TrialState.FAIL),
        "surplus": sum(1 for t in study.get_trials(deepcopy=False, states=(TrialState.PRUNED,))
                       if t.user_attrs.get(SURPLUS_ATTR)),
        "best": None, "top": [], "pareto": len(front)}
    _write_trials_csv(study, problem, run_dir / "trials.csv")
    zoo = zoo_points(problem)
    if feasible:
        best = result_arch(ctx, feasible[0], f"{ctx.study}-best")
        save_arch(best, run_dir / "best.json")
        summary["best"] = best
        for rank, row in enumerate(feasible[:top], 1):
            summary["top"].append({"rank": rank, "trial": row.number, "accuracy": row.accuracy,
                                   "latency_ms": row.latency_ms,
                                   **profile_arch(problem.space.decode(row.params))})
    pareto = [{"trial": r.number, "accuracy": r.accuracy, "latency_ms": r.latency_ms,
               "arch": result_arch(ctx, r, f"{ctx.study}-pareto-{r.number}").to_dict()} for r in front]
    atomic_write_text(run_dir / "pareto.json", json.dumps(pareto, indent=1) + "\n")
    _plot(rows, front, zoo, ctx, run_dir / "pareto.png")
    atomic_write_text(run_dir / "report.md", _report(ctx, summary, zoo, run_dir))
    return summary


def _write_trials_csv(study: optuna.Study, problem: SearchProblem, path: Path) -> None:
    """One line per trial; a parameter its member does not use is left blank."""
    trials = study.get_trials(deepcopy=False)
    budget_ms = problem.budget_ms
    active = {t.number: problem.space.canonical_params(t.params) for t in trials if t.params}
    keys = sorted({k for params in active.values() for k in params})
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["number", "state", "accuracy", "latency_ms", "feasible", "worker", *keys])
    for t in trials:
        latency = t.user_attrs.get("latency_ms")
        accuracy = t.values[0] if t.state == TrialState.COMPLETE else ""
        out.writerow([t.number, t.state.name, accuracy, "" if latency is None else round(latency, 5),
                      "" if latency is None else latency <= budget_ms, t.user_attrs.get("worker", ""),
                      *[active.get(t.number, {}).get(k, "") for k in keys]])
    atomic_write_text(path, buf.getvalue())


def _plot(rows: list[Row], front: list[Row], zoo: list[dict[str, Any]], ctx: SearchContext, path: Path) -> None:
    from matplotlib.figure import Figure  # matplotlib: ~0.5 s, only when pareto.png is drawn

    problem, table = ctx.problem, ctx.problem.table
    fig = Figure(figsize=(7, 5))
    ax = fig.subplots()
    for ok, colour, label in ((False, "#bbbbbb", "over budget"), (True, "#6a9fd8", "within budget")):
        pick = [r for r in rows if r.feasible == ok]
        ax.scatter([r.latency_ms for r in pick], [100 * r.accuracy for r in pick], s=8, c=colour, label=label)
    if front:
        ax.plot([r.latency_ms for r in front], [100 * r.accuracy for r in front], "-o", c="#d62728", ms=4,
                label="Pareto front")
    ax.axvline(problem.budget_ms, c="k", ls="--", lw=1, label=f"budget {problem.budget_ms:g} ms")
    rated = [z for z in zoo if z["accuracy"] is not None]
    unrated = [z for z in zoo if z["accuracy"] is None]
    if rated:
        ax.scatter([z["latency_ms"] for z in rated], [100 * z["accuracy"] for z in rated], marker="*", s=80,
                   c="#2ca02c", label="reference zoo")
    low = ax.get_ylim()[0]
    if unrated:
        ax.scatter([z["latency_ms"] for z in unrated], [low] * len(unrated), marker="^", s=40, c="#2ca02c",
                   clip_on=False, label="reference zoo (latency only: outside the space)")
    for z in zoo:
        ax.annotate(z["name"], (z["latency_ms"], 100 * z["accuracy"] if z["accuracy"] is not None else low),
                    fontsize=6, rotation=0 if z["accuracy"] is not None else 60, xytext=(2, 2),
                    textcoords="offset points")
    ax.set(xlabel=f"latency on {table.device} (ms, {table.kind_note})", ylabel=f"{problem.source.label} (%)",
           title=f"{ctx.study}: {len(rows)} distinct architectures, {problem.space.name} space")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def _report(ctx: SearchContext, summary: dict[str, Any], zoo: list[dict[str, Any]], run_dir: Path) -> str:
    problem, table = ctx.problem, ctx.problem.table
    source = problem.source.describe()
    estimate = table.estimate or {}
    lines = [f"# Search `{ctx.study}`", "",
             f"- space: `{problem.space.name}` ({problem.space.size():.3g} members, resolutions "
             f"{list(problem.space.resolutions)}, {problem.space.num_classes} classes)",
             f"- budget: {problem.budget_ms:g} ms on `{table.device}` ("
             + (f"estimated, ±{estimate.get('error_pct')}% leave-one-out; model only, a full app pipeline adds "
                f"~{estimate.get('pipeline_ms', 0):.2f} ms" if table.kind == "estimated" else table.kind_note) + ")",
             f"- latency table: `{ctx.table_path}` (sha256 {ctx.table_sha256[:12]})",
             f"- accuracy: {source['kind']} `{source['path']}` (sha256 {source['sha256'][:12]}): {source.get('metric')}"
             + (f"; unit: {source['unit']}" if source.get("unit") else "")
             + (f"; out-of-fold Kendall tau {source['holdout']['kendall_tau']:.3f}, mean abs error "
                f"{100 * source['holdout']['mae']:.2f} points" if source.get("holdout") else ""),
             f"- objective `{problem.objective}`, sampler `{ctx.sampler}`, seed {ctx.seed}, storage `{ctx.storage}`",
             f"- trials: {summary['complete']} complete ({summary['distinct']} distinct architectures), "
             f"{summary['feasible']} within budget, "
             f"{summary['failed']} failed, {summary['pareto']} on the Pareto front", ""]
    if summary["top"]:
        lines += ["| rank | trial | accuracy (%) | latency (ms) | params (M) | FLOPs (M) |",
                  "|---|---|---|---|---|---|"]
        lines += [f"| {t['rank']} | {t['trial']} | {100 * t['accuracy']:.2f} | {t['latency_ms']:.3f} | "
                  f"{t['params'] / 1e6:.3f} | {t['flops'] / 1e6:.1f} |" for t in summary["top"]]
        lines += ["", "`best.json` is rank 1: retrain it with `nas train best.json`, export it with `nas export`."]
    else:
        lines += ["No trial is within the budget yet."]
    if zoo:
        lines += ["", f"Reference zoo at {max(problem.space.resolutions)} px on the same table (accuracy only "
                  "where the source can rate them):", ""]
        lines += [f"- {z['name']}: {z['latency_ms']:.3f} ms"
                  + (f", {100 * z['accuracy']:.2f}%" if z["accuracy"] is not None else "") for z in zoo]
    lines += ["", "Files: " + ", ".join(f"`{p}`" for p in ("best.json", "pareto.json", "trials.csv", "pareto.png",
                                                             "report.md")
                                        if (run_dir / p).exists() or p == "report.md")]
    return "\n".join(lines) + "\n"
