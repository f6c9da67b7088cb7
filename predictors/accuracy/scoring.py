"""How well a rating ranks the truth: Kendall tau and Spearman rho, with bootstrap intervals,
overall and within size classes, and out-of-fold predictions for fitted models.

Why within size classes: a latency budget already fixes roughly how large a network can be, so
what a search needs from its accuracy signal is the order of members of about equal size, where
parameter count itself says nothing. Why bootstrap intervals: over n members a Kendall tau
scatters by about sqrt(2(2n+5)/(9n(n-1))) (0.22 at n = 12, 0.06 at n = 150); a figure without
its interval cannot be compared with another.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import kendalltau, spearmanr


def _tau(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(kendalltau(a, b).statistic)


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(spearmanr(a, b).statistic)


def size_classes(sizes: Sequence[float], classes: int = 5) -> np.ndarray:
    """Each member's size quantile class, 0..classes-1 (by rank, ties by position)."""
    order = np.argsort(np.asarray(sizes, dtype=float), kind="stable")
    out = np.empty(len(order), dtype=int)
    out[order] = np.arange(len(order)) * classes // max(1, len(order))
    return out


def within_tau(rating: np.ndarray, truth: np.ndarray, classes: np.ndarray) -> float:
    """Mean over size classes of the Kendall tau inside each class (classes of < 3 members skipped)."""
    taus = [_tau(rating[classes == c], truth[classes == c]) for c in np.unique(classes)]
    taus = [t for t in taus if not np.isnan(t)]
    return float(np.mean(taus)) if taus else float("nan")


def rank_scores(rating: Sequence[float], truth: Sequence[float], sizes: Sequence[float], classes: int = 5,
                bootstrap: int = 1000, seed: int = 0) -> dict[str, float | list[float] | int]:
    """Kendall tau, Spearman rho and within-size-class tau of `rating` against `truth`, each with
    a 95% percentile bootstrap interval over members (resampled within each size class, so the
    classes keep their members)."""
    r, t = np.asarray(rating, dtype=float), np.asarray(truth, dtype=float)
    if r.shape != t.shape or len(r) != len(sizes):
        raise ValueError(f"rating/truth/sizes: lengths {len(r)}, {len(t)}, {len(sizes)} differ")
    keep = np.isfinite(r)
    r, t, cls = r[keep], t[keep], size_classes(np.asarray(sizes, dtype=float)[keep], classes)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(cls == c) for c in np.unique(cls)]
    draws = {"tau": [], "rho": [], "within_tau": []}
    for _ in range(bootstrap):
        idx = np.concatenate([rng.choice(g, size=len(g)) for g in groups]) if groups else np.array([], int)
        draws["tau"].append(_tau(r[idx], t[idx]))
        draws["rho"].append(_rho(r[idx], t[idx]))
        draws["within_tau"].append(within_tau(r[idx], t[idx], cls[idx]))
    out: dict[str, float | list[float] | int] = {"n": int(len(r)), "tau": _tau(r, t), "rho": _rho(r, t),
                                                  "within_tau": within_tau(r, t, cls)}
    for key, values in draws.items():
        v = np.asarray(values, dtype=float)
        v = v[np.isfinite(v)]
        out[f"{key}_ci"] = [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else [
            float("nan"), float("nan")]
    return {k: (round(v, 4) if isinstance(v, float) else [round(x, 4) for x in v] if isinstance(v, list) else v)
            for k, v in out.items()}


def out_of_fold(fit_predict: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray], x: np.ndarray,
                y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Predictions for every row from a model fitted without it: `fit_predict(x_train, y_train,
    x_held)` is called once per fold, with the fold's rows removed from its training data."""
    if len(y) < 2 * folds:
        raise ValueError(f"folds: {len(y)} rows cannot be split into {folds} folds of 2 or more")
    order = np.random.default_rng(seed).permutation(len(y))
    oof = np.full(len(y), np.nan)
    for k in range(folds):
        held = order[k::folds]
        train = np.setdiff1d(order, held)
        oof[held] = fit_predict(x[train], y[train], x[held])
    return oof
