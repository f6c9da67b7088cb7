"""Every accuracy source scored on the standalone-trained bench, overall and at equal size.

Truth: each bench member's standalone test top-1 (the mean of its seeds where two exist).
Sources, each a rating of every member (higher = predicted more accurate):
- free counts: parameters, MACs, measured latency, depth (stem + blocks);
- zero-cost proxies (predictors/accuracy/zero_cost.py: synflow, NASWOT, SNIP, grad-norm, ZiCo),
  on one batch of 64 training images, the seed-0 initial weights (cached in zero_cost.jsonl);
- early training: val accuracy and mean training loss after the first of the bench's epochs
  (from the bench rows: what a 1-epoch race would see);
- weight sharing: the predictor fitted on the committed supernet's ratings
  (predictors/accuracy/supernet.json) and, with --supernet RUN, inherited accuracy itself;
- fitted predictors (ridge, gradient boosting, Gaussian process; on the space encoding and any of
  the features above), scored out of fold: 5 folds over members, each member predicted by a model
  that never saw it (predictors/accuracy/scoring.py).
Each is scored by Kendall tau and Spearman rho with 95% bootstrap intervals, overall and within
parameter-count quintiles; the ceiling is the bench's own seed-0 vs seed-1 agreement.

Writes benchmarks/results/accuracy_sources.json and .png.

    python benchmarks/accuracy_sources.py                  # about 5 min the first time (proxies), then seconds
    python benchmarks/accuracy_sources.py --bench DIR --out FILE.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine, repo_path  # noqa: E402

from nas.arch import ArchConfig  # noqa: E402
from nas.atomic import append_json_line, atomic_write_text, read_json_lines  # noqa: E402
from nas.builder import build_model  # noqa: E402
from nas.cli.main import error_line  # noqa: E402
from nas.data import default_data_root, load_dataset, normalize, resize  # noqa: E402
from nas.errors import UserError  # noqa: E402
from predictors.accuracy.bench import bench_members, bench_space  # noqa: E402
from predictors.accuracy.encoding import SpaceEncoding  # noqa: E402
from predictors.accuracy.features import depth  # noqa: E402
from predictors.accuracy.model import SUPERNET_PREDICTOR, load_predictor, ridge_layer  # noqa: E402
from predictors.accuracy.scoring import out_of_fold, rank_scores  # noqa: E402
from predictors.accuracy.zero_cost import PROXIES, score_all  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
BENCH = RESULTS / "proxy_bench"
PROXY_BATCH, PROXY_SEED = 64, 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, default=BENCH)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--supernet", help="also rate the members with this supernet (supernet.pt or run folder)")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--out", type=Path, default=RESULTS / "accuracy_sources.json")
    args = p.parse_args(argv)
    try:
        report = build_report(args)
    except UserError as exc:
        print(error_line(exc, p), file=sys.stderr)
        return 2
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(args.out.with_suffix(".md"), markdown(report))
    plot(report, args.out.with_suffix(".png"))
    for name, s in report["sources"].items():
        print(f"{name:38s} tau {s['tau']:+.3f} [{s['tau_ci'][0]:+.2f}, {s['tau_ci'][1]:+.2f}]  "
              f"within-quintile {s['within_tau']:+.3f}")
    print(f"ceiling (seed 0 vs seed 1, {report['ceiling']['n']} members): tau {report['ceiling']['tau']:+.3f}")
    return 0


def build_report(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    bench = bench_members(args.bench)
    rows, hashes, archs = bench.rows, bench.hashes, bench.archs
    members = dict(zip(hashes, bench.runs))
    if len(members) < 4:
        raise UserError(f"{args.bench}: {len(members)} members, need at least 4 to score sources")
    truth = np.array(bench.truth)
    params = np.array([float(next(iter(members[h].values()))["params"]) for h in hashes])
    features = free_features(members, hashes, archs)
    features.update(proxy_features(args, hashes, archs))
    features.update(weight_sharing_features(args, archs))
    classes = max(1, min(5, len(hashes) // 3))  # quintiles, or fewer classes of >= 3 on a tiny bench

    def score(rating: np.ndarray) -> dict[str, Any]:
        return rank_scores(rating, truth, params, classes=classes, bootstrap=args.bootstrap)

    sources = {name: score(values) for name, values in features.items()}
    fitted = fitted_predictors(archs, truth, features, args.bench)
    for name, (oof, spec) in fitted.items():
        sources[name] = {**score(oof), **spec,
                         "mae_points": round(float(100 * np.nanmean(np.abs(oof - truth))), 3)}
    ceiling = seed_ceiling(members, classes, args.bootstrap)
    return {"bench": repo_path(args.bench), "members": len(hashes), "runs": len(rows),
            "truth": "standalone test top-1 (mean over seeds where two exist)",
            "truth_range": [round(float(truth.min()), 4), round(float(truth.max()), 4)],
            "recipe": rows[0].get("recipe"), "size_classes": classes, "ceiling": ceiling,
            "targets": targets(sources, ceiling),
            "sources": sources, "machine": machine()}


# --------------------------------------------------------------------------- features

def free_features(members: dict, hashes: list[str], archs: list[ArchConfig]) -> dict[str, np.ndarray]:
    """What a search knows without any training, and what one epoch of training shows."""
    first = [members[h][min(members[h])] for h in hashes]
    out = {
        "params": np.array([r["params"] for r in first], dtype=float),
        "macs": np.array([r["macs"] for r in first], dtype=float),
        "latency (measured)": np.array([np.mean([r["latency_ms"]["median"] for r in members[h].values()])
                                        for h in hashes]),
        "depth": np.array([depth(a) for a in archs], dtype=float),
    }
    if all(len(r["epochs"]) > 1 for r in first):  # a 1-epoch bench has no "early" to speak of
        out["val acc after epoch 1"] = np.array([r["epochs"][0]["val_acc"] for r in first], dtype=float)
        out["-train loss, epoch 1"] = np.array([-r["epochs"][0]["train_loss"] for r in first], dtype=float)
    return out


def proxy_features(args: argparse.Namespace, hashes: list[str], archs: list[ArchConfig]) -> dict[str, np.ndarray]:
    """Zero-cost proxies of every member, computed once and kept beside the bench."""
    cache_path = args.bench / "zero_cost.jsonl"
    cache = {r["arch_hash"]: r for r in read_json_lines(cache_path) if isinstance(r, dict)}
    missing = [a for h, a in zip(hashes, archs) if h not in cache]
    if missing:
        data = load_dataset(args.data)
        gen = torch.Generator().manual_seed(PROXY_SEED)
        index = torch.randperm(len(data.train), generator=gen)[:PROXY_BATCH]
        images, labels = data.train.images[index], data.train.labels[index]
        for k, arch in enumerate(missing):
            tic = time.perf_counter()
            x = normalize(resize(images, arch.resolution))
            scores = score_all(partial(build_model, arch, seed=0), x, labels)
            record = {"arch_hash": arch.arch_hash(), **scores, "seconds": round(time.perf_counter() - tic, 2),
                      "batch": PROXY_BATCH, "batch_seed": PROXY_SEED}
            append_json_line(cache_path, record)
            cache[record["arch_hash"]] = record
            print(f"zero-cost proxies {k + 1}/{len(missing)}: {record['seconds']} s", flush=True)
    return {f"zero-cost: {name}": np.array([cache[h][name] for h in hashes], dtype=float) for name in PROXIES}


def weight_sharing_features(args: argparse.Namespace, archs: list[ArchConfig]) -> dict[str, np.ndarray]:
    """The supernet-fitted predictor, and every ratings file beside the bench
    (`benchmarks/supernet_study.py fewshot`: one-shot and few-shot inherited accuracies)."""
    out = {}
    committed = load_predictor(SUPERNET_PREDICTOR)
    if all(committed.space.contains(a)[0] for a in archs):  # a bench of the space it was fitted on
        out["supernet-fitted predictor (committed)"] = committed.predict(archs)
    for path in sorted(args.bench.glob("ratings-*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        missing = [a.name for a in archs if a.arch_hash() not in data["ratings"]]
        if missing:
            print(f"warning: {path}: {len(missing)} bench members unrated (first {missing[0]}); rerun "
                  "`benchmarks/supernet_study.py fewshot`; left out", file=sys.stderr)
            continue
        out[f"supernet: {data['label']}"] = np.array([data["ratings"][a.arch_hash()] for a in archs], dtype=float)
    if args.supernet:
        from nas.supernet.evaluate import SubnetEvaluator, load_supernet

        supernet = load_supernet(args.supernet)
        evaluator = SubnetEvaluator(supernet, load_dataset(args.data), "val")
        out["supernet inherited val acc"] = np.array([evaluator.evaluate(a)["acc"] for a in archs])
    return out


# --------------------------------------------------------------------------- fitted predictors

def _standardise(train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mean, std = train.mean(axis=0), train.std(axis=0)
    std[std == 0] = 1.0
    return [(m - mean) / std for m in (train,) + others]


def ridge(x: np.ndarray, y: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The shipped predictor's model (predictors/accuracy/model.py), so its score is the file's."""
    layer = ridge_layer(x, y)
    return held @ layer.weight[:, 0] + layer.bias[0]


