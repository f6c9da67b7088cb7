"""The largest member of every (stage, family) of a space: the modules that own the shared weights.

Each container is built by the family's own `build_stage` (so its parameter names are exactly a
subnet's) from the largest choice of every dimension the space offers at that stage, on the
largest input a subnet can give it: the widest predecessor, the largest feature grid (LeViT's
bias table), no incoming tokens (so a Mobile-Former stage owns its learnable tokens). Every
member's tensors are then sub-tensors of these (see slicing.py); the tests check it for samples
of every family.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from nas.arch.schema import HeadSpec, StemSpec
from nas.arch.stages import STAGE_TYPES
from nas.blocks import StageContext, stage_builder
from nas.blocks.common import ConvBNAct
from nas.blocks.head import Head
from nas.blocks.stem import stem_channels
from nas.errors import UserError
from search_spaces.hybrid import HybridSpace, StageChoices, mobilevit_dim

_SPEC_TYPES = {t.model_fields["block"].default: t for t in STAGE_TYPES}


def grid_after(resolution: int, halvings: int) -> int:
    """Feature-map side after `halvings` stride-2 layers (each ceil(n / 2), as every family pads)."""
    for _ in range(halvings):
        resolution = (resolution + 1) // 2
    return resolution


def stage_stride(space: HybridSpace, index: int) -> int:
    """Largest stride the stage can have (stage 0 is stride 1 after a 2-stride stem)."""
    if index > 0:
        return 2
    return 2 if min(space.stem_depths) == 1 else 1


def largest_stage_spec(space: HybridSpace, index: int, family: str) -> Any:
    """The stage record of `family` at stage `index` with the largest of every choice."""
    st: StageChoices = space.stages[index]
    width = max(st.widths)
    fields: dict[str, Any] = {"block": family, "depth": max(st.depths), "width": width,
                              "stride": stage_stride(space, index)}
    opts = st.options(family)
    for key in ("expand", "kernel", "mlp_ratio", "heads"):
        if key in opts:
            fields[key] = max(opts[key])
    if family in ("mv2", "repvit"):
        fields["se"] = "all"
        fields["act"] = "hswish" if family == "mv2" else "gelu"
    elif family == "lgl":
        fields["sample_rate"] = max(st.sample_rates)  # r > 1 has LocalAgg and LocalProp (r = 1 is a subset)
    elif family == "mobilevit":
        fields["dim"] = mobilevit_dim(width)
    elif family == "former":
        fields["tokens"], fields["token_dim"] = max(space.token_counts), max(space.token_dims)
    return _SPEC_TYPES[family](**fields)


STEM_SHARING = ("shared", "per-depth")


def build_stem(space: HybridSpace, sharing: str = "shared") -> nn.Module:
    """The stems' weights. "shared": one stem whose layer l is as wide as layer l of any stem the
    space offers (a depth-1 stem's only layer is 24 wide, a depth-3 stem's first is 8); names
    match nas.blocks.stem.Stem. "per-depth": one such stem per stem depth, `depthD.<layer>...`.

    Why per-depth: in the shared stem a layer changes role with the depth (layer 0 is a depth-1
    stem's output and a depth-3 stem's first of three), and the trained supernets rate "the
    largest with a depth-1 or depth-2 stem" up to 28 points below the largest
    (benchmarks/results/supernet_dims_*.json); the stems are a few thousand weights. Measured over
    the 10-epoch recipe: the gap falls to 8.7 / 7.1 points (3.1 / 4.0 with the trainer's shallow
    corner), the members' ranking does not improve (README, Supernet)."""
    if sharing not in STEM_SHARING:
        raise UserError(f"stem sharing {sharing!r}: expected one of {', '.join(STEM_SHARING)}")
    if sharing == "per-depth":
        return nn.ModuleDict({f"depth{depth}": _widest_stem(space, [depth]) for depth in space.stem_depths})
    return _widest_stem(space, space.stem_depths)


def _widest_stem(space: HybridSpace, depths: Sequence[int]) -> nn.Sequential:
    """A stem whose layer l is as wide as layer l of any of the space's stems of these depths."""
    widths: list[int] = []
    for depth in depths:
        for channels in space.stem_channels:
            for layer, w in enumerate(stem_channels(StemSpec(depth=depth, channels=channels))):
                widths += [0] * (layer + 1 - len(widths))
                widths[layer] = max(widths[layer], w)
    layers, cin = [], 3
    for w in widths:
        layers.append(ConvBNAct(cin, w, 3, 1, act="hswish"))
        cin = w
    return nn.Sequential(*layers)


def build_stage_containers(space: HybridSpace, index: int) -> nn.ModuleDict:
    """{family: largest stage module} for stage `index`."""
    if index == 0:
        in_channels = max(space.stem_channels)
    else:
        in_channels = max(space.stages[index - 1].widths)
    grid = grid_after(max(space.resolutions), index + 1)  # stage i's input has stride 2^(i+1)
    ctx = StageContext(in_channels, (grid, grid), index, len(space.stages), token_dim=None, num_tokens=None)
    return nn.ModuleDict({family: stage_builder(family)(largest_stage_spec(space, index, family), ctx)
                          for family in space.stages[index].families})


def head_token_dim(space: HybridSpace) -> int:
    """Width of the token part of the classifier's input (0 when no stage can be Mobile-Former)."""
    return max(space.token_dims) if any("former" in st.families for st in space.stages) else 0


def build_head(space: HybridSpace) -> Head:
    """Head with the widest 1x1 conv, and a classifier wide enough for either of its inputs: the
    conv's output, or the last stage's output when a member has no head conv."""
    last = max(space.stages[-1].widths)
    tokens = head_token_dim(space)
    head = Head(HeadSpec(channels=max(space.head_channels), act="hswish"), last, space.num_classes, tokens or None)
    features = max(last, max(space.head_channels)) + tokens
    if head.fc.in_features != features:
        head.fc = nn.Linear(features, space.num_classes)
    return head
