"""After the search: finalists spread over the budget, measured latency decides what fits, and a
halving race of real trainings picks the winner on val accuracy."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from nas.search.finalists import Finalist, from_record, near_front, pick_finalists, race, rungs, to_record, verify
from search_spaces.presets import PRESETS

SPACE = PRESETS["tiny"](4)


@dataclass(frozen=True)
class Row:
    latency_ms: float
    accuracy: float


def test_finalists_are_the_best_rated_row_and_a_spread_over_the_upper_part_of_the_budget():
    front = [Row(0.1 * i, 0.5 + 0.01 * i) for i in range(1, 11)]  # 0.1..1.0 ms, accuracy rising
    picked = pick_finalists(front, budget_ms=0.95, k=3)  # 0.9 fits and is the best; 0.6..0.8 spread
    assert [round(r.latency_ms, 1) for r in picked] == [0.9, 0.6, 0.8]
    few = pick_finalists(front, budget_ms=0.35, k=3, upper=0.9)  # only 0.1..0.3 fit, 0.3 in the upper part
    assert sorted(round(r.latency_ms, 1) for r in few) == [0.1, 0.2, 0.3]


def test_the_upper_part_is_that_of_what_the_search_reached_when_the_budget_is_out_of_reach():
    front = [Row(0.1 * i, 0.5 + 0.01 * i) for i in range(1, 11)]  # nothing slower than 1.0 ms exists
    picked = pick_finalists(front, budget_ms=5.0, k=3)
    assert [round(r.latency_ms, 1) for r in picked] == [1.0, 0.6, 0.9]  # not 3 fallbacks below 3 ms


@dataclass(frozen=True)
class Trial:
    latency_ms: float
    accuracy: float
    feasible: bool = True


def test_the_near_front_keeps_slower_members_the_signal_cannot_tell_from_the_front():
    rows = [Trial(0.2, 0.66), Trial(0.3, 0.67), Trial(0.5, 0.66), Trial(0.6, 0.64), Trial(0.8, 0.66),
            Trial(0.4, 0.70, feasible=False)]
    assert [r.latency_ms for r in near_front(rows)] == [0.2, 0.3]  # margin 0: the Pareto front
    # within 1.5 points of every faster row: 0.5 and 0.8 stay; 0.6 is 3 points below 0.3's 67%
    assert [r.latency_ms for r in near_front(rows, margin=0.015)] == [0.2, 0.3, 0.5, 0.8]
    with pytest.raises(ValueError, match="margin"):
        near_front(rows, margin=-0.01)


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
    assert len(calls) == 3 and next(f for f in record["finalists"] if f["trial"] == 5)["fits"] is False
    assert study.user_attrs[FINALISTS_ATTR]["finalists"] == record["finalists"]
    again, _ = choose(study, front, SPACE, 1.05, plan, tmp_path, measure=measure)
    assert again.number == 4 and len(calls) == 3  # resumed from the study's record
    other_threads, _ = choose(study, front, SPACE, 1.05, Plan(k=3, verify=True, threads=2), tmp_path, measure=measure)
    assert len(calls) == 6  # a measurement at another thread count is not the same measurement


def test_a_refine_after_a_verify_on_the_same_study_measures_nothing_again(tmp_path):
    import optuna

    from nas.search.finalists import Plan, choose
    from nas.search.results import Row

    archs = [SPACE.sample(i) for i in range(4)]
    front = [Row(i, 0.5 + 0.05 * i, 0.5 + 0.1 * i, True, SPACE.encode(a)) for i, a in enumerate(archs)]
    calls = []

    def measure(arch):
        calls.append(arch.arch_hash())
        return (0.6,) * 3

    study = optuna.create_study(direction="maximize")
    choose(study, front, SPACE, 1.0, Plan(k=3, verify=True), tmp_path, measure=measure)
    assert len(calls) == 3
    trained = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr("nas.search.finalists.train_until",
                   lambda arch, data, out, epochs, until, batch: trained.append(until) or 0.1 * until)
    try:
        _, record = choose(study, front, SPACE, 1.0, Plan(k=3, verify=True, refine=True), tmp_path,
                           data=object(), measure=measure)
    finally:
        monkey.undo()
    assert len(calls) == 3 and sorted(trained) == [1, 1, 1, 2, 2, 4]
    assert all(f["measured_ms"] == 0.6 for f in record["finalists"])


# ------------------------------------------------------------------ nas search --refine / --verify, end to end
def _search_env(tmp_path):
    import os
    import random

    from fakes import fake_npz_dataset, fake_table

    from predictors.accuracy.model import fit_predictor
    from predictors.latency.table import save_table

    data = fake_npz_dataset(tmp_path / "data")
    archs = [SPACE.sample(i) for i in range(30)]
    fit_predictor(SPACE, archs, [random.Random(i).random() for i in range(30)], kind="ridge",
                  info={"metric": "synthetic"}).save(tmp_path / "p.json")
    (tmp_path / "tables").mkdir()
    units = {u.key: u for r in SPACE.resolutions for u in SPACE.units(r)}
    save_table(fake_table(units.values(), list(SPACE.resolutions)), tmp_path / "tables" / "host.json")
    return data, {**os.environ, "HYBRID_NAS_TABLES": str(tmp_path / "tables"), "OMP_NUM_THREADS": "1"}


def test_refine_resumes_after_kill_9_without_retraining_finished_runs(tmp_path):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    data, env = _search_env(tmp_path)
    cmd = [sys.executable, "-m", "nas.cli.main", "search", "--budget", "10s", "--device", "host", "--predictor",
           str(tmp_path / "p.json"), "--trials", "30", "--refine", "3", "--refine-epochs", "2",
           "--refine-batch-size", "16", "--data", str(data), "--out", str(tmp_path / "runs"), "--study", "s",
           "--quiet"]
    refine = tmp_path / "runs" / "refine"  # the output folder's: shared by its studies

    def recorded() -> dict[str, dict[str, float]]:
        """The rungs the study holds as finished (recorded only after the run's checkpoint)."""
        import optuna

        from nas.search.finalists import FINALISTS_ATTR
        from nas.search.storage import default_url, open_storage

        if not (tmp_path / "runs" / "s").exists():
            return {}
        try:
            study = optuna.load_study(study_name="s", storage=open_storage(default_url(tmp_path / "runs" / "s")))
        except Exception:  # not created yet
            return {}
        return {f["arch_hash"]: f["val_acc"] for f in study.user_attrs.get(FINALISTS_ATTR, {}).get("finalists", [])
                if f["val_acc"]}

    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while len(recorded()) < 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = recorded()
    assert before, "the race had not finished a rung before the kill"
    logs = {h: (refine / f"refine-{h}-e2-b16" / "metrics.jsonl").read_text().splitlines()[0] for h in before}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "runs" / "s" / "finalists.json").read_text())
    assert [len(f["val_acc"]) for f in record["finalists"]].count(2) == 1  # one finalist ran the full recipe
    after = {f["arch_hash"]: f["val_acc"] for f in record["finalists"]}
    for h, vals in before.items():  # a finished rung is kept as it was, its run not started again
        assert {e: after[h][e] for e in vals} == vals
        assert (refine / f"refine-{h}-e2-b16" / "metrics.jsonl").read_text().splitlines()[0] == logs[h]
    best = json.loads((tmp_path / "runs" / "s" / "best.json").read_text())
    assert best["meta"]["search"]["finalists"]["winner"] == record["winner"]
    assert record["chosen_on"] == "val top-1 of the race"


