"""MobileNetV2/V3 inverted residual stage (also EfficientNet-Lite's MBConv).

One block (Sandler et al., "MobileNetV2", CVPR 2018; Howard et al., "Searching for MobileNetV3",
ICCV 2019):

    1x1 expand conv-BN-act      (skipped when expand == 1: MobileNetV2's first block, MNv3's `ef=1`)
    kxk depthwise conv-BN-act   (carries the stage's stride on the first block)
    squeeze-excite (optional)   (MNv3: on the expanded features, reduce to hidden/4 rounded to 8,
                                 ReLU, hard-sigmoid gate)
    1x1 project conv-BN         (no activation: the "linear bottleneck")
    + input                     (when stride 1 and the width is unchanged)

MobileNetV3's per-block expansion sizes, activations and SE flags change inside its paper stages;
the reference zoo expresses them by splitting a paper stage into several stride-1 stages with a
fractional `expand` (hidden = make_divisible(in * expand, 8), the rule of the TF reference code).
"""
from __future__ import annotations

import torch
from torch import nn

from nas.arch.stages import Activation, MV2Stage
from nas.blocks import StageContext
from nas.blocks.common import ConvBN, ConvBNAct, SqueezeExcite, make_divisible, se_in_block
from nas.blocks.units import Flow, Unit, chw, halved


def hidden_channels(in_channels: int, expand: float) -> int:
    """Expanded width: the input width itself when expand == 1 (no expansion conv), else
    make_divisible(in * expand, 8) as TF's `expand_input_by_factor` rounds it."""
    return in_channels if expand == 1 else make_divisible(in_channels * expand, 8)


class InvertedResidual(nn.Module):
    """One inverted residual block with linear bottleneck (see the module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expand: float = 4.0,
                 kernel: int = 3, act: Activation = "relu6", se: bool = False) -> None:
        super().__init__()
        hidden = hidden_channels(in_channels, expand)
        self.use_residual = stride == 1 and in_channels == out_channels
        self.expand = ConvBNAct(in_channels, hidden, 1, act=act) if expand != 1 else nn.Identity()
        self.dw = ConvBNAct(hidden, hidden, kernel, stride, groups=hidden, act=act)
        # MNv3 squeeze-excite: ReLU inside, hard-sigmoid gate (cheap on phones), from the hidden width.
        self.se = SqueezeExcite(hidden, rd_ratio=0.25, rd_divisor=8, act="relu", gate="hsigmoid") if se \
            else nn.Identity()
        self.project = ConvBN(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.use_residual else y


def build_stage(spec: MV2Stage, ctx: StageContext) -> nn.Module:
    """`depth` inverted residuals at `width`; the first carries the stride and the width change."""
    stage = nn.Sequential(*[
        InvertedResidual(ctx.in_channels if i == 0 else spec.width, spec.width, spec.stride if i == 0 else 1,
                         spec.expand, spec.kernel, spec.act, se_in_block(spec.se, i))
        for i in range(spec.depth)])
    stage.out_channels = spec.width
    return stage


UNIT_OPS = {"mv2.ir": InvertedResidual}


def stage_units(spec: MV2Stage, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """One unit per inverted residual (the first carries the stride and the width change)."""
    units, cin, size = [], ctx.in_channels, ctx.in_size
    for i in range(spec.depth):
        stride = spec.stride if i == 0 else 1
        units.append(Unit.make("mv2.ir", [chw(cin, size)], in_channels=cin, out_channels=spec.width, stride=stride,
                               expand=spec.expand, kernel=spec.kernel, act=spec.act, se=se_in_block(spec.se, i)))
        cin, size = spec.width, halved(size) if stride == 2 else size
    return units, Flow(spec.width, size, ctx.token_dim, ctx.num_tokens)
