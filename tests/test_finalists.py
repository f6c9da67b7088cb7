"""After the search: finalists spread over the budget, measured latency decides what fits, and a
halving race of real trainings picks the winner on val accuracy."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from nas.search.finalists import Finalist, from_record, pick_finalists, race, rungs, to_record, verify
from search_spaces.presets import PRESETS

SPACE = PRESETS["tiny"](4)


@dataclass(frozen=True)
class Row:
    latency_ms: float
    accuracy: float


def test_finalists_spread_over_the_upper_part_of_the_budget():
    front = [Row(0.1 * i, 0.5 + 0.01 * i) for i in range(1, 11)]  # 0.1..1.0 ms, accuracy rising
    picked = pick_finalists(front, budget_ms=0.95, k=3)
    assert [round(r.latency_ms, 1) for r in picked] == [0.6, 0.8, 0.9]
    few = pick_finalists(front, budget_ms=0.35, k=3, upper=0.9)  # only 0.1..0.3 fit, 0.3 in the upper part
    assert sorted(round(r.latency_ms, 1) for r in few) == [0.1, 0.2, 0.3]


def test_the_race_halves_the_field_and_doubles_the_epochs_to_the_full_recipe():
    assert rungs(4, 4) == [(1, 4), (2, 2), (4, 1)]
    assert rungs(1, 4) == [(4, 1)]
    assert rungs(8, 4) == [(1, 8), (2, 2), (4, 1)]
    assert rungs(3, 1) == [(1, 3)]


def _finalists(n: int) -> tuple[list[Finalist], dict]:
    archs = {a.arch_hash(): a for a in (SPACE.sample(i) for i in range(n))}
    return [Finalist(i, h, 0.5, 1.0) for i, h in enumerate(archs)], archs


def test_verify_prefers_a_measured_fit_over_a_faster_prediction_that_does_not_fit():
    finalists, archs = _finalists(2)
    finalists[0].predicted_ms, finalists[1].predicted_ms = 0.8, 0.9  # the first looks faster ...
    slow = {finalists[0].arch_hash: 1.2, finalists[1].arch_hash: 0.95}  # ... but measures over budget
    saved = []
    fit = verify(finalists, archs, 1.0, lambda a: (slow[a.arch_hash()],) * 3, lambda fs: saved.append(len(fs)))
    assert [f.trial for f in fit] == [1] and finalists[0].fits is False and finalists[0].measured_ms == 1.2
    assert saved == [2, 2]  # every measurement recorded as it came


def test_a_race_resumed_from_its_record_trains_nothing_twice():
    finalists, archs = _finalists(4)
    truth = {h: i / 10 for i, h in enumerate(archs)}
    calls, started = [], []

    def train(arch, until):
        started.append(1)
        if len(started) == 6:
            raise KeyboardInterrupt  # killed during the second rung's second run
        calls.append((arch.arch_hash(), until))  # a run that finished its rung
        return truth[arch.arch_hash()] + until / 100

    with pytest.raises(KeyboardInterrupt):
        race(finalists, archs, 4, train, lambda: None)
    resumed = from_record(to_record(finalists))
    before = len(calls)
    winner = race(resumed, archs, 4, train, lambda: None)
    assert winner.arch_hash == max(truth, key=truth.get)  # the best val accuracy, at the full recipe
    assert len(calls) - before == 2  # the interrupted rung-2 run, then the final rung
    assert len(set(calls)) == len(calls) == 7  # 4 + 2 + 1 runs, none finished twice


def test_choose_keeps_every_measurement_in_the_study_and_resumes_without_measuring_again(tmp_path):
    import optuna

    from nas.search.finalists import FINALISTS_ATTR, Plan, choose
    from nas.search.results import Row

    archs = [SPACE.sample(i) for i in range(6)]
    front = [Row(i, 0.5 + 0.05 * i, 0.5 + 0.1 * i, True, SPACE.encode(a)) for i, a in enumerate(archs)]
    measured = {a.arch_hash(): 0.5 + 0.1 * i + (0.3 if i == 5 else 0.0) for i, a in enumerate(archs)}  # 5 is slow
    calls = []

    def measure(arch):
        calls.append(arch.arch_hash())
        return (measured[arch.arch_hash()],) * 3

    study = optuna.create_study(direction="maximize")
    plan = Plan(k=3, verify=True)
    chosen, record = choose(study, front, SPACE, 1.05, plan, tmp_path, measure=measure)
    assert chosen.number == 4  # the most accurate finalist that measures within budget (5 measures 1.3 ms)
    assert len(calls) == 3 and record["finalists"][-1]["fits"] is False
    assert study.user_attrs[FINALISTS_ATTR]["finalists"] == record["finalists"]
    again, _ = choose(study, front, SPACE, 1.05, plan, tmp_path, measure=measure)
    assert again.number == 4 and len(calls) == 3  # resumed from the study's record
