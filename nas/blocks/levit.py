"""LeViT stage (Graham et al., "LeViT: a Vision Transformer in ConvNet's Clothing for Faster
Inference", ICCV 2021; official code facebookresearch/LeViT, levit.py).

A LeViT stage works on the feature map as a grid of tokens and alternates two residual blocks:

- attention whose keys, queries and values come from 1x1 conv-BN (the paper's "Linear-BN": every
  linear layer is followed by BatchNorm, which folds into the linear at inference, so no
  LayerNorm is needed), with a learned attention bias per head indexed by the relative offset
  (|dy|, |dx|) between query and key -- the translation-invariant positional information that
  replaces ViT's positional embedding -- and a Hardswish on the attention output before the
  output projection;
- an MLP of two 1x1 conv-BN with Hardswish between, expansion `mlp_ratio` (2 in the paper,
  instead of ViT's 4, to save compute).

Between resolutions LeViT does not pool: "shrink attention" takes its queries from the grid
subsampled by 2 while keys and values see the full grid, has in_channels // key_dim heads and a
4x wider value (attn_ratio 4) to limit the information lost, and changes the width; it has no
residual (input and output shapes differ) and is followed by a residual MLP. Here that layer opens
a stage with `stride: 2`. A stride-1 stage whose input width differs from its width opens with the
same layer at stride 1 (queries from the full grid), so the transition stays attention, as in the
paper, rather than an extra projection.

The attention bias is tied to the stage's grid, which the builder passes as `ctx.in_size`; the
index of every (query, key) pair into the bias table is precomputed into a buffer and gathered
with it, which exports to ONNX as one constant-folded Gather.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from nas.arch.stages import LeViTStage as LeViTStageSpec
from nas.blocks import StageContext
from nas.blocks.common import ConvBN
from nas.blocks.sharing import GridOffsets, SharingRule
from nas.blocks.units import Flow, Unit, chw

SHRINK_ATTN_RATIO = 4.0
"""Value dim of the shrink attention = 4 * key_dim (official `down_ops` of every LeViT model)."""


def subsampled(size: tuple[int, int], stride: int) -> tuple[int, int]:
    """Grid of the queries `x[..., ::stride, ::stride]`: ceil(n / stride) per side, never 0."""
    return ((size[0] - 1) // stride + 1, (size[1] - 1) // stride + 1)


def attention_bias_index(kv_size: tuple[int, int], stride: int = 1) -> torch.Tensor:
    """(Nq, Nk) index into a per-head table of H*W learned biases.

    Query (qy, qx) sits at (stride*qy, stride*qx) on the key grid; the pair's entry depends only on
    (|dy|, |dx|), numbered |dy| * W + |dx| (the order in which the official code first meets the
    offsets), so the table has exactly H*W entries for plain and shrink attention alike.
    """
    h, w = kv_size
    qh, qw = subsampled(kv_size, stride)
    qy, qx = torch.meshgrid(torch.arange(qh) * stride, torch.arange(qw) * stride, indexing="ij")
    ky, kx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    dy = (qy.reshape(-1, 1) - ky.reshape(1, -1)).abs()
    dx = (qx.reshape(-1, 1) - kx.reshape(1, -1)).abs()
    return dy * w + dx


class Attention(nn.Module):
    """Multi-head attention on an H x W grid with LeViT's learned relative-position bias.

    `stride` 2 is the shrink attention: queries from `x[..., ::2, ::2]` (the official `Subsample`),
    keys and values from the whole grid, output on the subsampled grid. `stride` 1 computes q, k
    and v with one fused conv. The attention output goes through Hardswish before the projection,
    as in the official code (the paper's "Hardswish non-linearity" in the attention block).
    """

    # The bias table is indexed by offsets on this layer's grid: a member at a lower resolution
    # takes the entries of its offsets (the index buffer it computes itself). The fused qkv / kv
    # convs need no rule: their rows are head-major (heads, 2 key_dim + value_dim) and the space
    # does not vary the per-head dims, so the default prefix is a prefix of the heads.
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"attention_biases": GridOffsets()}

    def __init__(self, cin: int, cout: int, heads: int, key_dim: int, value_dim: int,
                 grid: tuple[int, int], stride: int = 1, residual: bool = True) -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim, self.stride = heads, key_dim, value_dim, stride
        self.grid, self.out_grid = grid, subsampled(grid, stride)
        self.scale = key_dim ** -0.5
        if stride == 1:
            self.qkv = ConvBN(cin, heads * (2 * key_dim + value_dim))
        else:
            self.q = ConvBN(cin, heads * key_dim)
            self.kv = ConvBN(cin, heads * (key_dim + value_dim))
        # A residual branch starts as identity (its last BN scaled by 0), as in the official code.
        self.proj = nn.Sequential(nn.Hardswish(), ConvBN(heads * value_dim, cout,
                                                         bn_weight_init=0.0 if residual else 1.0))
        self.attention_biases = nn.Parameter(torch.zeros(heads, grid[0] * grid[1]))
        self.register_buffer("attention_bias_idxs", attention_bias_index(grid, stride), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.grid[0] * self.grid[1]
        if self.stride == 1:
            qkv = self.qkv(x).reshape(-1, self.heads, 2 * self.key_dim + self.value_dim, n)
            q, k, v = qkv.split([self.key_dim, self.key_dim, self.value_dim], dim=2)
        else:
            kv = self.kv(x).reshape(-1, self.heads, self.key_dim + self.value_dim, n)
            k, v = kv.split([self.key_dim, self.value_dim], dim=2)
            q = self.q(x[..., ::self.stride, ::self.stride]).reshape(-1, self.heads, self.key_dim,
                                                                    self.out_grid[0] * self.out_grid[1])
        # q, k: (B, heads, key_dim, N); v: (B, heads, value_dim, N) -- channels-first throughout.
        attn = (q * self.scale).transpose(-2, -1) @ k + self.attention_biases[:, self.attention_bias_idxs]
        out = v @ attn.softmax(dim=-1).transpose(-2, -1)  # (B, heads, value_dim, Nq)
        return self.proj(out.reshape(-1, self.heads * self.value_dim, *self.out_grid))


class MLP(nn.Sequential):
    """LeViT's MLP block: 1x1 conv-BN, Hardswish, 1x1 conv-BN (last BN zero-initialised so the
    residual branch starts as identity)."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__(ConvBN(channels, hidden), nn.Hardswish(), ConvBN(hidden, channels, bn_weight_init=0.0))


