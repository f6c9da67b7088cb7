"""Loading torch checkpoints safely: `weights_only=True`, clear errors on anything else."""
from __future__ import annotations

import os
import pickle
import warnings
from typing import Any

import torch

from nas.errors import UserError


def load_checkpoint(path: str | os.PathLike[str]) -> Any:
    """torch.load with weights_only=True; a missing, corrupt or non-weights file is a UserError."""
    try:
        with warnings.catch_warnings():
            # torch warns about pickle protocols before failing; the UserError below says it once
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder, expected a checkpoint file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{path}: not a readable weights-only checkpoint ({first[:160]})") from None


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A model state dict from a bare state dict or a nas checkpoint ({'model': state, ...})."""
    return state_dict_of(load_checkpoint(path), path)


def state_dict_of(obj: Any, path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """The model state dict inside an already loaded checkpoint `obj` (read from `path`)."""
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path}: expected a state dict of tensors")
    return obj
