"""What one search trial does: sample a member, look up its latency, rate its accuracy.

The latency budget is an Optuna constraint (`trial.set_constraint`: feasible when latency - budget
<= 0), which TPE and NSGA-II both use to steer towards the feasible region; random search just
records it. Every trial stores its predicted latency as a user attribute, so the result files and
a resumed study need nothing but the storage. A trial holds every parameter of the space (see
`HybridSpace.suggest_flat`); `space.canonical_params(trial.params)` are the ones its member uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nas.arch.schema import ArchConfig
from nas.search.sources import AccuracySource
from predictors.latency.predict import predict
from predictors.latency.table import LatencyTable
from search_spaces.hybrid import HybridSpace

OBJECTIVES = ("acc", "pareto")


@dataclass
class SearchProblem:
    space: HybridSpace
    table: LatencyTable
    budget_ms: float
    source: AccuracySource
    objective: str = "acc"  # "acc": maximise accuracy s.t. latency <= budget; "pareto": accuracy vs latency

    @property
    def directions(self) -> list[str]:
        return ["maximize"] if self.objective == "acc" else ["maximize", "minimize"]

    def latency_ms(self, arch: ArchConfig) -> float:
        return predict(arch, self.table).ms

    def __call__(self, trial: Any) -> float | tuple[float, float]:
        params = self.space.suggest_flat(trial)
        arch = self.space.decode(params)
        latency = self.latency_ms(arch)
        trial.set_user_attr("latency_ms", latency)
        trial.set_constraint("latency", latency - self.budget_ms)
        accuracy = self.source.rate(arch, params)
        return accuracy if self.objective == "acc" else (accuracy, latency)


def fastest_member(space: HybridSpace, table: LatencyTable, sweeps: int = 4) -> tuple[ArchConfig, float]:
    """The fastest member found by coordinate descent over the space's choices (latency is a sum
    over units, so one-choice moves reach the minimum wherever a choice's cost does not depend on
    the others'), restarted with each stage's family pinned to each of its families, since a
    family switch alone rarely pays before its options are tuned. Used to tell a user with an
    infeasible budget what the space can reach."""
    dims = space.dimensions()
    start = {key: choices[0] for key, choices in dims.items()}
    start.update(space.encode(space.smallest()))
    pins = [None] + [(f"s{i}.family", fam) for i, st in enumerate(space.stages) for fam in st.families]
    best: tuple[ArchConfig, float] | None = None
    for pin in pins:
        params = {**start, **dict([pin] if pin else [])}
        arch = space.decode(params)
        latency = predict(arch, table).ms
        for _ in range(sweeps):
            improved = False
            for key, choices in dims.items():
                if pin and key == pin[0]:
                    continue
                for choice in choices:
                    candidate_params = {**params, key: choice}
                    candidate = space.decode(candidate_params)
                    ms = predict(candidate, table).ms
                    if ms < latency - 1e-9:
                        params, arch, latency, improved = candidate_params, candidate, ms, True
            if not improved:
                break
        if best is None or latency < best[1]:
            best = (arch, latency)
    assert best is not None
    return best
