"""RepViT stage (Wang et al., "RepViT: Revisiting Mobile CNN From ViT Perspective", CVPR 2024).

RepViT re-arranges a MobileNetV3 block the way a MetaFormer is arranged (paper Fig. 4):

    token mixer:   RepVGGDW = BN(DW kxk conv-BN(x) + DW 1x1 conv(x) + x)   (structural
                   re-parameterisation: three branches in training, ONE kxk DW conv at inference)
                   -> squeeze-excite on the mixer output (optional, alternate blocks in the paper)
    channel mixer: x + conv1x1-BN(expand) -> GELU -> conv1x1-BN   (the ViT FFN, expand 2)

and replaces MobileNetV3's stride-2 inverted residual with a separate, deeper downsampling layer
(paper Fig. 6(c)): a RepViT block at the input width, a kxk depthwise stride-2 conv-BN for the
resolution, a 1x1 conv-BN for the width, then a residual FFN. The stage is that layer (when the
stage has stride 2 or changes the width) followed by `depth` RepViT blocks.

Layout follows the official code (THU-MIG/RepViT, model/repvit.py): the 1x1 DW branch is a plain
biased conv and a BatchNorm follows the branch sum; SE is timm's SEModule (rd 0.25, ReLU,
sigmoid); the last BN of every FFN starts at zero so residual branches start as identity; the
block just before a downsampling layer carries no SE.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.stages import Activation, RepViTStage
from nas.blocks import StageContext
from nas.blocks.common import ConvBN, SqueezeExcite, make_act, make_divisible, se_in_block
from nas.blocks.units import Flow, Unit, chw, halved


class RepVGGDW(nn.Module):
    """RepVGG-style depthwise token mixer; `reparameterize()` folds it into one kxk DW conv."""

    def __init__(self, channels: int, kernel: int = 3) -> None:
        super().__init__()
        self.kernel = kernel
        self.conv = ConvBN(channels, channels, kernel, groups=channels)
        self.conv1 = nn.Conv2d(channels, channels, 1, groups=channels, bias=True)
        self.bn = nn.BatchNorm2d(channels)
        self.fused: nn.Conv2d | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x)
        return self.bn(self.conv(x) + self.conv1(x) + x)

    @torch.no_grad()
    def reparameterize(self) -> None:
        """Exact in eval mode: every branch is linear in x, so their kernels add (the 1x1 and the
        identity become centre taps of a kxk kernel), then the trailing BN scales and shifts."""
        if self.fused is not None:
            return
        conv = self.conv.fused_conv()
        pad = self.kernel // 2
        weight = conv.weight + F.pad(self.conv1.weight, [pad] * 4)
        weight[:, :, pad, pad] += 1.0  # identity branch
        bias = conv.bias + self.conv1.bias
        scale = self.bn.weight / torch.sqrt(self.bn.running_var + self.bn.eps)
        conv.weight.copy_(weight * scale.reshape(-1, 1, 1, 1))
        conv.bias.copy_((bias - self.bn.running_mean) * scale + self.bn.bias)
        self.fused = conv
        del self.conv, self.conv1, self.bn


class FFN(nn.Module):
    """Residual channel mixer: 1x1 conv-BN expand, activation, 1x1 conv-BN back (zero-init BN)."""

    def __init__(self, channels: int, hidden: int, act: Activation) -> None:
        super().__init__()
        self.fc1 = ConvBN(channels, hidden, 1)
        self.act = make_act(act)
        self.fc2 = ConvBN(hidden, channels, 1, bn_weight_init=0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(self.act(self.fc1(x)))


class RepViTBlock(nn.Module):
    """Token mixer (RepVGGDW, then SE when `se`) followed by the residual FFN channel mixer."""

    def __init__(self, channels: int, expand: float, kernel: int, se: bool, act: Activation) -> None:
        super().__init__()
        self.mixer = RepVGGDW(channels, kernel)
        self.se = SqueezeExcite(channels, rd_ratio=0.25, rd_divisor=8, act="relu") if se else nn.Identity()
        self.ffn = FFN(channels, make_divisible(channels * expand, 8), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.se(self.mixer(x)))


class RepViTDownsample(nn.Module):
    """Separate downsampling layer (paper Fig. 6(c)): RepViT block (no SE) at the input width,
    DW kxk conv-BN with the stage stride (resolution), 1x1 conv-BN (width), residual FFN.

    Also used with stride 1 when a stage changes the width (the search space may place a RepViT
    stage after another family at a different width); then the DW conv keeps the resolution."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand: float, kernel: int,
                 act: Activation) -> None:
        super().__init__()
        self.pre_block = RepViTBlock(in_channels, expand, kernel, se=False, act=act)
        self.spatial = ConvBN(in_channels, in_channels, kernel, stride, groups=in_channels)
        self.channel = ConvBN(in_channels, out_channels, 1)
        self.ffn = FFN(out_channels, make_divisible(out_channels * expand, 8), act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.channel(self.spatial(self.pre_block(x))))


def build_stage(spec: RepViTStage, ctx: StageContext) -> nn.Module:
    """Downsampling layer (stride 2 or width change) then `depth` RepViT blocks whose SE placement
    follows the stage's `se` mode, counted from the first block after the downsampling layer
    (the official models restart the alternation in every stage with an SE block)."""
    layers: list[nn.Module] = []
    if spec.stride == 2 or ctx.in_channels != spec.width:
        layers.append(RepViTDownsample(ctx.in_channels, spec.width, spec.stride, spec.expand, spec.kernel,
                                       spec.act))
    layers += [RepViTBlock(spec.width, spec.expand, spec.kernel, se_in_block(spec.se, i), spec.act)
               for i in range(spec.depth)]
    stage = nn.Sequential(*layers)
    stage.out_channels = spec.width
    return stage


UNIT_OPS = {"repvit.down": RepViTDownsample, "repvit.block": RepViTBlock}


def stage_units(spec: RepViTStage, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """The downsampling layer (when present) and each RepViT block are units."""
    units, size = [], ctx.in_size
    if spec.stride == 2 or ctx.in_channels != spec.width:
        units.append(Unit.make("repvit.down", [chw(ctx.in_channels, size)], in_channels=ctx.in_channels,
                               out_channels=spec.width, stride=spec.stride, expand=spec.expand,
                               kernel=spec.kernel, act=spec.act))
        size = halved(size) if spec.stride == 2 else size
    units += [Unit.make("repvit.block", [chw(spec.width, size)], channels=spec.width, expand=spec.expand,
                        kernel=spec.kernel, se=se_in_block(spec.se, i), act=spec.act) for i in range(spec.depth)]
    return units, Flow(spec.width, size, ctx.token_dim, ctx.num_tokens)
