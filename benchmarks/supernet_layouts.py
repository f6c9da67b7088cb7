"""Why the multi-family supernet learns slowly: early training loss under different per-step layouts.

The supernet trainer draws a family layout (one family per stage) for every step. This measures
what that costs: the same proxy supernet, recipe and data order as benchmarks/supernet_recipe.py
(its first --steps steps, warm-up included), but each step trains only the largest member of a
layout chosen by one rule, and the mean training loss (label-smoothed cross-entropy; chance is
ln 10 = 2.303) is recorded per window of 20 steps:

  fixed            always the space's largest member (all-RepViT);
  fixed-<family>   always the largest member with <family> in both attention stages;
  switch-stages01  a layout drawn per step in stages 0-1 only (2 x 2 layouts), RepViT after;
  switch-stage3    a layout drawn per step in the last stage only (5 layouts);
  switch-all       a layout drawn per step in every stage (100 layouts): the trainer's rule;
  switch-all-ref   as switch-all, but the member learns by distillation from the fixed largest
                   member, trained on the labels in the same step (the trainer's --teacher fixed);
                   the member's own label loss is recorded.

Writes benchmarks/results/supernet_layouts.json and .png.

    python benchmarks/supernet_layouts.py             # about 10 min on 2 cores
    python benchmarks/supernet_layouts.py --steps 20 --rules fixed switch-all   # a quick look
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine  # noqa: E402
from supernet_recipe import BATCH, EPOCHS, SPACE  # noqa: E402

from nas.arch.schema import ArchConfig  # noqa: E402
from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.data import default_data_root, load_dataset, mix_seed  # noqa: E402
from nas.supernet import Supernet, resolve_space  # noqa: E402
from nas.supernet.trainer import Sandwich, SupernetTrainer  # noqa: E402
from nas.train import make_recipe  # noqa: E402
from search_spaces.hybrid import HybridSpace  # noqa: E402

WINDOW = 20
CHANCE_LOSS = math.log(10)  # cross-entropy of a uniform guess over the proxy's 10 classes


def layout_rule(name: str, space: HybridSpace):
    """step -> the one member trained at that step, under rule `name`."""
    stages = space.stages
    if name == "fixed":
        return lambda step: space.largest()
    if name.startswith("fixed-"):
        family = name.removeprefix("fixed-")
        layout = [family if family in st.families else "repvit" for st in stages]
        return lambda step: space.largest(layout)
    name = name.removesuffix("-ref")
    switched = {"switch-stages01": {0, 1}, "switch-stage3": {len(stages) - 1},
                "switch-all": set(range(len(stages)))}[name]

    def member(step: int) -> ArchConfig:
        rng = random.Random(mix_seed(0, step, 0x1A7))
        return space.largest([rng.choice(st.families) if i in switched else "repvit" for i, st in enumerate(stages)])
    return member


RULES = ("fixed", "fixed-mobilevit", "fixed-lgl", "fixed-levit", "fixed-former", "switch-stages01",
         "switch-stage3", "switch-all", "switch-all-ref")


class _Done(Exception):
    pass


class LayoutProbe(SupernetTrainer):
    """The supernet trainer's engine and losses, one member per step chosen by `rule` (after the
    fixed reference member when `referenced`), stopping after `steps` steps; records the rule's
    member's label loss."""

    def __init__(self, *args, rule, steps: int, referenced: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rule, self.steps, self.referenced, self.losses = rule, steps, referenced, []

    def step_members(self, step: int) -> list[ArchConfig]:
        if step >= self.steps:
            raise _Done
        return ([self.supernet.space.largest()] if self.referenced else []) + [self.rule(step)]

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().training_step(images, labels)
        self.losses.append(float(self.step_ce[-1]))
        return loss


def probe(rule: str, space: HybridSpace, data, steps: int, seed: int) -> list[float]:
    """Mean loss per WINDOW steps of the first `steps` steps under `rule`."""
    recipe = make_recipe(epochs=EPOCHS, resolution=max(space.resolutions), batch_size=BATCH, seed=seed)
    trainer = LayoutProbe(Supernet(space, seed=seed), data, recipe, None, sandwich=Sandwich(num_random=0),
                          rule=layout_rule(rule, space), steps=steps, referenced=rule.endswith("-ref"),
                          verbose=False)
    try:
        trainer.fit()
    except _Done:
        pass
    losses = trainer.losses
    return [round(sum(losses[i:i + WINDOW]) / len(losses[i:i + WINDOW]), 4) for i in range(0, len(losses), WINDOW)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "supernet_layouts.json"))
    args = p.parse_args()
    data = load_dataset(args.data)
    space = resolve_space(SPACE, data.num_classes)
    curves, seconds = {}, {}
    for rule in args.rules:
        tic = time.perf_counter()
        curves[rule] = probe(rule, space, data, args.steps, args.seed)
        seconds[rule] = round(time.perf_counter() - tic, 1)
        print(f"{rule:16s} loss per {WINDOW} steps: {curves[rule]}  ({seconds[rule]:.0f} s)")
    report = {"steps": args.steps, "window": WINDOW, "chance_loss": round(CHANCE_LOSS, 4),
              "space": SPACE, "batch_size": BATCH, "schedule_epochs": EPOCHS, "seed": args.seed,
              "final_window_loss": {r: c[-1] for r, c in curves.items()}, "curves": curves, "seconds": seconds,
              "data": data.describe(),
              "machine": machine()}
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    _plot(curves, out.with_suffix(".png"))
    print(f"-> {out}")
    return 0


def _plot(curves: dict[str, list[float]], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for rule, curve in curves.items():
        ax.plot([WINDOW * (i + 1) for i in range(len(curve))], curve, marker="o", label=rule,
                linestyle="-" if rule.startswith("switch") else "--")
    ax.axhline(CHANCE_LOSS, color="grey", linewidth=0.8)
    ax.set(xlabel="step", ylabel=f"mean training loss (per {WINDOW} steps)",
           title="largest member's loss: fixed vs per-step family layouts")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


if __name__ == "__main__":
    sys.exit(main())
