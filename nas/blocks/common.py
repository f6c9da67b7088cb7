"""Layers every family uses: conv-BN(-act) with BN folding, squeeze-excitation, activations; and
EdgeViT's patch embedding, shared by its stages and its stem.

Kept tiny on purpose; anything specific to one paper lives in that family's module.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.stages import Activation

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
}


def make_act(name: Activation) -> nn.Module:
    return _ACTIVATIONS[name]()


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet's shuffle: interleave the groups of a grouped 1x1 conv's output, so that the
    next grouped conv sees every group (Mobile-Former-26M groups its 1x1 convs by 4)."""
    if groups == 1:
        return x
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round channels to a multiple of `divisor` without dropping below 90% (MobileNet rule)."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


class ConvBN(nn.Sequential):
    """Conv2d (no bias) + BatchNorm2d; `fuse()` folds the BN into a biased conv for inference."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 padding: int | None = None, bn_weight_init: float = 1.0) -> None:
        padding = (kernel - 1) // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
        )
        nn.init.constant_(self[1].weight, bn_weight_init)
        nn.init.zeros_(self[1].bias)

    @torch.no_grad()
    def fused_conv(self) -> nn.Conv2d:
        conv, bn = self[0], self[1]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                          conv.padding, groups=conv.groups, bias=True)
        fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
        fused.bias.copy_(bn.bias - bn.running_mean * scale)
        return fused


class ConvBNAct(nn.Sequential):
    """Conv-BN followed by an activation (`act=None`: none)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 act: Activation | None = "relu") -> None:
        super().__init__(ConvBN(cin, cout, kernel, stride, groups), make_act(act) if act else nn.Identity())


class SqueezeExcite(nn.Module):
    """Channel attention: pool, reduce, act, expand, gate (MobileNetV3 / RepViT style)."""

    def __init__(self, channels: int, rd_ratio: float = 0.25, rd_divisor: int = 8,
                 act: Activation = "relu", gate: str = "sigmoid") -> None:
        super().__init__()
        hidden = make_divisible(channels * rd_ratio, rd_divisor)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.act = make_act(act)
        self.expand = nn.Conv2d(hidden, channels, 1)
        self.gate = nn.Hardsigmoid() if gate == "hsigmoid" else nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.act(self.reduce(s))))


def se_in_block(mode: str, index: int) -> bool:
    """Whether block `index` (0-based, within its stage) carries SE under the stage's mode."""
    return mode == "all" or (mode == "alternate" and index % 2 == 0)


def fuse_model(model: nn.Module) -> nn.Module:
    """Re-parameterise in place for inference: every submodule with `reparameterize()` (RepViT's
    multi-branch DW conv, ...) collapses into its single-branch deploy form. Children first, so a
    parent sees already-fused children."""
    for child in model.children():
        fuse_model(child)
    if hasattr(model, "reparameterize"):
        model.reparameterize()
    return model


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of each pixel of an NCHW map (the official patch embedding
    flattens to tokens, normalises and reshapes back: the same numbers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class PatchEmbed(nn.Module):
    """Non-overlapping k x k conv with stride k (bias, no BN) then LayerNorm: EdgeViT's
    downsampling between stages (k = 2). With k = 1 it is the channel projection a stride-1
    stage needs when its input width differs (the official network never has one)."""

    def __init__(self, cin: int, cout: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(cin, cout, patch, patch)
        self.norm = LayerNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad_h, pad_w = -x.shape[-2] % self.patch, -x.shape[-1] % self.patch
        if pad_h or pad_w:  # shape-only branch: odd maps keep their last row/column
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.norm(self.proj(x))
