"""MobileViT v1 stage (Mehta & Rastegari, "MobileViT: Light-weight, General-purpose, and
Mobile-friendly Vision Transformer", ICLR 2022; reference code apple/ml-cvnets).

A stage is what the paper's Appendix A / the official `_make_mit_layer` builds: an MV2 inverted
residual that downsamples (stride 2), then one MobileViT block

    local n x n conv-BN-act  ->  1x1 conv to d (linear, no BN: it only projects)
    unfold into p x p patches  ->  L transformer layers  ->  LayerNorm  ->  fold
    1x1 conv-BN-act back to C  ->  concat with the block input  ->  fusion n x n conv-BN-act

"Transformers as convolutions": pixels at the same position inside each p x p patch form one
sequence, and attention runs across the N = HW / p^2 patches of that sequence, so every pixel sees
the whole map (through the local conv) at 1/p^2 of the cost of pixel-level attention.
"""
from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from nas.arch.stages import Activation, MobileViTStage
from nas.blocks import StageContext
from nas.blocks.common import ConvBNAct, make_act
from nas.blocks.mv2 import InvertedResidual
from nas.blocks.sharing import Chunks, SharingRule
from nas.blocks.units import Flow, Unit, chw, halved


class Attention(nn.Module):
    """Multi-head self-attention over the patch axis, written with explicit matmuls (so fvcore
    counts it and the ONNX graph stays plain MatMul/Softmax). Fused qkv and output projections
    carry biases, as in cvnets' MultiHeadAttention."""

    # qkv's rows are [q | k | v], each head-major: a smaller member takes a prefix of each third
    # (a prefix of all rows would hand its k rows to q).
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"qkv.weight": Chunks(dim=0, parts=3),
                                                        "qkv.bias": Chunks(dim=0, parts=3)}

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, P, N, d)
        q, k, v = rearrange(self.qkv(x), "b p n (three h e) -> three b p h n e", three=3, h=self.heads)
        attn = torch.softmax(torch.matmul(q * self.scale, k.transpose(-2, -1)), dim=-1)
        out = rearrange(torch.matmul(attn, v), "b p h n e -> b p n (h e)")
        return self.proj(out)


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer: x + MHA(LN(x)), then x + FFN(LN(x)) with the FFN's
    hidden activation being the stage's (Swish in the paper)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, act: Activation) -> None:
        super().__init__()
        hidden = round(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), make_act(act), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MobileViTBlock(nn.Module):
    """Local conv representation, global transformer representation on unfolded patches, and
    fusion with the block input (paper Fig. 1b; width preserved)."""

    # The fusion conv reads cat([block input, transformer output]): each half of its input
    # channels takes its own prefix.
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"fusion.0.0.weight": Chunks(dim=1, parts=2)}

    def __init__(self, channels: int, dim: int, depth: int, heads: int, mlp_ratio: float,
                 patch: int, kernel: int, act: Activation) -> None:
        super().__init__()
        self.patch = patch
        self.local = nn.Sequential(
            ConvBNAct(channels, channels, kernel, act=act),
            nn.Conv2d(channels, dim, 1, bias=False),  # linear projection to d: no BN, no act (official)
        )
        self.transformer = nn.Sequential(*[TransformerLayer(dim, heads, mlp_ratio, act) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim)  # final LayerNorm after the last layer (cvnets' global_rep)
        self.proj = ConvBNAct(dim, channels, 1, act=act)
        self.fusion = ConvBNAct(2 * channels, channels, kernel, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.local(x)
        h, w = y.shape[-2:]
        p = self.patch
        # Maps that are not a multiple of the patch (64 px inputs reach 2x2, 1x1 or odd maps) are
        # resized bilinearly to the next multiple and back, as the official unfolding does; padding
        # would need masking in attention. Decided on static shapes, never on tensor values.
        ph, pw = math.ceil(h / p) * p, math.ceil(w / p) * p
        resize = (ph, pw) != (h, w)
        if resize:
            y = F.interpolate(y, size=(ph, pw), mode="bilinear", align_corners=False)
        tokens = rearrange(y, "b d (nh p) (nw q) -> b (p q) (nh nw) d", p=p, q=p)
        tokens = self.norm(self.transformer(tokens))
        y = rearrange(tokens, "b (p q) (nh nw) d -> b d (nh p) (nw q)", p=p, q=p, nh=ph // p)
        if resize:
            y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        return self.fusion(torch.cat([x, self.proj(y)], dim=1))


class MobileViTStageModule(nn.Sequential):
    """MV2 (stride 2, or stride 1 only to change width) followed by one MobileViT block."""

    def __init__(self, spec: MobileViTStage, in_channels: int) -> None:
        layers: list[nn.Module] = []
        # The paper opens each MobileViT stage with a stride-2 MV2. At stride 1 with a different
        # input width (a hybrid network may place the stage after any family) a stride-1 MV2 maps
        # the width, since the MobileViT block itself keeps its channel count.
        if spec.stride == 2 or in_channels != spec.width:
            # MV2 as in cvnets: 3x3 depthwise, the stage's activation, no squeeze-excite.
            layers.append(InvertedResidual(in_channels, spec.width, spec.stride, spec.expand, 3, spec.act))
        layers.append(MobileViTBlock(spec.width, spec.dim, spec.depth, spec.heads, spec.mlp_ratio,
                                     spec.patch, spec.kernel, spec.act))
        super().__init__(*layers)
        self.out_channels = spec.width


def build_stage(spec: MobileViTStage, ctx: StageContext) -> nn.Module:
    return MobileViTStageModule(spec, ctx.in_channels)


UNIT_OPS = {"mobilevit.block": MobileViTBlock, "mobilevit.layer": TransformerLayer}


def stage_units(spec: MobileViTStage, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """The opening MV2, the MobileViT block's conv/unfold/fold/fusion shell (built with no
    transformer layers) and each transformer layer on its (patch pixels, patches, dim) tokens."""
    units, size = [], ctx.in_size
    if spec.stride == 2 or ctx.in_channels != spec.width:
        units.append(Unit.make("mv2.ir", [chw(ctx.in_channels, size)], in_channels=ctx.in_channels,
                               out_channels=spec.width, stride=spec.stride, expand=spec.expand, kernel=3,
                               act=spec.act, se=False))
        size = halved(size) if spec.stride == 2 else size
    units.append(Unit.make("mobilevit.block", [chw(spec.width, size)], channels=spec.width, dim=spec.dim, depth=0,
                           heads=spec.heads, mlp_ratio=spec.mlp_ratio, patch=spec.patch, kernel=spec.kernel,
                           act=spec.act))
    p = spec.patch
    patches = math.ceil(size[0] / p) * math.ceil(size[1] / p)
    units += [Unit.make("mobilevit.layer", [(p * p, patches, spec.dim)], dim=spec.dim, heads=spec.heads,
                        mlp_ratio=spec.mlp_ratio, act=spec.act)] * spec.depth
    return units, Flow(spec.width, size, ctx.token_dim, ctx.num_tokens)
