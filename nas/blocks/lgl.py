"""EdgeViT stage (Pan et al., "EdgeViTs: Competing Light-weight CNNs on Mobile Devices with Vision
Transformers", ECCV 2022; reference code saic-fi/edgevit, src/edgevit.py).

A stage is the official `patch_embed{i}` followed by `depth` local-global-local (LGL) blocks:

    patch embedding   k x k conv, stride k (k = 2 downsamples; the stem is stage 1's 4x4 one)
                      -> LayerNorm over channels
    LGL block         local:  x + DW3x3(x)                           conditional position encoding
                              x + 1x1(DW5x5(1x1(BN(x))))             LocalAgg
                              x + 1x1(GELU(1x1(BN(x))))              conv FFN
                      global: x + DW3x3(x)                           conditional position encoding
                              x + proj(LN(LocalProp(MHSA(sub_r(LN(x))))))  GlobalSparseAttn
                              x + MLP(LN(x))                         FFN

GlobalSparseAttn is the "global" part of the bottleneck: only one token per r x r window (a
"delegate", picked by the official `AvgPool2d(kernel=1, stride=r)`, i.e. strided sub-sampling,
no averaging) takes part in self-attention, which cuts its cost by r^4; LocalProp, a depthwise
transposed conv with kernel = stride = r, spreads each delegate's result back over its window.
With r = 1 the official block drops the local half (LocalAgg and its FFN) and the sub-sampling,
LocalProp and its LayerNorm, leaving a plain pre-norm transformer layer with a conv position
encoding (EdgeViT's last stage); this module does the same.

Beyond the official code, which only ever sees 224 px inputs: a map whose side is not a multiple
of r keeps its last, partial windows (the sub-sampling takes ceil(H / r) rows, LocalProp's output
is cropped back to H x W), and a stride-2 patch embedding pads an odd side by one zero row/column
(ceil(H / 2), as a padded stride-2 3x3 conv would give) so that 1 x 1 maps still downsample.
"""
from __future__ import annotations

from typing import ClassVar

import torch
from einops import rearrange
from torch import nn

from nas.arch.stages import LGLStage
from nas.blocks import StageContext
from nas.blocks.common import PatchEmbed
from nas.blocks.sharing import Chunks, SharingRule
from nas.blocks.units import Flow, Unit, chw, halved

_ATTN_LN_EPS = 1e-6
"""The model-level `norm_layer` of the official EdgeViT (LayerNorm, eps 1e-6) is used by the
transformer half of every block; its patch embeddings and LocalProp use nn.LayerNorm's default."""


class LocalAgg(nn.Module):
    """The first "local" of LGL: conv position encoding, then a pointwise-depthwise-pointwise
    aggregation (5x5 DW in the official code) and a 1x1-conv FFN, each pre-normed by BatchNorm
    and residual. All convs carry biases, as in the official code."""

    def __init__(self, dim: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.BatchNorm2d(dim)
        self.agg = nn.Sequential(nn.Conv2d(dim, dim, 1), nn.Conv2d(dim, dim, 5, padding=2, groups=dim),
                                 nn.Conv2d(dim, dim, 1))
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x + self.agg(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class GlobalSparseAttn(nn.Module):
    """Multi-head self-attention among the delegate tokens (every r-th row and column), then
    LocalProp (depthwise transposed conv, kernel = stride = r) + LayerNorm back to full resolution,
    then the output projection. Explicit matmuls so that fvcore counts them; qkv has a bias
    (the official models set qkv_bias=True); scale is head_dim ** -0.5."""

    # qkv's rows are [q | k | v], each head-major: a smaller member takes a prefix of each third
    # (a prefix of all rows would hand its k rows to q).
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"qkv.weight": Chunks(dim=0, parts=3),
                                                        "qkv.bias": Chunks(dim=0, parts=3)}

    def __init__(self, dim: int, heads: int, sample_rate: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.sample_rate = sample_rate
        self.qkv = nn.Linear(dim, 3 * dim)
        if sample_rate > 1:
            self.local_prop: nn.Module = nn.ConvTranspose2d(dim, dim, sample_rate, sample_rate, groups=dim)
            self.norm: nn.Module = nn.LayerNorm(dim)
        else:
            self.local_prop, self.norm = nn.Identity(), nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, C, H, W), already normalised
        height, width = x.shape[-2:]
        r = self.sample_rate
        sub = x[:, :, ::r, ::r] if r > 1 else x
        tokens = rearrange(sub, "b c h w -> b (h w) c")
        q, k, v = rearrange(self.qkv(tokens), "b n (three heads e) -> three b heads n e",
                            three=3, heads=self.heads)
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)
        out = rearrange(torch.matmul(attn, v), "b heads (h w) e -> b (heads e) h w", h=sub.shape[-2])
        if r > 1:
            out = self.local_prop(out)[:, :, :height, :width]
        return self.proj(self.norm(rearrange(out, "b c h w -> b h w c")))  # (B, H, W, C)


