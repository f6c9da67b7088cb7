"""The hybrid CNN/ViT search space, its choices readable at a glance.

Macro-structure (total stride 32, as all five families): a conv stem, two convolutional stages
(MV2 or RepViT) at strides 4 and 8, then two stages at strides 16 and 32 where any of the five
families may stand — RepViT, MobileViT, EdgeViT LGL, LeViT or Mobile-Former — and a classifier.

The dimensions are the ones the five papers ablate, plus the usual NAS ones:
- global token count (Mobile-Former): 0 (no former stage), 3, 4 or 6 tokens, and their width;
- LGL sampling rate r (EdgeViT): 1, 2, 4;
- SE placement (RepViT / MobileNetV3): none, every block, alternate blocks, last stages only;
- stem depth (LeViT / RepViT early convolutions): 1-3 conv layers;
- MLP ratio (all attention families): 2, 3, 4;
- input resolution, block family per stage, depth, width, expand ratio, kernel, heads.

Its range reaches from networks smaller than MobileNetV3-Small x0.75 at 64 px up to about
RepViT-M1.0 at 224 px (see `tests/test_hybrid_space.py` and `nas space`). Every member is an
ArchConfig; Optuna sees the space through `suggest_flat(trial)` (every parameter on every trial,
named `s{i}.{field}`; the ones a member does not use are ignored), sampling helpers through the
define-by-run `suggest(trial)`, and `encode`/`decode` map between parameters and members.
"""
from __future__ import annotations

import itertools
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import TypeAdapter

from nas.arch.schema import ArchConfig, HeadSpec, StageSpec, StemSpec, parse_arch
from nas.blocks.common import make_divisible
from nas.blocks.units import Flow, Unit, head_unit, stage_units, stem_unit

RESOLUTIONS = (64, 96, 128, 160, 192, 224)
STEM_DEPTHS = (1, 2, 3)
STEM_CHANNELS = (16, 24)
SE_PLACEMENTS = ("none", "all", "alternate", "last")
TOKEN_COUNTS = (3, 4, 6)  # plus 0 = no Mobile-Former stage, which the family choices express
TOKEN_DIMS = (64, 128, 192)
HEAD_CHANNELS = (0, 512, 1024)

CONV_FAMILIES = ("mv2", "repvit")
ATTENTION_FAMILIES = ("mobilevit", "lgl", "levit", "former")


@dataclass(frozen=True)
class StageChoices:
    """What one stage may be. Family-specific fields only apply to the families that have them."""

    families: tuple[str, ...]
    depths: tuple[int, ...]
    widths: tuple[int, ...]
    expands: tuple[float, ...] = (2.0, 3.0, 4.0)  # mv2, former; mobilevit's downsampling MV2
    kernels: tuple[int, ...] = (3, 5)  # mv2 (RepViT and Mobile-Former keep their papers' 3x3)
    mlp_ratios: tuple[float, ...] = (2.0, 3.0, 4.0)  # mobilevit, lgl, levit, former
    heads: tuple[int, ...] = (2, 4)  # mobilevit, lgl, levit, former
    sample_rates: tuple[int, ...] = (1, 2, 4)  # lgl

    def options(self, family: str) -> dict[str, tuple[Any, ...]]:
        """The per-stage parameters (beyond family/depth/width) that `family` takes, with choices."""
        opts: dict[str, tuple[Any, ...]] = {}
        if family in ("mv2", "former", "mobilevit"):
            opts["expand"] = self.expands
        if family == "mv2":
            opts["kernel"] = self.kernels
        if family in ATTENTION_FAMILIES:
            opts["mlp_ratio"] = self.mlp_ratios
            opts["heads"] = self.heads
        if family == "lgl":
            opts["sample_rate"] = self.sample_rates
        return opts


DEFAULT_STAGES = (
    StageChoices(families=CONV_FAMILIES, depths=(1, 2), widths=(16, 24, 32)),
    StageChoices(families=CONV_FAMILIES, depths=(1, 2, 3), widths=(32, 48, 64, 96)),
    StageChoices(families=("repvit",) + ATTENTION_FAMILIES, depths=(1, 2, 3, 4, 6, 8),
                 widths=(48, 64, 96, 128, 160, 192, 256)),
    StageChoices(families=("repvit",) + ATTENTION_FAMILIES, depths=(1, 2, 3, 4),
                 widths=(96, 128, 192, 256, 320, 384)),
)