def boosting(x: np.ndarray, y: np.ndarray, held: np.ndarray) -> np.ndarray:
    from sklearn.ensemble import GradientBoostingRegressor

    model = GradientBoostingRegressor(n_estimators=300, learning_rate=0.03, max_depth=2, subsample=0.8,
                                      random_state=0)
    return model.fit(x, y).predict(held)


def gaussian_process(x: np.ndarray, y: np.ndarray, held: np.ndarray) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    xs, hs = _standardise(x, held)
    kernel = ConstantKernel() * RBF(length_scale=np.sqrt(x.shape[1])) + WhiteKernel()
    gp = GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=0)
    with warnings.catch_warnings():  # a hyper-parameter at its bound is a fit, not an error
        warnings.simplefilter("ignore", ConvergenceWarning)
        return gp.fit(xs, y).predict(hs)


MODELS: dict[str, Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]] = {
    "ridge": ridge, "boosting": boosting, "gp": gaussian_process}
SIZE = ("params", "macs", "depth")  # known at search time without training (per-unit counts)
ZERO_COST = tuple(f"zero-cost: {n}" for n in PROXIES)
EARLY = ("val acc after epoch 1", "-train loss, epoch 1")
UNTRAINED = ("none (the encoding)", "per-unit counts (free)")  # what the shipped predictor may use


