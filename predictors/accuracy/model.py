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
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nas.arch.schema import ArchConfig
from nas.atomic import atomic_write_text
from nas.errors import UserError, read_json
from predictors.accuracy.encoding import SpaceEncoding
from predictors.accuracy.features import SIZE_FEATURES, UnitCounts, size_features
from search_spaces.hybrid import HybridSpace
from search_spaces.presets import space_from_dict, space_to_dict

PREDICTOR_FORMAT = "hybrid-nas/accuracy-predictor/v1"
DEFAULT_PREDICTOR = Path(__file__).parent / "default.json"  # fitted on the standalone-trained bench
SUPERNET_PREDICTOR = Path(__file__).parent / "supernet.json"  # fitted on the committed supernet's ratings


@dataclass
class Layer:
    weight: np.ndarray  # (in, out)
    bias: np.ndarray  # (out,)


@dataclass
class AccuracyPredictor:
    """Predicted accuracy (in the unit of what it was fitted on: `info['metric']`) of members of
    `space`, from the space encoding and, where `extra` names them, size features (log
    parameters, log MACs, depth) summed from the per-unit counts it carries."""

    space: HybridSpace
    members: list[list[Layer]]  # the ensemble: each a ReLU MLP with a linear output
    target_mean: float
    target_std: float
    info: dict[str, Any] = field(default_factory=dict)  # what it was fitted on, and how well it ranks
    extra: tuple[str, ...] = ()  # size features appended to the encoding (SIZE_FEATURES)
    counts: UnitCounts = field(default_factory=UnitCounts)  # per-unit (params, MACs) for `extra`
    encoding: SpaceEncoding = field(init=False)

    def __post_init__(self) -> None:
        self.encoding = SpaceEncoding(self.space)
        unknown = [e for e in self.extra if e not in SIZE_FEATURES]
        if unknown:
            raise ValueError(f"extra: unknown feature {unknown[0]!r} (known: {', '.join(SIZE_FEATURES)})")

    @property
    def columns(self) -> list[str]:
        return self.encoding.columns + list(self.extra)

    def row(self, arch: ArchConfig, params: dict[str, Any] | None = None) -> np.ndarray:
        """The model's input for one member (ValueError for an architecture outside the space)."""
        enc = self.encoding.params_row(params if params is not None else self.space.encode(arch))
        if not self.extra:
            return enc
        sizes = size_features(arch, self.counts)
        return np.concatenate([enc, np.array([sizes[e] for e in self.extra], dtype=np.float32)])

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

    def rows(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        return np.stack([self.row(a) for a in archs]) if archs else np.zeros((0, len(self.columns)), np.float32)

    def predict(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Predicted accuracy of each member (ValueError for an architecture outside the space)."""
        return self.predict_rows(self.rows(archs))

    def predict_one(self, arch: ArchConfig, params: dict[str, Any]) -> float:
        """One member with its Optuna parameters (the search's fast path: no encode round trip)."""
        return float(self.predict_rows(self.row(arch, params)[None])[0])

    # --------------------------------------------------------------- files
    def to_dict(self) -> dict[str, Any]:
        out = {"format": PREDICTOR_FORMAT, "space": space_to_dict(self.space), "columns": self.columns,
               "target": {"mean": self.target_mean, "std": self.target_std}, "info": self.info,
               "members": [[{"weight": _short(layer.weight), "bias": _short(layer.bias)} for layer in m]
                           for m in self.members]}
        if self.extra:
            out["extra"] = list(self.extra)
            out["unit_counts"] = self.counts.to_dict()
        return out

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
                                      dict(data.get("info") or {}), tuple(data.get("extra") or ()),
                                      UnitCounts(data.get("unit_counts") or {}))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise UserError(f"{path}: members/target/extra: malformed predictor ({exc})") from None
    if data.get("columns") != predictor.columns:
        raise UserError(f"{path}: columns: do not match the encoding of its space (file from another version?)")
    width = len(predictor.columns)
    for m in members:
        dims = [width] + [layer.weight.shape[1] if layer.weight.ndim == 2 else -1 for layer in m]
        ok = all(layer.weight.ndim == 2 and layer.weight.shape[0] == dims[i] and layer.bias.shape == (dims[i + 1],)
                 for i, layer in enumerate(m)) and dims[-1] == 1
        if not m or not ok:
            raise UserError(f"{path}: members: layer shapes do not chain from {width} inputs to 1 output")
    return predictor


# ------------------------------------------------------------------- fitting
MODELS = ("mlp", "ridge")


def ridge_layer(x: np.ndarray, y: np.ndarray) -> Layer:
    """A ridge regression on standardised columns, its penalty chosen by leave-one-out (RidgeCV),
    folded back into one linear layer on the raw columns (so the file needs no scaler)."""
    from sklearn.linear_model import RidgeCV  # scikit-learn: ~1 s, only when fitting (a search only predicts)

    mean, std = x.mean(axis=0), x.std(axis=0)
    std[std == 0] = 1.0
    ridge = RidgeCV(alphas=np.logspace(-1, 3, 13)).fit((x - mean) / std, y)
    weight = ridge.coef_ / std
    return Layer(weight.reshape(-1, 1).astype(np.float64), np.array([float(ridge.intercept_ - weight @ mean)]))


def _fit_members(x: np.ndarray, y: np.ndarray, seeds: Sequence[int], hidden: tuple[int, ...], kind: str
                 ) -> list[list[Layer]]:
    """`kind` "mlp": one L-BFGS MLP per seed (weight decay 3: a few hundred noisy points);
    "ridge": one linear model (`ridge_layer`)."""
    # scikit-learn (threadpoolctl comes with it): ~1 s, only when fitting (a search only predicts)
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor
    from threadpoolctl import threadpool_limits

    if kind == "ridge":
        return [[ridge_layer(x, y)]]
    with threadpool_limits(1), warnings.catch_warnings():  # tiny matrices: threads only contend
        warnings.simplefilter("ignore", ConvergenceWarning)  # the iteration cap is part of the regularisation
        members = []
        for seed in seeds:
            mlp = MLPRegressor(hidden_layer_sizes=hidden, solver="lbfgs", alpha=3.0, max_iter=500, random_state=seed)
            mlp.fit(x, y)
            members.append([Layer(w.astype(np.float64), b.astype(np.float64))
                            for w, b in zip(mlp.coefs_, mlp.intercepts_)])
    return members


def fit_predictor(space: HybridSpace, archs: Sequence[ArchConfig], accuracy: Sequence[float],
                  kind: str = "mlp", ensemble: int = 5, hidden: tuple[int, ...] = (64, 64), folds: int = 5,
                  seed: int = 0, info: dict[str, Any] | None = None, extra: Sequence[str] = ()
                  ) -> AccuracyPredictor:
    """Fit on (member, measured accuracy) pairs, on the encoding plus the size features `extra`;
    `info['holdout']` gets the k-fold out-of-fold Kendall tau, Spearman rho and mean absolute
    error of the same recipe (each member predicted by a model fitted without it)."""
    from scipy.stats import kendalltau, spearmanr  # scipy: ~1 s, only when fitting (a search only predicts)

    from predictors.accuracy.scoring import out_of_fold  # scipy at its top: as above

    if kind not in MODELS:
        raise UserError(f"model: {kind!r} is not one of {', '.join(MODELS)}")
    if len(archs) < 2 * folds:
        raise UserError(f"samples: {len(archs)} evaluations, need at least {2 * folds} to fit and hold out")
    shell = AccuracyPredictor(space, [], 0.0, 1.0, extra=tuple(extra))
    if extra:  # every unit the space can produce, so that a search never counts one (28 ms each)
        shell.counts.add(set().union(*(space.units(r) for r in space.resolutions)))
    x = shell.rows(archs).astype(np.float64)
    acc = np.asarray(accuracy, dtype=np.float64)
    seeds = [seed * 1000 + k for k in range(ensemble)]

    def fit(members_x: np.ndarray, members_acc: np.ndarray) -> AccuracyPredictor:
        mean, std = float(members_acc.mean()), float(members_acc.std() or 1.0)
        return AccuracyPredictor(space, _fit_members(members_x, (members_acc - mean) / std, seeds, hidden, kind),
                                 mean, std, extra=tuple(extra), counts=shell.counts)

    oof = out_of_fold(lambda xt, yt, xh: fit(xt, yt).predict_rows(xh), x, acc, folds=folds, seed=seed)
    std = float(acc.std() or 1.0)
    holdout = {"folds": folds, "kendall_tau": round(float(kendalltau(oof, acc).statistic), 4),
               "spearman_rho": round(float(spearmanr(oof, acc).statistic), 4),
               "mae": round(float(np.abs(oof - acc).mean()), 5), "target_std": round(std, 5)}
    model = {"kind": kind, **({"ensemble": ensemble, "hidden": list(hidden)} if kind == "mlp" else {}),
             "extra": list(extra)}
    final = fit(x, acc)
    final.info = {**(info or {}), "samples": len(acc), "model": model, "holdout": holdout}
    return final
