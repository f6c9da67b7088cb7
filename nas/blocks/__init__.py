"""Block library: one module per family, each exposing

    build_stage(spec, ctx: StageContext) -> nn.Module

The returned module has `out_channels: int`. A stage that reads or writes Mobile-Former global
tokens sets `uses_tokens = True`, takes `forward(x, tokens)` and returns `(x, tokens)` (tokens is
None before the first such stage) and exposes `token_dim: int`; every other stage is `forward(x)`.
Modules with a multi-branch training form implement `reparameterize()` (see common.fuse_model).
A module whose tensor a weight-sharing supernet must not cut by plain prefixes (fused [q | k | v]
rows, a conv over a concatenation, a bias table indexed by grid offsets) declares how beside
itself, in a `weight_sharing` class attribute (see sharing.py).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class StageContext:
    """What a stage needs to know about its place in the network."""

    in_channels: int
    in_size: tuple[int, int]  # (H, W) of the stage input at the arch resolution
    index: int  # 0-based stage index
    num_stages: int
    token_dim: int | None  # dim of the incoming Mobile-Former tokens, None if there are none
    num_tokens: int | None = None  # how many incoming tokens (None: none, or as the stage's own spec says)


def stage_builder(family: str) -> Callable[[Any, StageContext], nn.Module]:
    """The `build_stage` function of a family (`mv2` -> nas.blocks.mv2.build_stage)."""
    return importlib.import_module(f"nas.blocks.{family}").build_stage
