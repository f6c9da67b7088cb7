"""Loading trained weights into a freshly built network, refusing anything that does not fit."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.checkpoint import load_checkpoint, load_state_dict, state_dict_of
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


def load_initial_weights(model: nn.Module, arch: ArchConfig, path: str | Path) -> str:
    """`--init-from`: a trained network's weights (exact fit), or a supernet (`supernet.pt`, its run
    folder or its `checkpoint.pt`), from which `arch` inherits its slice of the shared weights (it
    must be a member of the supernet's space). Returns what was loaded: 'weights' or 'supernet'."""
    from nas.supernet.evaluate import is_supernet_checkpoint, load_supernet, supernet_path

    path = Path(path)
    file = supernet_path(path)  # a folder: its supernet.pt or checkpoint.pt
    ckpt = load_checkpoint(file)
    if is_supernet_checkpoint(file, ckpt):
        load_weights_strict(model, path, load_supernet(file, ckpt).member_state(arch))
        return "supernet"
    if path.is_dir():  # only a supernet's run folder stands for its weights
        raise UserError(f"{path}: is a folder, expected a checkpoint file")
    load_weights_strict(model, path, state_dict_of(ckpt, path))
    return "weights"