parse_stage = TypeAdapter(StageSpec).validate_python


class TrialLike(Protocol):
    """The slice of optuna.Trial the space uses (so tests can pass a dict-backed fake)."""

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def mobilevit_dim(width: int) -> int:
    """MobileViT's transformer dimension, tied to the stage width as in the paper's models
    (d ~ 1.33-1.5 x C): 1.5 x width rounded to a multiple of 16 so every head count divides it."""
    return make_divisible(1.5 * width, 16)


@dataclass(frozen=True)
class HybridSpace:
    resolutions: tuple[int, ...] = RESOLUTIONS
    stem_depths: tuple[int, ...] = STEM_DEPTHS
    stem_channels: tuple[int, ...] = STEM_CHANNELS
    se_placements: tuple[str, ...] = SE_PLACEMENTS
    token_counts: tuple[int, ...] = TOKEN_COUNTS
    token_dims: tuple[int, ...] = TOKEN_DIMS
    head_channels: tuple[int, ...] = HEAD_CHANNELS
    stages: tuple[StageChoices, ...] = DEFAULT_STAGES
    num_classes: int = 1000
    name: str = "hybrid"

    # ----------------------------------------------------------------- dimensions
    def dimensions(self) -> dict[str, tuple[Any, ...]]:
        """Every Optuna parameter with its choices (conditional ones included)."""
        dims: dict[str, tuple[Any, ...]] = {
            "resolution": self.resolutions, "stem.depth": self.stem_depths,
            "stem.channels": self.stem_channels, "se": self.se_placements,
            "tokens": self.token_counts, "token_dim": self.token_dims, "head.channels": self.head_channels,
        }
        for i, st in enumerate(self.stages):
            dims[f"s{i}.family"] = st.families
            dims[f"s{i}.depth"] = st.depths
            dims[f"s{i}.width"] = st.widths
            for fam in st.families:
                for key, choices in st.options(fam).items():
                    dims.setdefault(f"s{i}.{key}", choices)
        return dims

    def size(self) -> int:
        """Number of distinct parameter assignments (architectures up to SE aliasing)."""
        def stage_count(st: StageChoices, fam: str) -> int:
            return len(st.depths) * len(st.widths) * math.prod(len(c) for c in st.options(fam).values())

        base = len(self.resolutions) * len(self.stem_depths) * len(self.stem_channels) * \
            len(self.se_placements) * len(self.head_channels)
        no_former = math.prod(sum(stage_count(st, f) for f in st.families if f != "former") for st in self.stages)
        every = math.prod(sum(stage_count(st, f) for f in st.families) for st in self.stages)
        return base * (no_former + (every - no_former) * len(self.token_counts) * len(self.token_dims))

    # ----------------------------------------------------------------- Optuna <-> ArchConfig
    def suggest(self, trial: TrialLike) -> ArchConfig:
        """Define-by-run sampling of one member (Optuna trial or anything with suggest_categorical):
        only the parameters the member uses are asked, in a fixed order, so that `sample(seed)`
        and the supernet's sandwich draws are reproducible and cheap."""
        params: dict[str, Any] = {}

        def pick(name: str, choices: tuple[Any, ...]) -> Any:
            params[name] = trial.suggest_categorical(name, list(choices))
            return params[name]

        pick("resolution", self.resolutions)
        pick("stem.depth", self.stem_depths)
        pick("stem.channels", self.stem_channels)
        pick("se", self.se_placements)
        pick("head.channels", self.head_channels)
        for i, st in enumerate(self.stages):
            fam = pick(f"s{i}.family", st.families)
            pick(f"s{i}.depth", st.depths)
            pick(f"s{i}.width", st.widths)
            for key, choices in st.options(fam).items():
                pick(f"s{i}.{key}", choices)
        if any(params[f"s{i}.family"] == "former" for i in range(len(self.stages))):
            pick("tokens", self.token_counts)
            pick("token_dim", self.token_dims)
        return self.decode(params)

    def suggest_flat(self, trial: TrialLike) -> dict[str, Any]:
        """Ask every dimension on every trial and return the member's canonical parameters.

        What the search uses: with one fixed set of parameters for all trials, Optuna's
        multivariate TPE draws them jointly in one step instead of falling back to one
        independent draw per conditional parameter, the bulk of a predictor-driven trial's time
        (benchmarks/search_quality.py measures the search's speed). The answers for parameters
        the member does not use (the kernel of an attention stage, the token count without a
        Mobile-Former stage) are ignored: `canonical_params` drops them."""
        return self.canonical_params({name: trial.suggest_categorical(name, list(choices))
                                      for name, choices in self.dimensions().items()})

    def canonical_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters of `params` that its member uses, in canonical form: what
        `encode(decode(params))` gives, without building the member. Two parameter sets describe
        the same architecture exactly when their canonical forms are equal."""
        keep = {"resolution", "stem.depth", "stem.channels", "se", "head.channels"}
        families = [params.get(f"s{i}.family") for i in range(len(self.stages))]  # absent: a trial cut short
        for i, (st, fam) in enumerate(zip(self.stages, families)):
            keep |= {f"s{i}.family", f"s{i}.depth", f"s{i}.width"} | {f"s{i}.{key}" for key in st.options(fam)}
        if "former" in families:
            keep |= {"tokens", "token_dim"}
        canonical = {key: value for key, value in params.items() if key in keep}
        if "se" in canonical:  # placements that give the conv stages the same SE are one architecture
            canonical["se"] = self._placement_of([(i, _stage_se(canonical["se"], i, len(self.stages)))
                                                  for i, fam in enumerate(families) if fam in CONV_FAMILIES])
        return canonical

    def _placement_of(self, conv_se: Sequence[tuple[int, str]]) -> str | None:
        """The first SE placement giving each conv stage `(index, mode)` its mode (None if none does):
        the canonical one where several describe the same network."""
        return next((p for p in self.se_placements
                     if all(_stage_se(p, i, len(self.stages)) == mode for i, mode in conv_se)), None)

    def decode(self, params: Mapping[str, Any]) -> ArchConfig:
        """Optuna parameters -> ArchConfig (validated)."""
        stem = self.stem_spec(params["stem.depth"], params["stem.channels"])
        stages = []
        for i in range(len(self.stages)):
            fam = params[f"s{i}.family"]
            options = {key: params[f"s{i}.{key}"] for key in self.stages[i].options(fam)}
            stages.append(self.stage_spec(i, fam, params[f"s{i}.depth"], params[f"s{i}.width"], options,
                                          se=_stage_se(params["se"], i, len(self.stages)), stem_strides=stem.strides,
                                          tokens=params.get("tokens"), token_dim=params.get("token_dim")))
        data = {
            "name": "hybrid-" + "-".join(s["block"] for s in stages[2:]),
            "resolution": params["resolution"], "num_classes": self.num_classes,
            "stem": stem.model_dump(),
            "stages": stages,
            "head": HeadSpec(channels=params["head.channels"], act="hswish").model_dump(),
            "meta": {"space": self.name},
        }
        return parse_arch(data, source="hybrid space")

    @staticmethod
    def stem_spec(depth: int, channels: int) -> StemSpec:
        """Stems take stride 2 (one layer) or 4 (two or more layers: the LeViT/RepViT early convs)."""
        return StemSpec(depth=depth, channels=channels, strides=min(depth, 2), act="hswish")

    def stage_spec(self, index: int, family: str, depth: int, width: int, options: Mapping[str, Any], se: str,
                   stem_strides: int, tokens: int | None, token_dim: int | None) -> dict[str, Any]:
        """The stage dict of stage `index`: the searched fields plus what the space ties to them."""
        # The stem takes stride 2 or 4; stage 0 completes the first stride 4 either way.
        stride = (2 if stem_strides == 1 else 1) if index == 0 else 2
        spec: dict[str, Any] = {"block": family, "depth": depth, "width": width, "stride": stride, **options}
        if family in CONV_FAMILIES:
            spec["se"] = se
            spec["act"] = "hswish" if family == "mv2" else "gelu"
        elif family == "mobilevit":
            spec["dim"] = mobilevit_dim(width)
        elif family == "former":
            spec["tokens"], spec["token_dim"] = tokens, token_dim
        return spec

    def encode(self, arch: ArchConfig) -> dict[str, Any]:
        """ArchConfig -> Optuna parameters (the inverse of `decode` on members of the space).
        Raises ValueError when the architecture cannot be expressed; see `contains`."""
        if len(arch.stages) != len(self.stages):
            raise ValueError(f"stages: {len(arch.stages)} stages, the space has {len(self.stages)}")
        params: dict[str, Any] = {"resolution": arch.resolution, "stem.depth": arch.stem.depth,
                                  "stem.channels": arch.stem.channels, "head.channels": arch.head.channels}
        conv_se = [(i, s.se) for i, s in enumerate(arch.stages) if s.block in CONV_FAMILIES]
        params["se"] = self._placement_of(conv_se)
        if params["se"] is None:
            raise ValueError(f"se: per-stage SE {[m for _, m in conv_se]} matches no placement of {self.se_placements}")
        for i, spec in enumerate(arch.stages):
            params[f"s{i}.family"] = spec.block
            params[f"s{i}.depth"] = spec.depth
            params[f"s{i}.width"] = spec.width
            for key in self.stages[i].options(spec.block):
                params[f"s{i}.{key}"] = getattr(spec, key)
            if spec.block == "former":
                params["tokens"], params["token_dim"] = spec.tokens, spec.token_dim
        return params

    def contains(self, arch: ArchConfig) -> tuple[bool, str]:
        """(True, '') for members; otherwise (False, the first reason it is not one)."""
        try:
            params = self.encode(arch)
        except ValueError as exc:
            return False, str(exc)
        dims = self.dimensions()
        for key, value in params.items():
            stage_fams = self.stages[int(key[1])].families if key.startswith("s") and key[1].isdigit() else None
            if key.endswith(".family") and value not in stage_fams:
                return False, f"{key}: {value!r} is not one of {list(stage_fams)}"
            if value not in dims[key]:
                return False, f"{key}: {value!r} is not one of {list(dims[key])}"
        rebuilt = self.decode(params)
        if rebuilt.arch_hash() != arch.arch_hash():
            return False, "fields outside the space's choices differ (e.g. activation, stride, stem, head)"
        return True, ""

    # ----------------------------------------------------------------- latency units
    def units(self, resolution: int) -> set[Unit]:
        """Every latency unit a member at `resolution` can contain: what a LUT must cover.

        Walks the stages keeping the set of possible incoming flows (width, size, tokens); a
        stage at its largest depth holds every unit a shallower one has (units do not depend on
        depth), so depth need not be enumerated."""
        found: set[Unit] = set()
        settings = [(t, d) for t in self.token_counts for d in self.token_dims]
        flows: set[Flow] = set()
        for depth in self.stem_depths:
            for channels in self.stem_channels:
                stem = self.stem_spec(depth, channels)
                unit, flow = stem_unit(stem, resolution)
                found.add(unit)
                # Stage 0's stride depends on the stem's, later stages' on nothing before them.
                flows |= self._stage_flows(0, flow, stem.strides, settings, found)
        for i in range(1, len(self.stages)):
            flows = {out for flow in flows for out in self._stage_flows(i, flow, 2, settings, found)}
        for flow in flows:
            for channels in self.head_channels:
                found.add(head_unit(HeadSpec(channels=channels, act="hswish"), flow, self.num_classes))
        return found

    def _stage_flows(self, i: int, flow: Flow, stem_strides: int, settings: list[tuple[int, int]],
                     found: set[Unit]) -> set[Flow]:
        """Add the units of every variant of stage i fed `flow` to `found`; the flows out of it."""
        outs: set[Flow] = set()
        for spec in self._stage_variants(i, self.stages[i], flow, stem_strides, settings):
            units, out = stage_units(parse_stage(spec), flow.context(i, len(self.stages)))
            found.update(units)
            outs.add(out)
        return outs

    def _stage_variants(self, i: int, st: StageChoices, flow: Flow, stem_strides: int,
                        settings: list[tuple[int, int]]) -> list[dict[str, Any]]:
        specs = []
        se_modes = sorted({_stage_se(p, i, len(self.stages)) for p in self.se_placements})
        for fam in st.families:
            opts = st.options(fam)
            token_settings = [(None, None)]
            if fam == "former":  # one global token setting: a later former stage inherits it
                token_settings = [(flow.num_tokens, flow.token_dim)] if flow.token_dim else settings
            for width in st.widths:
                for values in itertools.product(*opts.values()):
                    for se in (se_modes if fam in CONV_FAMILIES else ["none"]):
                        for tokens, token_dim in token_settings:
                            specs.append(self.stage_spec(i, fam, max(st.depths), width, dict(zip(opts, values)), se,
                                                         stem_strides, tokens, token_dim))
        return specs

    # ----------------------------------------------------------------- members
    def sample(self, rng: random.Random | int | None = None, families: Sequence[str] | None = None) -> ArchConfig:
        """Uniform over each choice (define-by-run order), reproducible from a seed; with
        `families` (one per stage), a member of that family layout (the families are not drawn,
        so the other choices' draws differ from the unconstrained sample of the same seed)."""
        rng = rng if isinstance(rng, random.Random) else random.Random(rng)
        return self.suggest(_RandomTrial(rng, families))

    def smallest(self, families: Sequence[str] | None = None) -> ArchConfig:
        """The cheapest member; with `families` (one per stage), the cheapest of that family layout."""
        return self.suggest(ExtremeTrial(largest=False, families=families))

    def largest(self, families: Sequence[str] | None = None) -> ArchConfig:
        """The costliest member; with `families` (one per stage), the costliest of that family layout."""
        return self.suggest(ExtremeTrial(largest=True, families=families))

    def widest_shallow(self, families: Sequence[str] | None = None) -> ArchConfig:
        """The costliest member at the smallest depths (stem included): the sandwich corner that
        neither `largest` (deep and wide) nor `smallest` (shallow and narrow) trains."""
        return self.suggest(ExtremeTrial(largest=True, families=families, shallow=True))


def _stage_se(placement: str, index: int, num_stages: int) -> str:
    """Per-stage SE mode of an architecture-level placement ('last' = the last two stages)."""
    if placement == "last":
        return "all" if index >= num_stages - 2 else "none"
    return placement


def _layout_family(name: str, choices: list[Any], families: Sequence[str] | None) -> str | None:
    """The family `families` fixes for parameter `name` (None: not a family parameter, or no layout)."""
    if families is None or name.rsplit(".", 1)[-1] != "family":
        return None
    family = families[int(name[1:].split(".")[0])]
    if family not in choices:
        raise ValueError(f"{name}: {family!r} is not one of {choices}")
    return family


class _RandomTrial:
    def __init__(self, rng: random.Random, families: Sequence[str] | None = None) -> None:
        self.rng = rng
        self.families = families

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        return _layout_family(name, choices, self.families) or self.rng.choice(choices)


class ExtremeTrial:
    """Picks the cheapest (or most expensive) choice of every dimension: an Optuna-trial stand-in
    that `HybridSpace.suggest` turns into the space's smallest or largest member (public so that
    a benchmark can vary the largest member one choice at a time)."""

    _CHEAPEST = {"se": "none", "family": "mv2", "sample_rate": 4, "heads": 2}
    _COSTLIEST = {"se": "all", "family": "repvit", "sample_rate": 1, "heads": 4}

    def __init__(self, largest: bool, families: Sequence[str] | None = None, shallow: bool = False) -> None:
        self.largest = largest
        self.families = families
        self.shallow = shallow  # every depth at its minimum, whatever `largest` says

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        choices = list(choices)
        family = _layout_family(name, choices, self.families)
        if family is not None:
            return family
        key = name.rsplit(".", 1)[-1]
        if key == "depth" and self.shallow:
            return min(choices)
        table = self._COSTLIEST if self.largest else self._CHEAPEST
        if key in table and table[key] in choices:
            return table[key]
        if key == "family":
            return choices[0]
        return max(choices) if self.largest else min(choices)


def default_space(num_classes: int = 1000) -> HybridSpace:
    return HybridSpace(num_classes=num_classes)
