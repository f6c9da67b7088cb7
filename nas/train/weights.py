"""Loading trained weights into a freshly built network, refusing anything that does not fit."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nas.checkpoint import load_state_dict
from nas.errors import UserError


def load_weights_strict(model: nn.Module, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """Load a state dict (read from `path`, or `state` if given, `path` then only names it in errors)
    whose keys and shapes must match `model` exactly; the first mismatch is a one-line UserError."""
    state = load_state_dict(path) if state is None else state
    expected = model.state_dict()
    for key, value in expected.items():
        if key not in state:
            raise UserError(f"{path}: missing weight {key!r} {tuple(value.shape)} "
                            f"({len(set(expected) - set(state))} missing in all)")
        if state[key].shape != value.shape:
            raise UserError(f"{path}: {key!r} has shape {tuple(state[key].shape)}, the model needs "
                            f"{tuple(value.shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise UserError(f"{path}: unexpected weight {unexpected[0]!r} ({len(unexpected)} in all)")
    model.load_state_dict(state)
