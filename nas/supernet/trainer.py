"""Supernet training: the sandwich rule with in-place distillation, on the standalone engine.

Everything but the per-batch rule is nas.train.Trainer's (AdamW + warmup-cosine, clipping,
label smoothing, metrics.jsonl + curves.png, atomic checkpoints with RNG and data position,
exact resume, DDP under torchrun). Per batch (BigNAS, Yu et al. 2020):

  1. the largest member, on the labels (cross-entropy with label smoothing);
  2. the smallest member and `num_random` uniform samples of the space, each distilled from the
     largest member's soft predictions on the same batch (KL, teacher detached: "in-place
     distillation", no separate teacher network); with kd_weight < 1, that share of the loss is
     the labels' cross-entropy instead (0: no distillation);

each backward accumulating into the shared weights, then one optimizer step. The members of a step
are a pure function of (seed, step), the same on every rank and after a resume.

"Largest" and "smallest" are those of a family layout (one family per stage) drawn afresh each
step. With the space's single largest/smallest member, both all-RepViT, the attention families
were trained only when a random member happened to pick them: in the first run of the 10-epoch
recipe (benchmarks/supernet_study.py, before this change) random members scored 23-30% with
inherited weights against 55-62% for the two extremes.

With teacher="fixed", every step starts with the space's largest member, whose family layout
never changes (all-RepViT): it alone learns from the labels and teaches the step's other members
(the layout's largest and smallest, the random ones). Why: with the teacher's layout drawn per step
(the default, "layout"), the teacher is itself a different, barely trained network at every step;
a drawn layout's label loss after 400 steps is 1.96 taught by the fixed member, 2.16 alone
(benchmarks/results/supernet_layouts_ref.json). It costs one member more per step; over the
10-epoch recipe it lifts the teacher (59.7% vs 36.4% val) but not the other members' ranking
(README, Supernet).

With corners="shallow", each step also trains the drawn layout's widest member at the smallest
depths (stem included), distilled like the others. Why: BigNAS's two extremes are deep-and-wide and
shallow-and-narrow; the trained supernets rate "the largest with one stage (or the stem) at its
smallest depth" up to 32 points below the largest (benchmarks/results/supernet_dims_*.json),
while short standalone training favours shallow, wide networks. Measured over the 10-epoch recipe
with per-depth stems: stage 2 at depth 1 then costs nothing, a depth-1 stem 3 points, but the
members' ranking does not improve (README, Supernet).

With sampling="complexity" (ElasticViT, Tang et al. 2023: complexity-aware sampling), the
step's students are drawn within one MACs band of the space (bands: quantiles of a random pool),
and the band walks up and down one level per step, so consecutive steps never jump between the
space's smallest and largest networks: the teacher stays the drawn layout's largest member, the
smallest member is left out (it belongs to the lowest band only). Why: the weights shared by
members of very different size receive conflicting gradients from one step to the next (the
cause ElasticViT gives for hybrid supernets ranking poorly); bounded steps reduce that conflict.

Resolution: the loader yields the batch at the space's largest resolution; each member sees it
resized to its own resolution (members are trained as they will be evaluated).

The logged loss is the largest member's; the epoch's validation accuracy is the largest member's
with recalibrated BatchNorm.
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nas.arch.schema import ArchConfig
from nas.atomic import atomic_write
from nas.data import Dataset, Split, mix_seed
from nas.errors import ParameterError, UserError
from nas.supernet.evaluate import (
    calibration_batches,
    epoch_snapshot,
    evaluate_model,
    fit_resolution,
    recalibrate_bn,
    supernet_file,
)
from nas.supernet.supernet import Supernet
from nas.train import Recipe, Trainer
from nas.train.losses import classification_loss
from predictors.accuracy.features import UnitCounts

TEACHERS = ("layout", "fixed")
CORNERS = ("none", "shallow")
SAMPLINGS = ("uniform", "complexity")


@dataclass(frozen=True)
class Sandwich:
    """The per-step rule's own settings (recorded in run.json: resuming requires the same)."""

    num_random: int = 2
    kd_temperature: float = 1.0
    kd_weight: float = 1.0  # students' loss: this much distillation, the rest cross-entropy on the labels
    teacher: str = "layout"  # "layout": the drawn layout's largest member; "fixed": the space's (module doc)
    corners: str = "none"  # "shallow": the drawn layout's widest member at the smallest depths too (module doc)
    calib_batches: int = 4  # BN recalibration batches for the epoch-end validation
    sampling: str = "uniform"  # "complexity": students within a MACs band that moves one level a step
    levels: int = 4  # MACs bands for sampling="complexity"

    def __post_init__(self) -> None:
        if self.num_random < 0:
            raise ParameterError("num_random", f" {self.num_random}: expected >= 0")
        if self.kd_temperature <= 0:
            raise ParameterError("kd_temperature", f" {self.kd_temperature}: expected > 0")
        if not 0 <= self.kd_weight <= 1:
            raise ParameterError("kd_weight", f" {self.kd_weight}: expected 0..1")
        if self.teacher not in TEACHERS:
            raise ParameterError("teacher", f" {self.teacher!r}: expected one of {', '.join(TEACHERS)}")
        if self.corners not in CORNERS:
            raise ParameterError("corners", f" {self.corners!r}: expected one of {', '.join(CORNERS)}")
        if self.calib_batches < 1:
            raise ParameterError("calib_batches", f" {self.calib_batches}: expected >= 1")
        if self.sampling not in SAMPLINGS:
            raise ParameterError("sampling", f" {self.sampling!r}: expected one of {', '.join(SAMPLINGS)}")
        if self.levels < 2:
            raise ParameterError("levels", f" {self.levels}: expected >= 2")


