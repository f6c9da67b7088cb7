"""Latency units: the separately measurable pieces a network is made of.

A latency lookup table cannot hold whole networks (the hybrid space has ~1e14 of them), so a
network is cut into *units*: the stem, each block of each stage (for attention families, each
transformer layer and the conv shell around them), each bridge of a Mobile-Former block, and the
head. A unit is identified by its builder (`op`), the plain-data arguments that builder takes
(every hyper-parameter that changes compute) and the per-image shapes it is fed; two units with
the same signature cost the same. Its key is the LUT row key.

Each family module says how its stage splits, with `stage_units(spec, ctx) -> (units, Flow)`,
computed from the spec alone (no model is built), and registers its unit builders in
`UNIT_OPS`. `tests/test_units.py` checks the split against the built network: the units' parameters
and FLOPs add up exactly to the network's. Residual additions between units are not units (they
are the few microseconds the validated correction absorbs).
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nas.arch.schema import ArchConfig, HeadSpec, StemSpec
from nas.blocks import StageContext
from nas.blocks.head import Head
from nas.blocks.stem import Stem

Shape = tuple[int, ...]
FAMILIES = ("mv2", "repvit", "mobilevit", "lgl", "levit", "former")


@dataclass(frozen=True)
class Unit:
    """One measurable piece: `UNIT_OPS[op](**args)` fed tensors of `inputs` shapes (batch 1
    prepended; None = that argument is None)."""

    op: str
    args: tuple[tuple[str, Any], ...]
    inputs: tuple[Shape | None, ...]

    @classmethod
    def make(cls, op: str, inputs: Iterable[Shape | None], **args: Any) -> Unit:
        return cls(op, tuple(sorted(args.items())), tuple(None if s is None else tuple(s) for s in inputs))

    @property
    def key(self) -> str:
        """Canonical text form, e.g. `repvit.block(act=gelu,channels=64,...)@64x8x8`."""
        def fmt(v: Any) -> str:
            if isinstance(v, bool):
                return "1" if v else "0"
            if isinstance(v, tuple):
                return "x".join(str(x) for x in v)
            return "-" if v is None else str(v)

        args = ",".join(f"{k}={fmt(v)}" for k, v in self.args)
        shapes = ",".join("-" if s is None else "x".join(map(str, s)) for s in self.inputs)
        return f"{self.op}({args})@{shapes}"

    @property
    def family(self) -> str:
        return self.op.split(".", 1)[0]

    def build(self) -> nn.Module:
        """A freshly initialised module of this unit (training form; callers fuse for inference)."""
        return unit_builder(self.op)(**dict(self.args))

    def example_inputs(self, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor | None, ...]:
        gen = torch.Generator().manual_seed(seed)
        return tuple(None if s is None else torch.randn(batch, *s, generator=gen) for s in self.inputs)


@dataclass(frozen=True)
class Flow:
    """What passes from one stage to the next: feature map channels and size, global tokens."""

    channels: int
    size: tuple[int, int]
    token_dim: int | None = None
    num_tokens: int | None = None

    def context(self, index: int, num_stages: int) -> StageContext:
        return StageContext(self.channels, self.size, index, num_stages, self.token_dim, self.num_tokens)

    @property
    def tokens_shape(self) -> Shape | None:
        return None if self.token_dim is None else (self.num_tokens, self.token_dim)


def halved(size: tuple[int, int]) -> tuple[int, int]:
    """Output size of every stride-2 layer in the library (k x k conv with padding (k-1)//2,
    LeViT's ::2 subsampling, EdgeViT's padded 2x2 patchify): ceil(n / 2)."""
    return ((size[0] + 1) // 2, (size[1] + 1) // 2)


def chw(channels: int, size: tuple[int, int]) -> Shape:
    return (channels, *size)


# ------------------------------------------------------------------ stem and head
def _build_stem(**args: Any) -> nn.Module:
    return Stem(StemSpec(**args))


def _build_head(in_channels: int, num_classes: int, token_dim: int | None, **spec: Any) -> nn.Module:
    return Head(HeadSpec(**spec), in_channels, num_classes, token_dim)


def stem_unit(spec: StemSpec, resolution: int) -> tuple[Unit, Flow]:
    r = resolution
    size = (r // 4, r // 4) if spec.kernel == 4 else _repeat_halved((r, r), spec.strides)
    return Unit.make("stem", [(3, r, r)], **spec.model_dump()), Flow(spec.channels, size)


def head_unit(spec: HeadSpec, flow: Flow, num_classes: int) -> Unit:
    # Dropout does nothing at inference: leave it out of the signature.
    fields = {k: v for k, v in spec.signature().items() if k != "dropout"}
    return Unit.make("head", [chw(flow.channels, flow.size), flow.tokens_shape],
                     in_channels=flow.channels, num_classes=num_classes, token_dim=flow.token_dim, **fields)


def _repeat_halved(size: tuple[int, int], times: int) -> tuple[int, int]:
    for _ in range(times):
        size = halved(size)
    return size


# ------------------------------------------------------------------ registry and walk
_CORE_OPS: dict[str, Callable[..., nn.Module]] = {"stem": _build_stem, "head": _build_head}


def unit_builder(op: str) -> Callable[..., nn.Module]:
    """The builder of `op`: "stem"/"head" here, "<family>.<name>" in that family's UNIT_OPS."""
    if op in _CORE_OPS:
        return _CORE_OPS[op]
    family = op.split(".", 1)[0]
    if family not in FAMILIES:
        raise KeyError(f"unknown unit op {op!r}")
    ops = importlib.import_module(f"nas.blocks.{family}").UNIT_OPS
    if op not in ops:
        raise KeyError(f"unknown unit op {op!r}")
    return ops[op]


def stage_units(spec: Any, ctx: StageContext) -> tuple[list[Unit], Flow]:
    """The units of one stage and what flows out of it (the family's `stage_units`)."""
    return importlib.import_module(f"nas.blocks.{spec.block}").stage_units(spec, ctx)


def arch_sections(arch: ArchConfig) -> list[tuple[str, list[Unit]]]:
    """The units of `arch` grouped as the network is: ("stem", ...), ("stage 0", ...), ("head", ...)."""
    stem, flow = stem_unit(arch.stem, arch.resolution)
    sections = [("stem", [stem])]
    for i, spec in enumerate(arch.stages):
        stage, flow = stage_units(spec, flow.context(i, len(arch.stages)))
        sections.append((f"stage {i}", stage))
    sections.append(("head", [head_unit(arch.head, flow, arch.num_classes)]))
    return sections


def arch_units(arch: ArchConfig) -> list[Unit]:
    """Every unit of `arch` in execution order (a unit appears once per occurrence)."""
    return [u for _, units in arch_sections(arch) for u in units]