def test_verify_is_refused_for_an_estimated_phone_table(run_cli, tmp_path):
    code, _, err = run_cli("search", "--budget", "1ms", "--device", "pixel6", "--verify", "--out", tmp_path)
    assert code == 2 and "--verify" in err and "estimate" in err
    code, _, err = run_cli("search", "--budget", "1ms", "--device", "pixel6", "--refine", "3", "--out", tmp_path)
    assert code == 2 and "--data" in err


def test_studies_under_one_output_folder_race_a_shared_member_once(tmp_path):
    import subprocess
    import sys

    data, env = _search_env(tmp_path)

    def search(study: str, budget: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nas.cli.main", "search", "--budget", budget, "--device", "host",
                               "--predictor", str(tmp_path / "p.json"), "--trials", "30", "--refine", "2",
                               "--refine-epochs", "1", "--refine-batch-size", "16", "--data", str(data),
                               "--out", str(tmp_path / "runs"), "--study", study, "--quiet"],
                              env=env, capture_output=True, text=True, timeout=600)

    assert search("a", "10s").returncode == 0
    runs = sorted((tmp_path / "runs" / "refine").iterdir())
    logs = {r.name: (r / "metrics.jsonl").read_text() for r in runs}
    second = search("b", "20s")  # a budget neither study reaches: the same trials, the same finalists
    assert second.returncode == 0, second.stderr
    assert sorted(r.name for r in (tmp_path / "runs" / "refine").iterdir()) == [r.name for r in runs]
    assert {r.name: (r / "metrics.jsonl").read_text() for r in runs} == logs  # nothing trained again