class SupernetTrainer(Trainer):
    find_unused_parameters = True  # each member uses a part of the supernet's weights

    def __init__(self, supernet: Supernet, data: Dataset, recipe: Recipe, out_dir: str | Path | None = None,
                 *, sandwich: Sandwich = Sandwich(), identity: dict[str, Any] | None = None,
                 keep_epochs: bool = False, **kwargs: Any) -> None:
        if recipe.resolution != max(supernet.space.resolutions):
            raise UserError(f"recipe resolution {recipe.resolution}: the supernet trainer loads batches at "
                            f"the space's largest resolution ({max(supernet.space.resolutions)})")
        if supernet.space.num_classes != data.num_classes:
            raise UserError(f"space has {supernet.space.num_classes} classes, the data {data.num_classes}")
        identity = {"supernet": supernet.describe(), "sandwich": asdict(sandwich), **(identity or {})}
        super().__init__(supernet, data, recipe, out_dir, identity=identity, **kwargs)
        self.supernet = supernet
        self.sandwich = sandwich
        self.keep_epochs = keep_epochs  # not part of the run's identity: it changes what is kept, not trained
        self._calibration: list[torch.Tensor] | None = None
        self.step_ce: list[torch.Tensor] = []  # each member's label cross-entropy at the last step (diagnostics)
        self._bands = complexity_bands(supernet.space, sandwich.levels, recipe.seed) \
            if sandwich.sampling == "complexity" else None

    def step_members(self, step: int) -> list[ArchConfig]:
        """[largest, smallest, (widest shallow,) random...] for optimizer step `step` (same on
        every rank): the extremes of a family layout drawn for the step, so every family has its
        own sandwich; with the fixed teacher, the space's largest member before them."""
        space = self.supernet.space
        rng = random.Random(mix_seed(self.recipe.seed, step, 0x5A4D))
        layout = [rng.choice(st.families) for st in space.stages]
        if self._bands is not None:
            low, high = self._bands.band(step)
            return [space.largest(layout)] + [self._bands.draw(space, rng, low, high)
                                              for _ in range(self.sandwich.num_random + 1)]
        members = [space.largest(layout), space.smallest(layout)] + \
            ([space.widest_shallow(layout)] if self.sandwich.corners == "shallow" else []) + \
            [space.sample(rng) for _ in range(self.sandwich.num_random)]
        return ([space.largest()] if self.sandwich.teacher == "fixed" else []) + members

    def on_epoch_saved(self) -> None:
        """With keep_epochs: the weights at this epoch's end as epochs/supernet-eNNN.pt (supernet.pt's
        format), so that how the supernet's rankings evolve with training can be measured afterwards."""
        if self.keep_epochs and self.out_dir is not None:
            state = supernet_file(self.supernet)
            atomic_write(epoch_snapshot(self.out_dir, self.epoch), lambda tmp: torch.save(state, tmp))

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        teacher: torch.Tensor | None = None
        logged = torch.zeros(())
        self.step_ce = []
        for arch in self.step_members(self.step):
            arch = self.supernet.set_active(arch)
            logits = self.model(fit_resolution(images, arch.resolution))
            ce = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
            self.step_ce.append(ce.detach())
            if teacher is None:
                loss = ce
                teacher, logged = logits.detach(), ce.detach()
            else:
                loss = classification_loss(logits, labels, self.recipe.label_smoothing, teacher,
                                           self.sandwich.kd_weight, self.sandwich.kd_temperature)
            loss.backward()
        return logged

    @torch.no_grad()
    def evaluate(self, split: Split, resolution: int | None = None) -> dict[str, float]:
        """The largest member's accuracy with inherited weights and recalibrated BatchNorm."""
        return self.evaluate_member(self.supernet.space.largest(), split)

    @torch.no_grad()
    def evaluate_member(self, arch: ArchConfig, split: Split) -> dict[str, float]:
        self._sync_buffers()  # every rank extracts the same member
        if self._calibration is None:
            self._calibration = calibration_batches(self.data.train, self.sandwich.calib_batches,
                                                    self.recipe.batch_size)
        arch = self.supernet.member(arch)
        model = recalibrate_bn(self.supernet.extract(arch), self._calibration, arch.resolution)
        return evaluate_model(model, split, arch.resolution, self.recipe.batch_size, self.dist)


