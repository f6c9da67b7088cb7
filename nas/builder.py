"""ArchConfig -> torch.nn.Module.

`build_model(arch, seed)` gives the same weights for the same (arch, seed) on any machine; the
global RNG is left as it was. The network is stem -> stages -> head; stages of the Mobile-Former
family also pass the global tokens along.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from nas.arch.schema import ArchConfig
from nas.blocks import StageContext, stage_builder
from nas.blocks.head import Head
from nas.blocks.stem import Stem
from nas.errors import UserError


class HybridNet(nn.Module):
    """A classifier built from an ArchConfig. `stage_outputs(x)` exposes per-stage features."""

    def __init__(self, arch: ArchConfig) -> None:
        super().__init__()
        self.arch = arch
        self.stem = Stem(arch.stem)
        # A probe input walks the network as it is built, so each stage learns its input size
        # (LeViT's attention bias and Mobile-Former's bridge need it) from the real layers.
        with torch.no_grad():
            probe = self.stem.eval()(torch.zeros(1, 3, arch.resolution, arch.resolution))
        self.stem.train()
        tokens: torch.Tensor | None = None
        channels, token_dim = self.stem.out_channels, None
        stages = []
        for i, spec in enumerate(arch.stages):
            ctx = StageContext(channels, tuple(probe.shape[-2:]), i, len(arch.stages), token_dim,
                               tokens.shape[1] if tokens is not None else None)
            stage = stage_builder(spec.block)(spec, ctx)
            stages.append(stage)
            with torch.no_grad():
                probe, tokens = _run_stage(stage.eval(), probe, tokens)
            stage.train()
            channels = stage.out_channels
            token_dim = tokens.shape[-1] if tokens is not None else None
            if min(probe.shape[-2:]) < 1:
                raise UserError(f"stages[{i}]: feature map vanishes at resolution {arch.resolution}")
        self.stages = nn.ModuleList(stages)
        self.head = Head(arch.head, channels, arch.num_classes, token_dim)

    def stage_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stem output, then each stage's output feature map."""
        outs = [self.stem(x)]
        tokens = None
        for stage in self.stages:
            x, tokens = _run_stage(stage, outs[-1], tokens)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        tokens = None
        for stage in self.stages:
            x, tokens = _run_stage(stage, x, tokens)
        return self.head(x, tokens)


def _run_stage(stage: nn.Module, x: torch.Tensor, tokens: torch.Tensor | None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    if getattr(stage, "uses_tokens", False):
        return stage(x, tokens)
    return stage(x), tokens


def init_weights(model: nn.Module) -> None:
    """One initialisation for all families: conv He-normal on fan_out per group (as timm's
    EfficientNet init: a depthwise conv's fan_out is k*k, not k*k*C, else its weights start ~C
    times too small), linear truncated normal (std 0.02, ViT practice), norms to identity.
    Modules may refine with `init_weights()`."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d):
            k = m.weight[0, 0].numel()
            fan_out = k * (m.out_channels // m.groups)
            nn.init.normal_(m.weight, std=math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    for m in model.modules():
        if m is not model and hasattr(m, "init_weights"):
            m.init_weights()


def build_model(arch: ArchConfig, seed: int = 0) -> HybridNet:
    """Build the network for `arch` with deterministic initial weights from `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = HybridNet(arch)
        init_weights(model)
    return model
