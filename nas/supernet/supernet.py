"""The weight-sharing supernet: one set of largest weights per (stage, family), any member runnable.

How a member runs: its own network structure (nas.builder.HybridNet, the class every other tool
builds) is called with `torch.func.functional_call` on tensors cut from the supernet's weights by
slicing.py, following the rules the block modules declare beside their layers. The cuts are views
(or, for the few re-ordered tensors, differentiable gathers), so

  - gradients of the member's loss land in the supernet's weights;
  - BatchNorm running statistics, updated in place by the member's forward in training mode,
    land in the supernet's buffers (prefix slices of 1-D buffers are views);
  - `extract(arch)` is the same structure with the same tensors copied in: a standalone HybridNet
    whose outputs equal the active supernet's.

Member structures are cached per architecture (a few, LRU); building one costs ~0.1 s and never
touches the global RNG, so a run's random stream does not depend on cache hits.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from nas.arch.schema import ArchConfig, parse_arch
from nas.blocks.sharing import declared_rules
from nas.builder import HybridNet, init_weights
from nas.errors import UserError
from nas.supernet.containers import build_head, build_stage_containers, build_stem, head_token_dim
from nas.supernet.slicing import SliceContext, Slicer, layer_shift, rename_in_stage, rule_for
from search_spaces.hybrid import HybridSpace
from search_spaces.presets import space_to_dict


@dataclass
class _Plan:
    """A member's structure and, per tensor name, where and how to cut it from the supernet."""

    arch: ArchConfig
    structure: HybridNet
    entries: list[tuple[str, torch.Tensor, Slicer]]


