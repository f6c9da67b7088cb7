"""How well and how fast does `nas search` search? (issue 6's acceptance check)

With the shipped accuracy predictor and a device table (default pixel6, estimated):

  1. quality at equal trial counts: TPE (default) and NSGA-II against random search, --trials each,
     --seeds seeds: the best predicted accuracy within 3 budgets (the 10th, 30th and 60th
     percentile of random members' latency), and the Pareto hypervolume of the accuracy/latency
     front within the largest budget (`--objective pareto`);
  2. searched winners against the reference zoo (scaled to the space's resolution and classes by
     one rule, see search_spaces/reference): a TPE search at each zoo model's latency on the same
     table; the predictor cannot rate the zoo models (they are outside its space), so their own
     accuracy comes from training them (benchmarks/headline.py);
  3. speed: complete trials per minute over --speed-trials trials, for the default journal
     storage, SQLite and in-memory, TPE and random.

Quality is judged against what the predictor can tell apart, not by the predictor alone: each
sampler's gain over random is set beside the predictor's out-of-fold mean absolute error on the
standalone-trained bench (a gain below it is not shown to be real), and a chosen member that is
itself in the bench is scored by its standalone accuracy (`judged`).

The same code path as the CLI (open_study + run_trials); quality runs use in-memory storage.
Writes benchmarks/results/search_quality.json and search_quality.png.

    python benchmarks/search_quality.py        # about 15 min on this 2-core machine
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402

from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.search.problem import SearchProblem  # noqa: E402
from nas.search.results import complete_rows, pareto_front, zoo_points  # noqa: E402
from nas.search.run import feasible_value, open_study, run_trials  # noqa: E402
from nas.search.sources import PredictorSource  # noqa: E402
from nas.search.storage import open_storage  # noqa: E402
from predictors.accuracy.model import DEFAULT_PREDICTOR  # noqa: E402
from predictors.latency.devices import open_device_table  # noqa: E402


def search(problem: SearchProblem, sampler: str, trials: int, seed: int, storage=None, name: str = "s"
           ) -> tuple[optuna.Study, float]:
    """(study, seconds of the trial loop) for one search."""
    study, _ = open_study(storage or optuna.storages.InMemoryStorage(), name, problem, {}, sampler, seed)
    return study, run_trials(study, problem, trials).seconds


def best_within(study: optuna.Study, budget_ms: float) -> float | None:
    return max((v for t in study.trials if (v := feasible_value(t, budget_ms)) is not None), default=None)


def hypervolume(front: list, acc_ref: float, lat_ref: float) -> float:
    """Area (accuracy x ms) that the front dominates inside the box [.., lat_ref] x [acc_ref, ..]."""
    points = sorted((r.latency_ms, r.accuracy) for r in front if r.latency_ms < lat_ref and r.accuracy > acc_ref)
    area = 0.0
    for i, (lat, acc) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else lat_ref
        area += (nxt - lat) * (acc - acc_ref)
    return area


def best_row(study: optuna.Study, space, budget_ms: float):
    rows = [r for r in complete_rows(study, space, budget_ms) if r.feasible]
    return max(rows, key=lambda r: r.accuracy) if rows else None


def judged(quality: dict, predictor: dict, chosen: dict[str, list[str]]) -> dict:
    """Each sampler's mean gain over random per budget beside the predictor's out-of-fold error
    (points), and the chosen members found in the standalone bench with their bench accuracy."""
    from predictors.accuracy.bench import read_bench

    mae = (predictor.get("holdout") or {}).get("mae")
    gains = {b: {s: round(100 * (q[s]["mean"] - q["random"]["mean"]), 2) for s in q if s != "random"
                 and q[s]["mean"] is not None and q["random"]["mean"] is not None} for b, q in quality.items()}
    bench = {}
    for row in read_bench(ROOT / "benchmarks" / "results" / "proxy_bench"):
        bench.setdefault(row["arch_hash"], []).append(row["test_acc"])
    found = {s: {h: round(statistics.mean(bench[h]), 5) for h in hs if h in bench} for s, hs in chosen.items()}
    return {"gain_over_random_points": gains,
            "predictor_out_of_fold_mae_points": round(100 * mae, 2) if mae is not None else None,
            "gains_beyond_predictor_error": {b: {s: (mae is not None and g > 100 * mae) for s, g in g_b.items()}
                                             for b, g_b in gains.items()},
            "chosen_in_bench": found, "chosen_total": {s: len(hs) for s, hs in chosen.items()}}


def summary(values: list[float | None]) -> dict:
    got = [v for v in values if v is not None]
    return {"mean": round(statistics.mean(got), 5) if got else None,
            "std": round(statistics.stdev(got), 5) if len(got) > 1 else 0.0, "runs": values}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="pixel6")
    p.add_argument("--predictor", default=str(DEFAULT_PREDICTOR))
    p.add_argument("--trials", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--speed-trials", type=int, default=1000)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "search_quality.json"))
    args = p.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    table, table_path = open_device_table(args.device)
    source = PredictorSource(args.predictor)
    space = source.space

    def problem(budget: float, objective: str = "acc") -> SearchProblem:
        return SearchProblem(space, table, budget, source, objective)

    lat = sorted(problem(1.0).latency_ms(space.sample(10_000 + i)) for i in range(1000))
    budgets = [round(lat[int(q * len(lat))], 3) for q in (0.1, 0.3, 0.6)]
    accs = [source.rate(a, space.encode(a)) for a in (space.sample(20_000 + i) for i in range(1000))]
    acc_ref = min(accs)
    seeds = list(range(args.seeds))
    samplers = ("tpe", "nsga2", "random")

    # 1. quality at equal trial counts
    quality: dict[str, dict] = {}
    chosen: dict[str, list[str]] = {s: [] for s in samplers}
    for budget in budgets:
        quality[str(budget)] = {}
        for s in samplers:
            runs = []
            for seed in seeds:
                study = search(problem(budget), s, args.trials, seed)[0]
                runs.append(best_within(study, budget))
                best = best_row(study, space, budget)
                if best is not None:
                    chosen[s].append(space.decode(best.params).arch_hash())
            quality[str(budget)][s] = summary(runs)
        print(f"budget {budget} ms: " + ", ".join(f"{s} {quality[str(budget)][s]['mean']}" for s in samplers))
    top = budgets[-1]
    pareto, fronts = {}, {}
    for s in samplers:
        hvs = []
        for seed in seeds:
            study, _ = search(problem(top, "pareto"), s, args.trials, seed)
            front = pareto_front(complete_rows(study, space, top))
            hvs.append(round(hypervolume(front, acc_ref, top), 6))
            fronts.setdefault(s, front)
        pareto[s] = summary(hvs)
        print(f"hypervolume {s}: {pareto[s]['mean']}")

    # 2. winners at each zoo model's latency
    zoo = []
    for point in zoo_points(problem(top)):
        row = {"zoo": point["name"], "zoo_latency_ms": round(point["latency_ms"], 4), "zoo_accuracy": point["accuracy"]}
        try:
            study, _ = search(problem(point["latency_ms"]), "tpe", args.trials, 0)
            rows = [r for r in complete_rows(study, space, point["latency_ms"]) if r.feasible]
            best = max(rows, key=lambda r: r.accuracy) if rows else None
        except Exception as exc:  # noqa: BLE001 - recorded, not fatal
            best, row["error"] = None, str(exc)
        if best:
            row.update(winner_latency_ms=round(best.latency_ms, 4), winner_predicted_accuracy=round(best.accuracy, 5),
                       winner_trial=best.number)
        zoo.append(row)
        print(row)

    # 3. speed: complete trials per minute
    speed = {}
    with tempfile.TemporaryDirectory() as tmp:
        for storage_name, make in (("journal (default)", lambda: open_storage(f"journal:{tmp}/s.journal")),
                                   ("sqlite", lambda: open_storage(f"sqlite:///{tmp}/s.db")),
                                   ("in-memory", optuna.storages.InMemoryStorage)):
            for s in ("tpe", "random"):
                trials = args.speed_trials if storage_name != "sqlite" else max(100, args.speed_trials // 5)
                _, seconds = search(problem(budgets[1]), s, trials, 0, make(), f"speed-{s}")
                speed[f"{storage_name}/{s}"] = {"trials": trials, "seconds": round(seconds, 2),
                                                "trials_per_min": round(trials / seconds * 60)}
                print(f"speed {storage_name}/{s}: {speed[f'{storage_name}/{s}']}")

    est = table.estimate or {}
    report = {
        "device": table.device, "table_kind": table.kind, "table_error_pct": est.get("error_pct"),
        "table": str(table_path), "predictor": source.describe(), "space": space.name,
        "trials_per_search": args.trials, "seeds": seeds, "budgets_ms": budgets,
        "budget_rule": "10th, 30th, 60th percentile of 1000 random members' latency",
        "best_accuracy_within_budget": quality,
        "pareto_hypervolume": {"budget_ms": top, "acc_ref": round(acc_ref, 5), "by_sampler": pareto,
                               "unit": "accuracy (fraction) x ms inside [acc_ref, 1] x [0, budget]"},
        "judged": judged(quality, source.describe(), chosen),
        "zoo_comparison": zoo, "speed": speed, "target_trials_per_min": 1000,
        "machine": {"python": platform.python_version(), "optuna": optuna.__version__,
                    "platform": platform.platform()},
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    _plot(quality, budgets, fronts, out.with_suffix(".png"), table.device)
    print(f"-> {out}")
    return 0


def _plot(quality: dict, budgets: list[float], fronts: dict, path: Path, device: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    left, right = fig.subplots(1, 2)
    width = 0.25
    for k, s in enumerate(("tpe", "nsga2", "random")):
        means = [100 * (quality[str(b)][s]["mean"] or 0) for b in budgets]
        stds = [100 * quality[str(b)][s]["std"] for b in budgets]
        left.bar([i + (k - 1) * width for i in range(len(budgets))], means, width, yerr=stds, label=s)
    left.set_xticks(range(len(budgets)), [f"{b:g} ms" for b in budgets])
    left.set(ylabel="best predicted val top-1 within budget (%)", title="equal trial counts")
    lo = min(100 * (quality[str(b)][s]["mean"] or 1) for b in budgets for s in quality[str(b)])
    left.set_ylim(lo - 3)
    left.legend()
    for s, front in fronts.items():
        right.plot([r.latency_ms for r in front], [100 * r.accuracy for r in front], "-o", ms=3, label=s)
    right.set(xlabel=f"latency on {device} (ms)", ylabel="predicted val top-1 (%)", title="Pareto fronts (seed 0)")
    right.grid(alpha=0.3)
    right.legend()
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


if __name__ == "__main__":
    sys.exit(main())
