"""Teachers for knowledge distillation: a trained network, run frozen at its own resolution."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch import load_arch
from nas.builder import build_model
from nas.errors import UserError
from nas.train.weights import load_weights_strict
from search_spaces.reference import resolve_arch


class FrozenTeacher(nn.Module):
    """Eval mode, no gradients; inputs resized to the resolution the teacher was built for
    (LeViT's attention biases, for one, only fit that size)."""

    def __init__(self, model: nn.Module, resolution: int) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.resolution = resolution

    def train(self, mode: bool = True) -> FrozenTeacher:
        return super().train(False)  # a teacher's BN statistics never move

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[-1] != self.resolution or images.shape[-2] != self.resolution:
            images = F.interpolate(images, size=(self.resolution, self.resolution), mode="bilinear",
                                   antialias=True, align_corners=False)
        return self.model(images)


def load_teacher(ref: str, weights: str | None, num_classes: int) -> tuple[FrozenTeacher, dict[str, str]]:
    """A teacher from a `nas train` run folder (arch.json + model.pt), or from an architecture
    (file or zoo name) plus `weights` (a state dict or training checkpoint). Also returns what
    identifies it (arch hash, resolved weights path), for the run's record."""
    path = Path(ref)
    if path.is_dir():
        arch = load_arch(path / "arch.json")
        weights = weights or str(path / "model.pt")
    else:
        arch = resolve_arch(ref)
        if weights is None:
            raise UserError(f"{ref}: a teacher architecture needs its trained weights (a weights file), "
                            f"or pass a `nas train` run folder")
    if arch.num_classes != num_classes:
        raise UserError(f"{ref}: teacher predicts {arch.num_classes} classes, the data has {num_classes}")
    model = build_model(arch)
    load_weights_strict(model, weights)
    return FrozenTeacher(model, arch.resolution), {"arch_hash": arch.arch_hash(),
                                                   "weights": str(Path(weights).resolve())}

