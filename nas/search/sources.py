"""Where a search's accuracy signal comes from, and which space it can rate.

An accuracy source is only meaningful on the space it was trained on: a supernet holds weights for
its space's members, a predictor was fitted on evaluations of that space. So the source decides
the space a search explores, and each source describes itself (path, content hash, held-out
quality) for the search's result files.

- `PredictorSource`: a fitted predictor file (microseconds a member; the default ships, fitted on the
  standalone-trained bench and predicting its test top-1).
- `SupernetSource`: real inherited-weight evaluation (extract, BN recalibration, val split;
  about a second a member on a CPU at 64 px).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from nas.arch.schema import ArchConfig
from nas.data import default_data_root, load_dataset
from nas.supernet.evaluate import SubnetEvaluator, load_supernet, supernet_path
from predictors.accuracy.model import file_sha256, load_predictor
from search_spaces.hybrid import HybridSpace


class AccuracySource(Protocol):
    space: HybridSpace
    label: str  # a few words for tables and plots

    def rate(self, arch: ArchConfig, params: Mapping[str, Any]) -> float: ...

    def describe(self) -> dict[str, Any]: ...


class PredictorSource:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.predictor = load_predictor(self.path)
        self.space = self.predictor.space
        self.sha256 = file_sha256(self.path)
        info = self.predictor.info
        holdout = info.get("holdout", {})
        tau, mae = holdout.get("kendall_tau"), holdout.get("mae")
        note = ", ".join(([f"out-of-fold tau {tau:.2f}"] if tau is not None else [])
                         + ([f"+/-{100 * mae:.1f} points"] if mae is not None else []))
        # An older file (fitted on a supernet's ratings) has no unit: it predicts inherited val top-1.
        self.label = (info.get("unit") or "predicted val top-1") + (f" ({note})" if note else "")

    def rate(self, arch: ArchConfig, params: Mapping[str, Any]) -> float:
        return self.predictor.predict_one(arch, dict(params))

    def describe(self) -> dict[str, Any]:
        info = self.predictor.info
        return {"kind": "predictor", "path": str(self.path), "sha256": self.sha256, "metric": info.get("metric"),
                "unit": info.get("unit"), "samples": info.get("samples"), "holdout": info.get("holdout"),
                "bench": info.get("bench"),
                "supernet": info.get("supernet")}


class SupernetSource:
    def __init__(self, checkpoint: str | Path, data_root: str | Path | None, calib_batches: int = 4) -> None:
        self.path = supernet_path(checkpoint)
        supernet = load_supernet(self.path)
        data = load_dataset(data_root or default_data_root())
        self.space = supernet.space
        self.evaluator = SubnetEvaluator(supernet, data, "val", calib_batches=calib_batches)
        self.sha256 = file_sha256(self.path)
        self.data = data.describe()
        self.label = "supernet val top-1 (inherited weights)"

    def rate(self, arch: ArchConfig, params: Mapping[str, Any]) -> float:
        return float(self.evaluator.evaluate(arch)["acc"])

    def describe(self) -> dict[str, Any]:
        return {"kind": "supernet", "path": str(self.path), "sha256": self.sha256,
                "metric": "val top-1 with inherited supernet weights (BN recalibrated)", "data": self.data}
