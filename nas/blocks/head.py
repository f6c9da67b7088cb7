"""Classifier head shared by all families (see HeadSpec for the published variants it covers)."""
from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from nas.arch.schema import HeadSpec
from nas.blocks.common import ConvBNAct, channel_shuffle, make_act
from nas.blocks.sharing import HeadFeatures, SharingRule


class Head(nn.Module):
    # The classifier reads cat([pooled features, token 0]): each part takes its own prefix. (The
    # supernet's head is conv + fc only; with a `hidden` layer, a norm or a distillation
    # classifier more tensors would read the concatenation, and this does not cover them.)
    weight_sharing: ClassVar[dict[str, SharingRule]] = {"fc.weight": HeadFeatures()}

    def __init__(self, spec: HeadSpec, in_channels: int, num_classes: int, token_dim: int | None) -> None:
        super().__init__()
        self.groups = spec.groups
        self.conv = ConvBNAct(in_channels, spec.channels, 1, groups=spec.groups, act=spec.act) if spec.channels \
            else nn.Identity()
        self.pool_act = make_act(spec.pool_act) if spec.pool_act != "none" else nn.Identity()
        features = (spec.channels or in_channels) + (token_dim or 0)
        self.uses_tokens = token_dim is not None
        if spec.hidden:
            norm = nn.BatchNorm1d(spec.hidden) if spec.hidden_norm == "bn" else nn.Identity()
            self.hidden: nn.Module = nn.Sequential(nn.Linear(features, spec.hidden), norm,
                                                   make_act(spec.hidden_act or spec.act))
            features = spec.hidden
        else:
            self.hidden = nn.Identity()
        # LeViT's BN_Linear: each classifier, the distillation one too, has its own norm
        self.norm = _norm(spec.norm, features)
        self.dropout = nn.Dropout(spec.dropout)
        self.fc = nn.Linear(features, num_classes)
        self.norm_dist = _norm(spec.norm, features) if spec.distill else None
        self.fc_dist = nn.Linear(features, num_classes) if spec.distill else None

    def features(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pool_act(self.conv(channel_shuffle(x, self.groups)).mean((2, 3)))
        if self.uses_tokens:
            x = torch.cat([x, tokens[:, 0]], dim=1)
        return self.hidden(x)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(x, tokens)
        logits = self.fc(self.dropout(self.norm(x)))
        if self.fc_dist is not None:  # averaged as at DeiT/LeViT/RepViT inference
            logits = (logits + self.fc_dist(self.dropout(self.norm_dist(x)))) / 2
        return logits


def _norm(kind: str, features: int) -> nn.Module:
    return {"none": nn.Identity, "bn": nn.BatchNorm1d, "ln": nn.LayerNorm}[kind](features) if kind != "none" \
        else nn.Identity()
