"""After the search: finalists spread over the budget's upper range, their latency measured end to
end, and a race of real short trainings among them, so that the winner is chosen on what it
measures and learns rather than only on what the table and the predictor say.

- `near_front`: the accuracy/latency front widened by the accuracy signal's error: a member stays
  a candidate unless a faster one is rated more than `margin` above it. A predictor whose
  out-of-fold error is 1.5 points cannot tell a slower member 1 point below the front from the
  front, so only real training (the race) can say whether the slower one is worth its latency;
  the plain front would end where the predictor's favourite lies and never spend the budget.
- `pick_finalists`: the best-rated member, plus K-1 candidates spread evenly in latency over the
  upper part of what the budget lets the search reach (not K near-duplicates of the best).
- `verify`: each finalist timed with ONNX Runtime here (devices that can be measured here); those
  whose measured latency exceeds the budget drop out. Every measurement is kept.
- `race`: successive halving over the finalists with the standalone recipe: every finalist trains
  the first rung (e.g. 1 of 4 epochs, the full recipe's schedule), the better half continues its
  own run to the next rung, the best to the full recipe. Winner: the best val top-1 at the last
  rung (never test). Each run is resumable (the trainer's run folder) and each result is recorded
  in the study (user attribute `finalists`), so a killed refine resumes where it stood.
  Not Optuna's SuccessiveHalvingPruner: it is asynchronous, and with finalists trained one after
  another the first would always run to the end while each later one is judged against the few
  before it; a synchronous halving over a fixed set gives every finalist the same comparison.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nas.arch.schema import ArchConfig
from nas.builder import build_model
from nas.train import Trainer, make_recipe

FINALISTS_ATTR = "finalists"


@dataclass
class Finalist:
    trial: int
    arch_hash: str
    predicted_acc: float
    predicted_ms: float
    measured_ms: float | None = None
    measured_spread_ms: tuple[float, float] | None = None  # p10, p90
    fits: bool | None = None  # measured latency within the budget (None: not measured)
    val_acc: dict[str, float] = field(default_factory=dict)  # epochs reached -> val top-1 there

    def best_rung(self) -> tuple[int, float] | None:
        if not self.val_acc:
            return None
        epochs = max(int(e) for e in self.val_acc)
        return epochs, self.val_acc[str(epochs)]


def near_front(rows: Sequence[Any], margin: float = 0.0) -> list[Any]:
    """Rows within the budget (objects with `.feasible`, `.latency_ms`, `.accuracy`) that no faster
    feasible row beats by more than `margin` in accuracy (epsilon-dominance), fastest first. With
    margin 0 this is the Pareto front."""
    if margin < 0:
        raise ValueError(f"margin: {margin}, expected >= 0")
    out, best = [], float("-inf")
    for row in sorted((r for r in rows if r.feasible), key=lambda r: (r.latency_ms, -r.accuracy)):
        if row.accuracy > best - margin:
            out.append(row)
        best = max(best, row.accuracy)
    return out


def pick_finalists(front: Sequence[Any], budget_ms: float, k: int, upper: float = 0.6) -> list[Any]:
    """`k` rows of the front (objects with `.latency_ms` and `.accuracy`): its most accurate row
    within the budget, and k-1 more spread evenly in latency over [upper x top, top], where top is
    the slowest row that fits (the budget itself when the search reached it; less when the space
    holds nothing that slow). Where that part holds fewer, the most accurate rows below it fill up."""
    if k < 1:
        raise ValueError(f"k: {k}, expected >= 1")
    fitting = sorted((r for r in front if r.latency_ms <= budget_ms), key=lambda r: r.latency_ms)
    if not fitting:
        return []
    best = max(fitting, key=lambda r: (r.accuracy, -r.latency_ms))
    top = fitting[-1].latency_ms
    high = [r for r in fitting if r.latency_ms >= upper * top and r is not best]
    if len(high) <= k - 1:
        rest = sorted((r for r in fitting if r not in high and r is not best), key=lambda r: -r.accuracy)
        return [best] + high + rest[:k - 1 - len(high)]
    picks = sorted({round(i * (len(high) - 1) / (k - 2)) for i in range(k - 1)} if k > 2 else {len(high) - 1})
    return [best] + [high[i] for i in picks]


def rungs(k: int, epochs: int, eta: int = 2) -> list[tuple[int, int]]:
    """(epochs, finalists) per rung of a halving race of k finalists to the full `epochs`: the last
    rung trains 1 to the end, each earlier one eta times as many for 1/eta of the epochs."""
    if k < 1 or epochs < 1 or eta < 2:
        raise ValueError(f"k/epochs/eta: {k}/{epochs}/{eta}, expected >= 1/>= 1/>= 2")
    out = [(epochs, 1)]
    while out[-1][1] < k and out[-1][0] > 1:
        e, n = out[-1]
        out.append((max(1, math.ceil(e / eta)), min(k, n * eta)))
    out.reverse()
    out[0] = (out[0][0], k)  # whatever halving left, the first rung holds every finalist
    return out


def verify(finalists: list[Finalist], archs: dict[str, ArchConfig], budget_ms: float,
           measure: Callable[[ArchConfig], tuple[float, float, float]],
           record: Callable[[list[Finalist]], None]) -> list[Finalist]:
    """Measure each finalist not yet measured (median, p10, p90 ms); the ones that fit the budget."""
    for f in finalists:
        if f.measured_ms is None:
            median, p10, p90 = measure(archs[f.arch_hash])
            f.measured_ms, f.measured_spread_ms, f.fits = round(median, 4), (round(p10, 4), round(p90, 4)), \
                median <= budget_ms
            record(finalists)
    return [f for f in finalists if f.fits]


def race(entrants: list[Finalist], archs: dict[str, ArchConfig], epochs: int,
         train: Callable[[ArchConfig, int], float], record: Callable[[], None], eta: int = 2) -> Finalist:
    """Successive halving; `train(arch, until_epoch)` continues the arch's run of the `epochs`
    recipe to `until_epoch` and returns its val top-1 there. Returns the winner."""
    if not entrants:
        raise ValueError("entrants: no finalist to race")
    alive = list(entrants)
    for until, keep in rungs(len(entrants), epochs, eta):
        alive = alive[:keep]
        for f in alive:
            if str(until) not in f.val_acc:
                f.val_acc[str(until)] = round(train(archs[f.arch_hash], until), 5)
                record()
        alive.sort(key=lambda f: -f.val_acc[str(until)])
    return alive[0]


def to_record(finalists: list[Finalist], **info: Any) -> dict[str, Any]:
    """JSON-able state of the finalists, as kept in the study."""
    return json.loads(json.dumps({**info, "finalists": [asdict(f) for f in finalists]}))


def from_record(record: dict[str, Any]) -> list[Finalist]:
    out = []
    for f in record.get("finalists", []):
        spread = f.get("measured_spread_ms")
        out.append(Finalist(**{**f, "measured_spread_ms": tuple(spread) if spread else None}))
    return out


def run_dir_for(root: Path, arch: ArchConfig, epochs: int, batch_size: int) -> Path:
    """A race run's folder: named by member and recipe alone, so that studies sharing `root`
    (e.g. one output folder, several budgets) train a member they both race once."""
    return root / f"refine-{arch.arch_hash()}-e{epochs}-b{batch_size}"


def train_until(arch: ArchConfig, data: Any, out_dir: Path, epochs: int, until: int, batch_size: int,
                seed: int = 0) -> float:
    """Continue (or start) `arch`'s standalone run of the `epochs`-epoch recipe in `out_dir` up to
    epoch `until`; its val top-1 after that epoch (read back from the run's metrics log, so a run
    that already went further answers too)."""
    recipe = make_recipe(epochs=epochs, resolution=arch.resolution, batch_size=batch_size, seed=seed)
    trainer = Trainer(build_model(arch, seed=seed), data, recipe, out_dir, identity={"arch_hash": arch.arch_hash()},
                      verbose=False)
    trainer.fit(until_epoch=until)
    for line in (out_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "epoch" and rec.get("epoch") == until:
            return float(rec["val_acc"])
    raise ValueError(f"{out_dir}: no val accuracy recorded for epoch {until}")


@dataclass
class Plan:
    """What the finalists stage does after the search (CLI: --verify, --refine K)."""

    k: int = 5
    verify: bool = False  # measure each finalist end to end here; keep the ones within budget
    refine: bool = False  # race the finalists with real training (needs `data`)
    epochs: int = 4  # the race's full recipe (the bench's: 4 epochs, batch 64)
    batch_size: int = 64
    threads: int = 1  # ONNX Runtime threads for the measurement (the table's)
    margin: float = 0.0  # accuracy the signal cannot resolve (the predictor's out-of-fold error); see near_front


def _resume(finalists: list[Finalist], stored: dict[str, Any] | None, plan: Plan, budget_ms: float) -> None:
    """Carry over what an earlier finalists stage of this study established for the same members:
    a measurement taken with the same thread count (a `--verify` run, then `--verify --refine K`,
    measures once), and race results trained with the same recipe (a killed race resumes)."""
    if not stored or stored.get("budget_ms") != budget_ms:
        return
    before = stored.get("plan", {})
    earlier = {f.arch_hash: f for f in from_record(stored)}
    for f in finalists:
        old = earlier.get(f.arch_hash)
        if old is None:
            continue
        if before.get("threads") == plan.threads:
            f.measured_ms, f.measured_spread_ms, f.fits = old.measured_ms, old.measured_spread_ms, old.fits
        if (before.get("epochs"), before.get("batch_size")) == (plan.epochs, plan.batch_size):
            f.val_acc = dict(old.val_acc)


def choose(study: Any, rows: Sequence[Any], space: Any, budget_ms: float, plan: Plan, race_dir: Path,
           data: Any = None, measure: Callable[[ArchConfig], tuple[float, float, float]] | None = None
           ) -> tuple[Any, dict[str, Any]]:
    """Run the finalists stage on the search's rows: finalists from the front (widened by
    `plan.margin` when they race: a race is what tells apart members the signal cannot), race runs
    under `race_dir`. Returns (the winning row, the record kept in the study and in
    finalists.json). Resumes from the study's record: finalists measured or trained before a kill
    are not measured or trained again."""
    rows = pick_finalists(near_front(rows, plan.margin if plan.refine else 0.0), budget_ms, plan.k)
    if not rows:
        raise ValueError(f"front: no member within {budget_ms:g} ms to choose from")
    archs = {space.decode(r.params).arch_hash(): space.decode(r.params) for r in rows}
    info = {"plan": asdict(plan), "budget_ms": budget_ms}
    finalists = [Finalist(r.number, h, round(r.accuracy, 5), round(r.latency_ms, 4)) for r, h in zip(rows, archs)]
    _resume(finalists, study.user_attrs.get(FINALISTS_ATTR), plan, budget_ms)

    def record(_: Any = None) -> None:
        study.set_user_attr(FINALISTS_ATTR, to_record(finalists, **info))

    record()
    entrants = finalists
    if plan.verify:
        if measure is None:
            raise ValueError("measure: verification needs a latency measurement")
        entrants = verify(finalists, archs, budget_ms, measure, record)
        if not entrants:
            raise ValueError(f"finalists: none of the {len(finalists)} measures within {budget_ms:g} ms here")
    entrants = sorted(entrants, key=lambda f: -f.predicted_acc)
    if plan.refine:
        if data is None:
            raise ValueError("data: the race trains the finalists and needs a dataset")
        winner = race(entrants, archs, plan.epochs,
                      lambda arch, until: train_until(arch, data, run_dir_for(race_dir, arch, plan.epochs,
                                                                              plan.batch_size),
                                                      plan.epochs, until, plan.batch_size), record)
    else:
        winner = entrants[0]
    record()
    chosen = next(r for r, h in zip(rows, archs) if h == winner.arch_hash)
    return chosen, {**to_record(finalists, **info), "winner": winner.arch_hash,
                    "chosen_on": "val top-1 of the race" if plan.refine else "predicted accuracy"}
