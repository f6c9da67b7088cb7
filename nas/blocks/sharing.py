"""How a layer's tensors are cut for a smaller member of a weight-sharing supernet, declared beside
the layer (as once-for-all keeps the slicing inside each elastic layer).

Every tensor a module does not declare takes the default cut: a prefix of every dim (the first
channels, hidden units, heads, tokens) and the centre crop of a conv kernel's two spatial dims.
That is right whenever a prefix of a dim is a smaller layer of the same kind, which holds for
head-major fused projections too (a prefix of (heads, per-head) rows is a prefix of the heads).
A module whose tensor is laid out otherwise says so in a class attribute

    weight_sharing = {"qkv.weight": Chunks(dim=0, parts=3), "qkv.bias": Chunks(dim=0, parts=3)}

keyed by the tensor's path inside the module: one of its own parameters or buffers, or one of a
child it builds (a torch nn.Linear cannot carry the attribute itself, so its owner speaks for it).

The values are descriptions only, plain frozen data defined here, in the blocks layer, so that the
block modules need nothing above them; nas.supernet.slicing interprets them. `declared_rules`
collects a network's declarations and checks each against the tensor it names: a declaration
whose tensor is missing (a renamed layer) or does not fit is an error, never a silent fallback to
the default cut, which would mix q, k and v.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


class WeightSharingError(ValueError):
    """A `weight_sharing` declaration that does not match the module declaring it."""


@dataclass(frozen=True)
class SharingRule:
    """Base of the descriptions. `problem` says why the rule cannot apply to `tensor`, owned
    (directly) by `owner`, or returns None when it can."""

    def problem(self, tensor: torch.Tensor, owner: nn.Module) -> str | None:
        return None


@dataclass(frozen=True)
class Chunks(SharingRule):
    """Dim `dim` is `parts` equal concatenated parts (fused [q | k | v] rows, the input of a conv
    over cat([a, b])): each part takes its own prefix; the other dims take the default cut."""

    dim: int
    parts: int

    def problem(self, tensor: torch.Tensor, owner: nn.Module) -> str | None:
        if self.parts < 2:
            return f"parts={self.parts}: a chunked dim has at least 2 parts"
        if not 0 <= self.dim < tensor.ndim:
            return f"dim {self.dim} out of range for a {tensor.ndim}-d tensor {tuple(tensor.shape)}"
        if tensor.shape[self.dim] % self.parts:
            return f"dim {self.dim} of {tuple(tensor.shape)} is not {self.parts} equal parts"
        return None


@dataclass(frozen=True)
class GridOffsets(SharingRule):
    """A (heads, H*W) table of per-head values indexed by the offset |dy| * W + |dx| on the owner's
    `grid` (H, W) (LeViT's attention biases): a member on a smaller grid takes, for each of its
    offsets, the entry of the same offset; the first heads."""

    def problem(self, tensor: torch.Tensor, owner: nn.Module) -> str | None:
        grid = getattr(owner, "grid", None)
        if not (isinstance(grid, tuple) and len(grid) == 2):
            return f"its owner {type(owner).__name__} has no (H, W) `grid` to read the offsets on"
        if tensor.ndim != 2 or tensor.shape[1] != grid[0] * grid[1]:
            return f"expected (heads, {grid[0]}*{grid[1]}) for grid {grid}, got {tuple(tensor.shape)}"
        return None


@dataclass(frozen=True)
class HeadFeatures(SharingRule):
    """A classifier weight (classes, features) whose input is cat([pooled features, token 0]):
    each part of the input takes its own prefix (no token part when the member has no tokens)."""

    def problem(self, tensor: torch.Tensor, owner: nn.Module) -> str | None:
        if tensor.ndim != 2:
            return f"expected a (classes, features) weight, got {tuple(tensor.shape)}"
        return None


def declared_rules(model: nn.Module) -> dict[str, SharingRule]:
    """{tensor name in `model`: its declared rule} over every submodule's `weight_sharing`; raises
    WeightSharingError naming the module and key when a declaration names no parameter or buffer
    of its module, does not fit its tensor, or repeats one made elsewhere."""
    tensors: dict[str, torch.Tensor] = dict(model.named_parameters())
    tensors.update(model.named_buffers())
    rules: dict[str, SharingRule] = {}
    for path, module in model.named_modules():
        declared = getattr(module, "weight_sharing", None)
        if declared is None:
            continue
        where = f"{type(module).__name__} at {path or '<root>'}"
        if not isinstance(declared, Mapping):
            raise WeightSharingError(f"{where}: weight_sharing must map tensor paths to rules, got {declared!r}")
        for key, rule in declared.items():
            if not isinstance(rule, SharingRule):
                raise WeightSharingError(f"{where}: weight_sharing[{key!r}] = {rule!r} is not a SharingRule")
            name = f"{path}.{key}" if path else key
            if name not in tensors:
                own = sorted(k for k, _ in module.named_parameters())
                raise WeightSharingError(f"{where} declares weight sharing for {key!r}, which is not one of its "
                                         f"parameters or buffers (it has {', '.join(own) or 'none'})")
            if name in rules:
                raise WeightSharingError(f"{where} declares weight sharing for {key!r}, already declared "
                                         f"as {rules[name]!r} by an enclosing module")
            owner = model.get_submodule(name.rpartition(".")[0])
            problem = rule.problem(tensors[name], owner)
            if problem:
                raise WeightSharingError(f"{where}: weight_sharing[{key!r}] = {rule!r}: {problem}")
            rules[name] = rule
    return rules
