"""Optimisation: AdamW with decoupled weight decay on weights only, and the lr schedule (linear
warmup then cosine decay, evaluated per optimizer step).

The schedule is per step rather than per epoch so short proxy runs (a few epochs) still get a
smooth schedule, and so a run resumed mid-epoch lands on exactly the lr the uninterrupted run had.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW; biases and norm/scale vectors (1-D parameters) get no weight decay, as is standard
    for ViTs and mobile CNNs: decaying them only fights the normalisation."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr)


def lr_factor(step: int, total_steps: int, warmup_steps: int, final_ratio: float) -> float:
    """Multiplier of the base lr for the update made at `step` (0-based).

    Warmup rises linearly to 1 over `warmup_steps` (starting at 1/warmup_steps, never at 0, so no
    step is wasted); the rest follows half a cosine from 1 down to `final_ratio`.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    return final_ratio + (1 - final_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                  final_ratio: float) -> LambdaLR:
    """A LambdaLR over lr_factor. Its state_dict holds only plain numbers (the lambda is not
    saved), so it round-trips through weights_only checkpoints."""
    warmup_steps = min(warmup_steps, total_steps)
    return LambdaLR(optimizer, lambda step: lr_factor(step, total_steps, warmup_steps, final_ratio))
