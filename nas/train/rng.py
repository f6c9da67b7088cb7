"""Snapshot and restore every random generator a training step may draw from.

The engine itself draws randomness only through seeded generators (data order, augmentation),
but models (dropout) use torch's global generator and a plug-in step (e.g. the supernet's
sandwich rule picking subnets) may use Python's `random` or numpy's. Their states are stored as
tensors and plain containers so checkpoints load with weights_only=True.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from nas.data import mix_seed


def seed_all(seed: int, rank: int) -> None:
    """Seed torch, numpy and Python for this rank (ranks differ, e.g. in dropout masks)."""
    value = mix_seed(seed, rank)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss": gauss},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    npy = state["numpy"]
    np.random.set_state((npy["kind"], npy["keys"].numpy().astype(np.uint32), npy["pos"],
                         npy["has_gauss"], npy["cached"]))
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
