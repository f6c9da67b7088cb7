"""An accuracy predictor: a small MLP ensemble on the space encoding, stored as plain JSON.

Why an MLP ensemble: it is what OFA and most weight-sharing NAS use on one-hot encodings, it
captures interactions (a wide stage 3 matters less after a narrow stage 2) that a linear model
misses, and averaging a few seeds removes most of the variance of a fit on a few hundred points.
It is fitted with scikit-learn and evaluated here with numpy (a few matrix products), so a search
rates thousands of architectures per second and the file holds numbers only: no pickle, nothing
executable, like every other artefact of the project.

The held-out quality (k-fold out-of-fold Kendall tau and mean absolute error against the
supernet's own evaluations) is computed when fitting and stored in the file, so every search that
uses the predictor can say how far to trust it.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from nas.arch.schema import ArchConfig
from nas.atomic import atomic_write_text
from nas.errors import UserError, read_json
from nas.supernet.spaces import space_from_dict, space_to_dict
from predictors.accuracy.encoding import SpaceEncoding
from search_spaces.hybrid import HybridSpace

PREDICTOR_FORMAT = "hybrid-nas/accuracy-predictor/v1"
DEFAULT_PREDICTOR = Path(__file__).parent / "default.json"


@dataclass
class Layer:
    weight: np.ndarray  # (in, out)
    bias: np.ndarray  # (out,)


@dataclass
class AccuracyPredictor:
    """Predicted accuracy (the fraction the supernet's evaluations measure) of members of `space`."""

    space: HybridSpace
    members: list[list[Layer]]  # the ensemble: each a ReLU MLP with a linear output
    target_mean: float
    target_std: float
    info: dict[str, Any] = field(default_factory=dict)  # what it was fitted on, and how well it ranks
    encoding: SpaceEncoding = field(init=False)

    def __post_init__(self) -> None:
        self.encoding = SpaceEncoding(self.space)

    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        outs = []
        for layers in self.members:
            h = rows
            for i, layer in enumerate(layers):
                h = h @ layer.weight + layer.bias
                if i < len(layers) - 1:
                    h = np.maximum(h, 0.0)
            outs.append(h[:, 0])
        return np.mean(outs, axis=0) * self.target_std + self.target_mean

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted accuracy of each member (ValueError for an architecture outside the space)."""
        return self.predict_rows(self.encoding.encode(archs))

    def predict_params(self, params: dict[str, Any]) -> float:
        """One member from its Optuna parameters (the search's fast path: no ArchConfig round trip)."""
        return float(self.predict_rows(self.encoding.params_row(params)[None])[0])

    # --------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        return {"format": PREDICTOR_FORMAT, "space": space_to_dict(self.space), "columns": self.encoding.columns,
                "target": {"mean": self.target_mean, "std": self.target_std}, "info": self.info,
                "members": [[{"weight": _short(layer.weight), "bias": _short(layer.bias)} for layer in m]
                            for m in self.members]}

    def save(self, path: str | os.PathLike[str]) -> Path:
        return atomic_write_text(path, json.dumps(self.to_dict(), separators=(",", ":")) + "\n")


def _short(values: np.ndarray) -> list:
    """Weights at 7 significant digits (float32's precision): a third of float64's JSON text."""
    return np.vectorize(lambda v: float(f"{v:.7g}"), otypes=[float])(values).tolist()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Content hash recorded in search results, so a result names the exact predictor/table used."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_predictor(path: str | os.PathLike[str] = DEFAULT_PREDICTOR) -> AccuracyPredictor:
    """A predictor file; anything unreadable or inconsistent is a one-line UserError naming it."""
    path = Path(path)
    data = read_json(path, "predictor JSON file", missing="predictor file not found")
    if not isinstance(data, dict) or data.get("format") != PREDICTOR_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise UserError(f"{path}: format: expected {PREDICTOR_FORMAT!r}, found {found!r}")
    space = space_from_dict(data.get("space"), f"{path}: space")
    try:
        members = [[Layer(np.asarray(layer["weight"], dtype=np.float64), np.asarray(layer["bias"], dtype=np.float64))
                    for layer in m] for m in data["members"]]
        predictor = AccuracyPredictor(space, members, float(data["target"]["mean"]), float(data["target"]["std"]),
                                      dict(data.get("info") or {}))
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{path}: members/target: malformed predictor weights ({exc})") from None
    if data.get("columns") != predictor.encoding.columns:
        raise UserError(f"{path}: columns: do not match the encoding of its space (file from another version?)")
    width = len(predictor.encoding.columns)
    for m in members:
        dims = [width] + [layer.weight.shape[1] if layer.weight.ndim == 2 else -1 for layer in m]
        ok = all(layer.weight.ndim == 2 and layer.weight.shape[0] == dims[i] and layer.bias.shape == (dims[i + 1],)
                 for i, layer in enumerate(m)) and dims[-1] == 1
        if not m or not ok:
            raise UserError(f"{path}: members: layer shapes do not chain from {width} inputs to 1 output")
    return predictor


# ------------------------------------------------------------------- fitting
MODELS = ("mlp", "ridge")


def _fit_members(x: np.ndarray, y: np.ndarray, seeds: Sequence[int], hidden: tuple[int, ...], kind: str
                 ) -> list[list[Layer]]:
    """`kind` "mlp": one L-BFGS MLP per seed (weight decay 3: a few hundred noisy points);
    "ridge": one linear model (the baseline an MLP has to beat)."""
    from sklearn.linear_model import Ridge
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    import warnings

    from sklearn.exceptions import ConvergenceWarning

    with threadpool_limits(1), warnings.catch_warnings():  # tiny matrices: threads only contend
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is part of the regularisation
        if kind == "ridge":
            ridge = Ridge(alpha=3.0).fit(x, y)
            return [[Layer(ridge.coef_.reshape(-1, 1).astype(np.float64), np.array([float(ridge.intercept_)]))]]
        members = []
        for seed in seeds:
            mlp = MLPRegressor(hidden_layer_sizes=hidden, solver="lbfgs", alpha=3.0, max_iter=500, random_state=seed)
            mlp.fit(x, y)
            members.append([Layer(w.astype(np.float64), b.astype(np.float64))
                            for w, b in zip(mlp.coefs_, mlp.intercepts_)])
    return members


def fit_predictor(space: HybridSpace, archs: Sequence[ArchConfig], accuracy: Sequence[float],
                  kind: str = "mlp", ensemble: int = 5, hidden: tuple[int, ...] = (64, 64), folds: int = 5,
                  seed: int = 0, info: dict[str, Any] | None = None) -> AccuracyPredictor:
    """Fit on (member, measured accuracy) pairs; `info['holdout']` gets the k-fold out-of-fold
    Kendall tau, Spearman rho and mean absolute error of the same recipe."""
    from scipy.stats import kendalltau, spearmanr

    if kind not in MODELS:
        raise UserError(f"model: {kind!r} is not one of {', '.join(MODELS)}")
    if len(archs) < 2 * folds:
        raise UserError(f"samples: {len(archs)} evaluations, need at least {2 * folds} to fit and hold out")
    encoding = SpaceEncoding(space)
    x = encoding.encode(archs).astype(np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    mean, std = float(acc.mean()), float(acc.std() or 1.0)
    y = (acc - mean) / std
    seeds = [seed * 1000 + k for k in range(ensemble)]

    order = np.random.default_rng(seed).permutation(len(acc))
    oof = np.empty_like(acc)
    for k in range(folds):
        held = order[k::folds]
        train = np.setdiff1d(order, held)
        fold = AccuracyPredictor(space, _fit_members(x[train], y[train], seeds, hidden, kind), mean, std)
        oof[held] = fold.predict_rows(x[held])
    holdout = {"folds": folds, "kendall_tau": round(float(kendalltau(oof, acc).statistic), 4),
               "spearman_rho": round(float(spearmanr(oof, acc).statistic), 4),
               "mae": round(float(np.abs(oof - acc).mean()), 5), "target_std": round(std, 5)}
    model = {"kind": kind, **({"ensemble": ensemble, "hidden": list(hidden)} if kind == "mlp" else {})}
    return AccuracyPredictor(space, _fit_members(x, y, seeds, hidden, kind), mean, std,
                             {**(info or {}), "samples": len(acc), "model": model, "holdout": holdout})