def fitted_predictors(archs: list[ArchConfig], truth: np.ndarray, features: dict[str, np.ndarray], bench: Path
                      ) -> dict[str, tuple[np.ndarray, dict[str, Any]]]:
    """Out-of-fold predictions of each (model, feature set); the feature sets say what a search
    would have to compute per candidate."""
    encoding = SpaceEncoding(_space_of(archs, bench)).encode(archs).astype(float)

    def columns(names: tuple[str, ...]) -> np.ndarray:
        cols = [np.log(features[n]) if n in ("params", "macs") else features[n] for n in names if n in features]
        return np.stack([_finite(c) for c in cols], axis=1) if cols else np.zeros((len(archs), 0))

    sets = {"encoding": (encoding, "none (the encoding)"),
            "encoding+size": (np.hstack([encoding, columns(SIZE)]), "per-unit counts (free)"),
            "size": (columns(SIZE), "per-unit counts (free)"),
            "encoding+size+zero-cost": (np.hstack([encoding, columns(SIZE + ZERO_COST)]),
                                        "one forward/backward per proxy (~1 s)")}
    if all(n in features for n in EARLY):
        sets["encoding+size+epoch 1"] = (np.hstack([encoding, columns(SIZE + EARLY)]), "one epoch of training")
    for name in (n for n in features if n.startswith("supernet: ")):  # the supernet as a predictor feature
        sets[f"encoding+size+{name}"] = (np.hstack([encoding, columns(SIZE + (name,))]),
                                         "a trained supernet, one inherited-weight evaluation (~1 s)")
    out = {}
    for set_name, (x, cost) in sets.items():
        for model_name, fit in MODELS.items():
            if set_name == "encoding" and model_name == "gp":
                continue  # an RBF over one-hot columns only: nothing the ridge row does not show
            oof = out_of_fold(fit, x, truth, folds=min(5, len(truth) // 2), seed=0)
            out[f"fitted: {model_name} on {set_name}"] = (oof, {
                "model": model_name, "features": set_name, "search_time_cost": cost,
                "needs_training": "training" in cost or "supernet" in cost})
    return out


def _finite(column: np.ndarray) -> np.ndarray:
    """A proxy that failed on a member (NaN, or -inf from a log of zero) rates it as its worst."""
    ok = np.isfinite(column)
    return np.where(ok, column, column[ok].min() if ok.any() else 0.0)


def _space_of(archs: list[ArchConfig], bench: Path):
    space = bench_space(bench)
    bad = next((a for a in archs if not space.contains(a)[0]), None)
    if bad is not None:
        raise UserError(f"bench member {bad.name}: not a member of the {space.name} space ({space.contains(bad)[1]})")
    return space


# --------------------------------------------------------------------------- ceiling, targets, plot

def seed_ceiling(members: dict, classes: int, bootstrap: int) -> dict[str, Any]:
    """Seed 0 against seed 1 on the members trained with both: the most any rating can confirm."""
    both = [h for h in members if {0, 1} <= set(members[h])]
    if len(both) < 3:
        return {"n": len(both), "tau": float("nan"), "tau_ci": [float("nan")] * 2, "within_tau": float("nan")}
    s0 = [members[h][0]["test_acc"] for h in both]
    s1 = [members[h][1]["test_acc"] for h in both]
    sizes = [members[h][0]["params"] for h in both]
    return {**rank_scores(s0, s1, sizes, classes=max(1, min(classes, len(both) // 3)), bootstrap=bootstrap),
            "median_abs_diff_points": round(float(100 * np.median(np.abs(np.array(s0) - np.array(s1)))), 3)}


def targets(sources: dict[str, dict], ceiling: dict[str, Any]) -> dict[str, Any]:
    """The accuracy-truth issue's targets, read off the best source a search can use untrained."""
    shippable = {k: v for k, v in sources.items() if k.startswith("fitted:") and v["search_time_cost"] in UNTRAINED}
    best = max(shippable, key=lambda k: shippable[k]["tau"])
    b, p = sources[best], sources["params"]
    need_ceiling = round(0.85 * ceiling["tau"], 4) if not math.isnan(ceiling["tau"]) else None
    return {"best_untrained_fitted": best, "tried": sorted(shippable), "tau": b["tau"],
            "within_tau": b["within_tau"], "params_tau": p["tau"],
            "need_vs_params": round(p["tau"] + 0.10, 4), "gap_vs_params": round(b["tau"] - p["tau"] - 0.10, 4),
            "need_vs_ceiling": need_ceiling,
            "gap_vs_ceiling": round(b["tau"] - need_ceiling, 4) if need_ceiling is not None else None,
            "need_within": 0.30, "gap_within": round(b["within_tau"] - 0.30, 4),
            "met_vs_params": b["tau"] >= p["tau"] + 0.10,
            "met_vs_ceiling": b["tau"] >= need_ceiling if need_ceiling is not None else None,
            "met_within": b["within_tau"] >= 0.30}


def markdown(report: dict[str, Any]) -> str:
    """The report as the README's table: each source's taus with their intervals, best first."""
    def ci(s: dict[str, Any], key: str) -> str:
        return f"{s[key]:+.2f} [{s[key + '_ci'][0]:+.2f}, {s[key + '_ci'][1]:+.2f}]"

    c, t = report["ceiling"], report["targets"]
    lines = [f"Kendall tau against standalone test top-1 on {report['members']} bench members ({report['runs']} runs; "
             f"95% bootstrap intervals; within = mean tau inside {report['size_classes']} parameter-count classes).",
             "", "| source | tau | within size class | Spearman rho |", "|---|---|---|---|"]
    ranked = sorted(report["sources"].items(), key=lambda kv: -kv[1]["tau"] if math.isfinite(kv[1]["tau"]) else 9)
    lines += [f"| {name} | {ci(s, 'tau')} | {ci(s, 'within_tau')} | {s['rho']:+.2f} |" for name, s in ranked]
    lines += ["", f"Ceiling (seed 0 vs seed 1 on {c['n']} members): tau {c['tau']:+.2f}. Shipped model "
                  f"({t['best_untrained_fitted']}): tau {t['tau']:+.2f} (target {t['need_vs_params']:+.2f} = "
                  f"params + 0.10, and {t['need_vs_ceiling']} = 0.85 x ceiling), within {t['within_tau']:+.2f} "
                  f"(target +0.30).", ""]
    return "\n".join(lines)


def plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    names = list(report["sources"])
    s = report["sources"]
    fig = Figure(figsize=(10, 0.32 * len(names) + 1.5))
    for col, (key, title) in enumerate((("tau", "Kendall tau vs standalone test top-1"),
                                        ("within_tau", "within parameter-count quintiles"))):
        ax = fig.add_subplot(1, 2, col + 1)
        y = np.arange(len(names))
        vals = np.array([s[n][key] for n in names])
        # a percentile interval need not hold the point estimate on few members: clip, don't fail
        lo = np.clip(vals - np.array([s[n][f"{key}_ci"][0] for n in names]), 0, None)
        hi = np.clip(np.array([s[n][f"{key}_ci"][1] for n in names]) - vals, 0, None)
        ax.barh(y, vals, xerr=[lo, hi], color=["tab:orange" if n.startswith("fitted") else "tab:blue" for n in names])
        ceiling = report["ceiling"].get(key)
        if ceiling is not None and not math.isnan(ceiling):
            ax.axvline(ceiling, color="k", ls="--", lw=1, label="seed-to-seed ceiling")
            ax.legend(loc="lower right", fontsize=7)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_yticks(y, names if col == 0 else [""] * len(names), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"accuracy sources on {report['members']} bench members ({report['runs']} runs)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