class GlobalBlock(nn.Module):
    """The "global" of LGL as the official `SelfAttn`: conv position encoding, then a pre-norm
    transformer layer (LN eps 1e-6) whose attention is GlobalSparseAttn and whose FFN is a
    GELU MLP of ratio `mlp_ratio`. Works channels-last between the two residuals."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, sample_rate: int) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=_ATTN_LN_EPS)
        self.attn = GlobalSparseAttn(dim, heads, sample_rate)
        self.norm2 = nn.LayerNorm(dim, eps=_ATTN_LN_EPS)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = x + self.attn(self.norm1(x).permute(0, 3, 1, 2))
        x = x + self.mlp(self.norm2(x))
        return x.permute(0, 3, 1, 2)


class LGLBlock(nn.Sequential):
    """Local-global-local bottleneck; with sample_rate 1 the official block is global only."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, sample_rate: int) -> None:
        local: list[nn.Module] = [LocalAgg(dim, mlp_ratio)] if sample_rate > 1 else []
        super().__init__(*local, GlobalBlock(dim, heads, mlp_ratio, sample_rate))


class EdgeViTStage(nn.Sequential):
    """Patch embedding (stride 2: 2x2 conv; stride 1 and a width change: 1x1 conv; otherwise
    none, as in the official stage 1 whose 4x4 embedding is the network stem) then `depth`
    LGL blocks."""

    def __init__(self, spec: LGLStage, in_channels: int) -> None:
        layers: list[nn.Module] = []
        if spec.stride == 2 or in_channels != spec.width:
            layers.append(PatchEmbed(in_channels, spec.width, spec.stride))
        layers += [LGLBlock(spec.width, spec.heads, spec.mlp_ratio, spec.sample_rate) for _ in range(spec.depth)]
        super().__init__(*layers)
        self.out_channels = spec.width


def build_stage(spec: LGLStage, ctx: StageContext) -> EdgeViTStage:
    return EdgeViTStage(spec, ctx.in_channels)


UNIT_OPS = {"lgl.embed": PatchEmbed, "lgl.block": LGLBlock}


def stage_units(spec: LGLStage, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """The patch embedding (when present) and each LGL block are units."""
    units, size = [], ctx.in_size
    if spec.stride == 2 or ctx.in_channels != spec.width:
        units.append(Unit.make("lgl.embed", [chw(ctx.in_channels, size)], cin=ctx.in_channels, cout=spec.width,
                               patch=spec.stride))
        size = halved(size) if spec.stride == 2 else size
    units += [Unit.make("lgl.block", [chw(spec.width, size)], dim=spec.width, heads=spec.heads,
                        mlp_ratio=spec.mlp_ratio, sample_rate=spec.sample_rate)] * spec.depth
    return units, Flow(spec.width, size, ctx.token_dim, ctx.num_tokens)
