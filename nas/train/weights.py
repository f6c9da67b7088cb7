"""Loading trained weights into a freshly built network, refusing anything that does not fit."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.checkpoint import load_checkpoint, load_state_dict
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


def is_supernet(path: str | Path) -> bool:
    """Whether `path` names supernet weights: a `supernet.pt`, a supernet training run folder, or
    such a run's `checkpoint.pt` (its run.json says so)."""
    from nas.supernet.evaluate import SUPERNET_FORMAT, supernet_path

    path = Path(path)
    run_file = (path if path.is_dir() else path.parent) / "run.json"
    if run_file.is_file():
        try:
            if "supernet" in json.loads(run_file.read_text(encoding="utf-8")):
                return True
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
            pass  # not a run record: decide by the file itself
    if path.is_dir():
        path = supernet_path(path)
    obj = load_checkpoint(path)
    return isinstance(obj, dict) and obj.get("format") == SUPERNET_FORMAT


def load_initial_weights(model: nn.Module, arch: ArchConfig, path: str | Path) -> str:
    """`--init-from`: a trained network's weights (exact fit), or a supernet, from which `arch`
    inherits its slice of the shared weights (it must be a member of the supernet's space).
    Returns what was loaded: 'weights' or 'supernet'."""
    if not is_supernet(path):
        load_weights_strict(model, path)
        return "weights"
    from nas.supernet.evaluate import load_supernet

    supernet = load_supernet(path)
    load_weights_strict(model, path, supernet.member_state(arch))
    return "supernet"
