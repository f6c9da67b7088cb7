"""Architecture -> fixed-length feature vector, for accuracy predictors over one search space.

Each Optuna dimension of the space becomes one-hot columns (one per choice); a numeric dimension
(depth, width, expand, ...) also gets its value scaled to [0, 1] over its choices, so that a
predictor can see "wider" as a direction and not only as unrelated categories. A conditional
dimension that a member does not use (the kernel of a stage that is not MV2, the token count of a
network without a Mobile-Former stage) leaves its columns at zero. This is OFA's encoding plus the
ordinal columns; it is defined by the space alone, so a predictor file carries its space and the
column names, and refuses a space that does not match.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from nas.arch.schema import ArchConfig
from search_spaces.hybrid import HybridSpace


def _numeric(choices: Sequence[Any]) -> bool:
    return len(choices) > 1 and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in choices)


class SpaceEncoding:
    """Feature columns of `space`; `encode` maps members (or their Optuna parameters) to rows."""

    def __init__(self, space: HybridSpace) -> None:
        self.space = space
        self.columns: list[str] = []
        self._slots: dict[str, tuple[dict[Any, int], tuple[int, float, float] | None]] = {}
        for key, choices in space.dimensions().items():
            onehot = {}
            for choice in choices:
                onehot[choice] = len(self.columns)
                self.columns.append(f"{key}={choice}")
            scaled = None
            if _numeric(choices):
                scaled = (len(self.columns), float(min(choices)), float(max(choices)))
                self.columns.append(key)
            self._slots[key] = (onehot, scaled)

    def params_row(self, params: Mapping[str, Any]) -> np.ndarray:
        """One row from Optuna parameters (keys the space does not use for this member are absent)."""
        row = np.zeros(len(self.columns), dtype=np.float32)
        for key, value in params.items():
            onehot, scaled = self._slots[key]
            if value not in onehot:
                raise ValueError(f"{key}: {value!r} is not one of the space's choices {list(onehot)}")
            row[onehot[value]] = 1.0
            if scaled is not None:
                col, low, high = scaled
                row[col] = (float(value) - low) / (high - low)
        return row

    def encode(self, archs: Sequence[ArchConfig]) -> np.ndarray:
        """Rows for members of the space (ValueError naming the field for a non-member)."""
        return np.stack([self.params_row(self.space.encode(a)) for a in archs]) if archs else \
            np.zeros((0, len(self.columns)), dtype=np.float32)