class ComplexityBands:
    """MACs bands of a space (quantiles of a random pool) and the band of each training step."""

    def __init__(self, edges: list[float], counts: UnitCounts) -> None:
        self.edges, self.counts = edges, counts

    @property
    def levels(self) -> int:
        return len(self.edges) - 1

    def band(self, step: int) -> tuple[float, float]:
        """A triangle wave over the levels (0, 1, .., L-1, L-2, .., 1, 0, 1, ..): one level per step."""
        period = 2 * (self.levels - 1)
        k = step % period
        level = k if k < self.levels else period - k
        return self.edges[level], self.edges[level + 1]

    def draw(self, space: Any, rng: random.Random, low: float, high: float, tries: int = 64) -> ArchConfig:
        """A uniform member whose MACs lie in [low, high] (rejection sampling; after `tries` draws,
        the one closest to the band)."""
        best, best_gap = None, float("inf")
        for _ in range(tries):
            arch = space.sample(rng)
            macs = self.counts.arch(arch)[1]
            gap = max(low - macs, macs - high, 0.0)
            if gap == 0.0:
                return arch
            if gap < best_gap:
                best, best_gap = arch, gap
        return best


def complexity_bands(space: Any, levels: int, seed: int, pool: int = 256) -> ComplexityBands:
    """`levels` bands of equal share of a random pool of `pool` members, from its least to its
    most MACs (the same for a seed, so a resumed run draws the same students)."""
    counts = UnitCounts()
    rng = random.Random(mix_seed(seed, 0xC0B1))
    macs = sorted(counts.arch(space.sample(rng))[1] for _ in range(pool))
    edges = [float(macs[0])] + [float(macs[round(len(macs) * k / levels)]) for k in range(1, levels)] + \
        [float(macs[-1])]
    return ComplexityBands(edges, counts)