class Supernet(nn.Module):
    """Largest weights of `space`: `stem` (or `stem[depthD]`, see containers.build_stem),
    `stages[i][family]`, `head`. `set_active(arch)`, then call.

    Modules keep the names of the members' modules, so a state dict reads like a model's.
    """

    def __init__(self, space: HybridSpace, seed: int = 0, cache_size: int = 8,
                 stem_sharing: str = "shared") -> None:
        super().__init__()
        self.space = space
        self.stem_sharing = stem_sharing
        self.head_token_dim = head_token_dim(space)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.stem = build_stem(space, stem_sharing)
            self.stages = nn.ModuleList(build_stage_containers(space, i) for i in range(len(space.stages)))
            self.head = build_head(space)
            init_weights(self)
        # Every module's `weight_sharing` declaration, checked against its tensors now (a renamed
        # layer fails here, not as silently mixed weights later): {supernet tensor name: rule}.
        self._sharing = declared_rules(self)
        self.cache_size = cache_size
        self._plans: OrderedDict[str, _Plan] = OrderedDict()
        self.active: ArchConfig | None = None

    def describe(self) -> dict[str, object]:
        """What identifies this supernet (stored with its weights). The default stem sharing is
        left unsaid, so files and runs from before the choice existed keep their identity."""
        shared = {} if self.stem_sharing == "shared" else {"stem_sharing": self.stem_sharing}
        return {"space": space_to_dict(self.space), **shared}

    # --- members --------------------------------------------------------------------------------

    def member(self, arch: ArchConfig) -> ArchConfig:
        """`arch` as a member of the space (class count set to the space's); UserError if it is not one."""
        if arch.num_classes != self.space.num_classes:
            arch = parse_arch({**arch.to_dict(), "num_classes": self.space.num_classes}, source=arch.name)
        ok, why = self.space.contains(arch)
        if not ok:
            raise UserError(f"{arch.name}: not a member of the supernet's space {self.space.name!r} ({why})")
        return arch

    def set_active(self, arch: ArchConfig) -> ArchConfig:
        """Make `arch` the member that forward() runs; returns it as the space's member."""
        arch = self.member(arch)
        self._plan(arch)
        self.active = arch
        return arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.active is None:
            raise RuntimeError("Supernet.forward: call set_active(arch) first")
        plan = self._plan(self.active)
        plan.structure.train(self.training)
        return functional_call(plan.structure, self.member_tensors(plan), (x,))

    def member_tensors(self, plan: _Plan) -> dict[str, torch.Tensor]:
        return {name: cut(source) for name, source, cut in plan.entries}

    def member_state(self, arch: ArchConfig) -> dict[str, torch.Tensor]:
        """The member's state dict, cut from the supernet (detached copies)."""
        plan = self._plan(self.member(arch))
        with torch.no_grad():
            return {k: v.detach().clone() for k, v in self.member_tensors(plan).items()}

    def extract(self, arch: ArchConfig) -> HybridNet:
        """A standalone HybridNet of `arch` holding its inherited weights (and BN statistics)."""
        arch = self.member(arch)
        with torch.random.fork_rng(devices=[]):
            net = HybridNet(arch)
        net.load_state_dict(self.member_state(arch))
        device = next(self.parameters()).device
        return net.to(device).train(self.training)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._plans.clear()  # cached structures hold device-bound index buffers; rebuild on demand
        return super()._apply(fn, recurse)

    # --- plans ----------------------------------------------------------------------------------

    def _plan(self, arch: ArchConfig) -> _Plan:
        key = arch.arch_hash()
        plan = self._plans.get(key)
        if plan is not None:
            self._plans.move_to_end(key)
            return plan
        with torch.random.fork_rng(devices=[]):
            structure = HybridNet(arch)
        device = next(self.parameters()).device
        structure.to(device)
        plan = _Plan(arch, structure, self._entries(arch, structure))
        _release_storage(structure)
        self._plans[key] = plan
        while len(self._plans) > self.cache_size:
            self._plans.popitem(last=False)
        return plan

    def _entries(self, arch: ArchConfig, structure: HybridNet) -> list[tuple[str, torch.Tensor, Slicer]]:
        big_tensors = dict(self.named_parameters())
        big_tensors.update(self.named_buffers())
        sub_sharing = declared_rules(structure)
        entries = []
        shifts: dict[int, int] = {}
        for name, tensor in structure.state_dict(keep_vars=True).items():
            big_name = self._big_name(name, arch, structure, shifts)
            if big_name not in big_tensors:
                raise KeyError(f"{arch.name}: {name} (as {big_name}) has no counterpart in the supernet")
            big = big_tensors[big_name]
            declared = self._sharing.get(big_name)
            if sub_sharing.get(name) != declared:  # the same layer on both sides, or the renaming is wrong
                raise ValueError(f"{arch.name}: {name} is declared {sub_sharing.get(name)!r} in the member but "
                                 f"{big_name} is declared {declared!r} in the supernet")
            ctx = SliceContext(structure, self, name, big_name, arch)
            try:
                cut = _identity if big.ndim == 0 else rule_for(declared)(big, tensor.shape, ctx)
                got = cut(big.detach())
            except ValueError as exc:
                raise ValueError(f"{arch.name}: {name} (as {big_name}): {exc}") from None
            if got.shape != tensor.shape:
                raise ValueError(f"{arch.name}: {name} (as {big_name}) cut to {tuple(got.shape)}, "
                                 f"expected {tuple(tensor.shape)}")
            entries.append((name, big, cut))
        return entries

    def _big_name(self, name: str, arch: ArchConfig, structure: HybridNet,
                  shifts: dict[int, int]) -> str:
        """The supernet-side name of a member's tensor name."""
        top, _, rest = name.partition(".")
        if top == "stem" and self.stem_sharing == "per-depth":
            return f"stem.depth{arch.stem.depth}.{rest}"
        if top != "stages":
            return name
        index_s, _, rest = rest.partition(".")
        i = int(index_s)
        family = arch.stages[i].block
        sub_stage, big_stage = structure.stages[i], self.stages[i][family]
        if i not in shifts:
            shifts[i] = layer_shift(sub_stage, big_stage)
        return f"stages.{i}.{family}.{rename_in_stage(rest, sub_stage, big_stage, shifts[i])}"


def _identity(t: torch.Tensor) -> torch.Tensor:
    return t


def _release_storage(structure: nn.Module) -> None:
    """Drop a cached structure's own parameters and persistent buffers (functional_call always
    supplies them): meta tensors of the same shapes keep the module valid at no memory cost.
    Non-persistent buffers (LeViT's bias index) stay: the member computes them for its grid."""
    for module in structure.modules():
        for key, p in list(module._parameters.items()):
            if p is not None:
                module._parameters[key] = nn.Parameter(torch.empty_like(p, device="meta"), p.requires_grad)
        for key, b in list(module._buffers.items()):
            if b is not None and key not in module._non_persistent_buffers_set:
                module._buffers[key] = torch.empty_like(b, device="meta")