class Residual(nn.Module):
    def __init__(self, branch: nn.Module) -> None:
        super().__init__()
        self.branch = branch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


class LeViTStage(nn.Module):
    """(shrink attention + residual MLP when the grid or width changes), then `depth` pairs of
    residual attention and residual MLP at `width` on the stage's grid."""

    def __init__(self, spec: LeViTStageSpec, ctx: StageContext) -> None:
        super().__init__()
        width, key_dim = spec.width, spec.key_dim
        hidden = int(width * spec.mlp_ratio)
        grid = ctx.in_size
        blocks: list[nn.Module] = []
        if spec.stride == 2 or ctx.in_channels != width:
            # Official down_ops: heads = in_channels // key_dim (at least one for narrow inputs).
            blocks.append(Attention(ctx.in_channels, width, max(1, ctx.in_channels // key_dim), key_dim,
                                    int(SHRINK_ATTN_RATIO * key_dim), grid, spec.stride, residual=False))
            blocks.append(Residual(MLP(width, hidden)))
            grid = subsampled(grid, spec.stride)
        value_dim = int(spec.attn_ratio * key_dim)
        for _ in range(spec.depth):
            blocks.append(Residual(Attention(width, width, spec.heads, key_dim, value_dim, grid)))
            blocks.append(Residual(MLP(width, hidden)))
        self.blocks = nn.Sequential(*blocks)
        self.in_size = ctx.in_size
        self.out_channels = width
        self.out_size = grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The attention biases are tied to the grid; say so instead of failing on a broadcast.
        # (Skipped while tracing: the exported graph has fixed H, W anyway.)
        if not torch.jit.is_tracing() and tuple(x.shape[-2:]) != self.in_size:
            raise ValueError(f"LeViT stage built for a {self.in_size} grid got {tuple(x.shape[-2:])}: "
                             "its attention bias is tied to the input resolution")
        return self.blocks(x)


def build_stage(spec: LeViTStageSpec, ctx: StageContext) -> LeViTStage:
    return LeViTStage(spec, ctx)


def _residual_attention(channels: int, heads: int, key_dim: int, value_dim: int, grid: tuple[int, int]) -> nn.Module:
    return Residual(Attention(channels, channels, heads, key_dim, value_dim, tuple(grid)))


def _shrink_attention(cin: int, cout: int, heads: int, key_dim: int, value_dim: int, grid: tuple[int, int],
                      stride: int) -> nn.Module:
    return Attention(cin, cout, heads, key_dim, value_dim, tuple(grid), stride, residual=False)


def _residual_mlp(channels: int, hidden: int) -> nn.Module:
    return Residual(MLP(channels, hidden))


UNIT_OPS = {"levit.down": _shrink_attention, "levit.attn": _residual_attention, "levit.mlp": _residual_mlp}


def stage_units(spec: LeViTStageSpec, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """Shrink attention (when present) and every residual attention and residual MLP are units."""
    width, key_dim, hidden = spec.width, spec.key_dim, int(spec.width * spec.mlp_ratio)
    units, grid = [], ctx.in_size
    mlp = Unit.make("levit.mlp", [chw(width, grid)], channels=width, hidden=hidden)
    if spec.stride == 2 or ctx.in_channels != width:
        units.append(Unit.make("levit.down", [chw(ctx.in_channels, grid)], cin=ctx.in_channels, cout=width,
                               heads=max(1, ctx.in_channels // key_dim), key_dim=key_dim,
                               value_dim=int(SHRINK_ATTN_RATIO * key_dim), grid=grid, stride=spec.stride))
        grid = subsampled(grid, spec.stride)
        mlp = Unit.make("levit.mlp", [chw(width, grid)], channels=width, hidden=hidden)
        units.append(mlp)
    attn = Unit.make("levit.attn", [chw(width, grid)], channels=width, heads=spec.heads, key_dim=key_dim,
                     value_dim=int(spec.attn_ratio * key_dim), grid=grid)
    units += [attn, mlp] * spec.depth
    return units, Flow(width, grid, ctx.token_dim, ctx.num_tokens)
