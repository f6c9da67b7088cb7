"""`nas search`: a latency-constrained Optuna search whose study can be resumed, shared and inspected.

The space is the tiny test space, latencies come from a made-up host table over all its units,
accuracy from a predictor fitted on a synthetic, learnable target (wider is better).
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from fakes import fake_table
from optuna.trial import TrialState
from test_data import REAL, write_subset

from nas.arch import load_arch
from nas.search.problem import fastest_member
from nas.search.storage import WORKER_ATTR, open_storage
from predictors.accuracy.model import fit_predictor
from predictors.latency.predict import predict
from predictors.latency.table import save_table
from search_spaces.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]


def synthetic_accuracy(arch) -> float:
    """Learnable and latency-correlated: more channels, more accuracy."""
    return 0.2 + 0.002 * sum(s.width * s.depth for s in arch.stages) + 0.01 * (arch.resolution == 48)


@pytest.fixture(scope="module")
def space():
    return PRESETS["tiny"](10)


@pytest.fixture(scope="module")
def assets(space, tmp_path_factory):
    """(tables folder with a host table over the whole tiny space, predictor file)."""
    folder = tmp_path_factory.mktemp("assets")
    units = {u.key: u for r in space.resolutions for u in space.units(r)}
    save_table(fake_table(units.values(), list(space.resolutions)), folder / "tables" / "host.json")
    archs = [space.sample(i) for i in range(60)]
    predictor = fit_predictor(space, archs, [synthetic_accuracy(a) for a in archs], kind="ridge",
                              info={"metric": "synthetic"})
    predictor.save(folder / "predictor.json")
    return folder / "tables", folder / "predictor.json"


@pytest.fixture
def env(assets, monkeypatch, tmp_path):
    tables, predictor = assets
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(tables))
    return predictor, tmp_path / "runs"


def _latency_range(space, tables):
    from predictors.latency.table import load_table

    table = load_table(tables / "host.json")
    lat = sorted(predict(space.sample(i), table).ms for i in range(200))
    return table, lat


@pytest.fixture
def budget(space, assets) -> str:
    """A budget that about a third of random members meet."""
    _, lat = _latency_range(space, assets[0])
    return f"{lat[len(lat) // 3] * 1000:.1f}us"


def _search(run_cli, predictor, out, budget, *extra):
    return run_cli("search", "--budget", budget, "--device", "host", "--predictor", predictor, "--out", out,
                   "--quiet", *extra)


def _typed(space, row: dict[str, str]) -> dict:
    """A trials.csv row's parameters with their choices' types back."""
    return {k: next(c for c in space.dimensions()[k] if str(c) == v) for k, v in row.items()}


def _study(out: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(f"journal:{out / name / 'study.journal'}"))


# ------------------------------------------------------------------ a search and its files
def test_search_writes_a_best_arch_within_budget_and_every_result_file(env, run_cli, budget, space):
    predictor, out = env
    code, stdout, err = _search(run_cli, predictor, out, budget, "--trials", "40", "--study", "s")
    assert code == 0, err
    run = out / "s"
    for name in ("best.json", "pareto.json", "trials.csv", "pareto.png", "report.md", "study.journal"):
        assert (run / name).stat().st_size > 0, name
    best = load_arch(run / "best.json")
    meta = best.meta["search"]
    assert meta["latency_ms"] <= meta["budget_ms"] and meta["device"] == "host" and meta["latency_kind"] == "measured"
    assert meta["accuracy_source"]["kind"] == "predictor" and len(meta["latency_table"]["sha256"]) == 64
    assert space.contains(best)[0]
    rows = list(csv.DictReader((run / "trials.csv").open()))
    assert len(rows) == 40 and all(r["state"] == "COMPLETE" for r in rows)
    params = [{k: v for k, v in r.items() if k in space.dimensions() and v != ""} for r in rows]
    assert all(set(p) == set(space.canonical_params(_typed(space, p))) for p in params)  # unused ones blank
    feasible = [r for r in rows if r["feasible"] == "True"]
    assert float(meta["accuracy"]) == pytest.approx(max(float(r["accuracy"]) for r in feasible), abs=1e-5)
    front = json.loads((run / "pareto.json").read_text())
    assert front and all(p["latency_ms"] <= meta["budget_ms"] for p in front)
    assert all(a["accuracy"] < b["accuracy"] and a["latency_ms"] <= b["latency_ms"] for a, b in zip(front, front[1:]))
    assert "top architectures" in stdout and "best.json" in (run / "report.md").read_text()

    # best.json is accepted as-is by the other commands
    assert run_cli("describe", run / "best.json")[0] == 0
    code, stdout, _ = run_cli("latency", "predict", run / "best.json", "--device", "host", "--json")
    assert code == 0 and json.loads(stdout)["ms"] == pytest.approx(meta["latency_ms"], abs=1e-3)
    assert run_cli("export", run / "best.json", "--onnx", run / "best.onnx")[0] == 0


def test_running_the_same_command_again_resumes_the_study(env, run_cli, budget):
    predictor, out = env
    assert _search(run_cli, predictor, out, budget, "--trials", "15", "--study", "r")[0] == 0
    first = {t.number: (t.params, t.values) for t in _study(out, "r").trials}
    assert _search(run_cli, predictor, out, budget, "--trials", "15", "--study", "r")[0] == 0
    assert len(_study(out, "r").trials) == 15  # complete: nothing more runs
    assert _search(run_cli, predictor, out, budget, "--trials", "25", "--study", "r")[0] == 0
    trials = _study(out, "r").trials
    assert [t.number for t in trials] == list(range(25)) and all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.number: (t.params, t.values) for t in trials[:15]} == first


def test_resuming_with_other_settings_is_refused(env, run_cli, budget):
    predictor, out = env
    assert _search(run_cli, predictor, out, budget, "--trials", "5", "--study", "x")[0] == 0
    code, _, err = _search(run_cli, predictor, out, "1s", "--trials", "5", "--study", "x")
    assert code == 2 and "budget_ms" in err and err.count("\n") == 1


@pytest.mark.parametrize("sampler,objective", [("nsga2", "pareto"), ("random", "acc"), ("tpe", "pareto")])
def test_other_samplers_and_the_pareto_objective(env, run_cli, budget, sampler, objective):
    predictor, out = env
    code, _, err = _search(run_cli, predictor, out, budget, "--trials", "25", "--sampler", sampler,
                           "--objective", objective, "--study", f"{sampler}-{objective}")
    assert code == 0, err
    study = _study(out, f"{sampler}-{objective}")
    assert (out / f"{sampler}-{objective}" / "pareto.json").exists()
    assert len(study.directions) == (2 if objective == "pareto" else 1)
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 25


def test_in_memory_storage_writes_the_results_but_no_study_file(env, run_cli, budget):
    predictor, out = env
    assert _search(run_cli, predictor, out, budget, "--trials", "10", "--study", "m", "--storage", "memory")[0] == 0
    assert (out / "m" / "best.json").exists() and not (out / "m" / "study.journal").exists()


def test_tpe_beats_its_own_random_start_within_budget(env, run_cli, budget):
    """Constraint-aware TPE keeps proposing feasible members after its random start-up trials."""
    predictor, out = env
    assert _search(run_cli, predictor, out, budget, "--trials", "80", "--study", "t")[0] == 0
    trials = _study(out, "t").trials
    limit = float(budget[:-2]) / 1000
    early = sum(t.user_attrs["latency_ms"] <= limit for t in trials[:20]) / 20
    late = sum(t.user_attrs["latency_ms"] <= limit for t in trials[40:]) / 40
    assert late > early


# ------------------------------------------------------------------ bad input: one line, exit 2, nothing written
@pytest.mark.parametrize("args,fragment", [
    (["--budget", "1xs"], "--budget"),
    (["--budget", "-1ms"], "--budget"),
    (["--budget", "0ms"], "--budget"),
    (["--budget", ""], "--budget"),
    (["--budget", "1ms", "--device", "nokia3310"], "unknown device"),
    (["--budget", "1ms", "--sampler", "cmaes"], "--sampler"),
    (["--budget", "1ms", "--objective", "speed"], "--objective"),
    (["--budget", "1ms", "--predictor", "missing.json"], "predictor file not found"),
    (["--budget", "1ms", "--storage", "sqlite:////no/such/folder/x.db"], "--storage"),
    (["--budget", "1ms", "--storage", "postgresql://nobody@127.0.0.1:9/nas"], "--storage"),
    (["--budget", "1ms", "--storage", "not a url"], "--storage"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(env, run_cli, args, fragment, tmp_path):
    predictor, out = env
    if "--predictor" not in args:
        args = [*args, "--predictor", str(predictor)]
    code, _, err = run_cli("search", "--device", "host", "--out", out, "--quiet", "--trials", "3", *args)
    assert code == 2 and fragment in err and err.count("\n") == 1, err
    assert not out.exists() or not any(out.iterdir())


def test_unreadable_predictor_is_a_clear_error(env, run_cli, tmp_path):
    _, out = env
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "hybrid-nas/accuracy-predictor/v1", "space": {}, "members": [[{"weight": 1}]]')
    code, _, err = run_cli("search", "--budget", "1ms", "--device", "host", "--predictor", bad, "--out", out)
    assert code == 2 and str(bad) in err and err.count("\n") == 1


def test_an_infeasible_budget_names_the_fastest_member(env, run_cli, space, assets):
    predictor, out = env
    table, lat = _latency_range(space, assets[0])
    arch, fastest = fastest_member(space, table)
    assert fastest <= lat[0] + 1e-9  # at least as fast as any of 200 random members
    code, _, err = _search(run_cli, predictor, out, f"{fastest * 0.9:.6f}ms", "--trials", "3")
    assert code == 2 and f"{fastest:.3f} ms" in err and "fastest member" in err and err.count("\n") == 1
    assert not out.exists()


# ------------------------------------------------------------------ processes: kill -9, two workers
def _worker(predictor: Path, out: Path, budget: str, trials: int, study: str, storage: str | None = None,
            tables: Path | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "nas.cli.main", "search", "--budget", budget, "--device", "host", "--predictor",
           str(predictor), "--out", str(out), "--quiet", "--trials", str(trials), "--study", study]
    if storage:
        cmd += ["--storage", storage]
    env = {**os.environ, "HYBRID_NAS_TABLES": str(tables)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _complete(journal: Path, study: str) -> int:
    """COMPLETE trials so far; 0 until the worker has created the journal and the study in it."""
    if not journal.exists():
        return 0
    try:
        loaded = optuna.load_study(study_name=study, storage=open_storage(f"journal:{journal}"))
    except KeyError:  # the journal exists but holds no study yet
        return 0
    return len(loaded.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def test_kill_9_mid_search_then_rerun_continues_with_completed_trials_intact(env, assets, budget):
    predictor, out = env
    journal = out / "k" / "study.journal"
    proc = _worker(predictor, out, budget, 5000, "k", tables=assets[0])
    deadline = time.time() + 120
    while _complete(journal, "k") < 30 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {t.number: (t.params, t.values) for t in _study(out, "k").get_trials(states=(TrialState.COMPLETE,))}
    assert len(before) >= 30
    target = max(before) + 20
    proc = _worker(predictor, out, budget, target, "k", tables=assets[0])
    assert proc.wait(timeout=300) == 0, proc.stderr.read()
    study = _study(out, "k")
    after = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(after) == target
    assert {t.number: (t.params, t.values) for t in after if t.number in before} == before
    assert not study.get_trials(states=(TrialState.RUNNING,))  # the killed worker's trial was failed
    numbers = [t.number for t in study.trials]
    assert numbers == list(range(len(numbers)))


def test_every_trial_names_its_worker_from_the_journal_write_that_creates_it(env, run_cli, budget):
    """A kill between creating a trial and naming its worker would leave a RUNNING trial that no
    worker can tell is dead, holding one of --trials forever: so no trial is ever created unnamed."""
    from optuna.storages.journal._storage import JournalOperation

    predictor, out = env
    assert _search(run_cli, predictor, out, budget, "--trials", "12", "--study", "w")[0] == 0
    records = [json.loads(line) for line in (out / "w" / "study.journal").read_text().splitlines()]
    created = [r for r in records if r["op_code"] == JournalOperation.CREATE_TRIAL]
    assert len(created) == 12 and all(r.get("user_attrs", {}).get(WORKER_ATTR) for r in created)


def test_two_workers_on_one_storage_share_the_trial_count(env, assets, budget, tmp_path):
    predictor, out = env
    storage = f"journal:{tmp_path / 'shared.journal'}"
    procs = [_worker(predictor, out, budget, 150, "shared", storage, assets[0]) for _ in range(2)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read()
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 150
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers))
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both took part


# ------------------------------------------------------------------ the shipped defaults
def test_the_readme_command_runs_on_the_shipped_predictor_and_estimated_pixel6_table(run_cli, tmp_path,
                                                                                     monkeypatch):
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(tmp_path / "no-user-tables"))
    code, stdout, err = run_cli("search", "--budget", "1ms", "--device", "pixel6", "--trials", "30",
                                "--out", tmp_path, "--quiet")
    assert code == 0, err
    assert "ESTIMATED" in stdout and "top architectures" in stdout
    assert "predicted 4-epoch test top-1 on imagenette2-64 (out-of-fold tau" in stdout
    best = load_arch(tmp_path / "pixel6-1ms-acc" / "best.json")
    meta = best.meta["search"]
    assert meta["latency_kind"] == "estimated" and meta["latency_error_pct"] > 0 and meta["latency_ms"] <= 1.0
    assert meta["accuracy_source"]["unit"] == "predicted 4-epoch test top-1 on imagenette2-64"
    assert meta["accuracy_source"]["holdout"]["mae"] > 0 and meta["accuracy_source"]["bench"]["members"] >= 9
    assert "estimated" in (tmp_path / "pixel6-1ms-acc" / "report.md").read_text()


@pytest.mark.skipif(not (REAL / "train-000.npz").exists(), reason=f"no proxy dataset at {REAL}")
def test_a_supernet_checkpoint_rates_members_for_real(env, run_cli, budget, tmp_path, space):
    import torch

    from nas.supernet import Supernet
    from nas.supernet.evaluate import supernet_file

    data = write_subset(tmp_path / "data", train_per_class=10, test_per_class=3)
    torch.save(supernet_file(Supernet(space, seed=0)), tmp_path / "supernet.pt")
    _, out = env
    code, _, err = run_cli("search", "--budget", budget, "--device", "host", "--supernet", tmp_path / "supernet.pt",
                           "--data", data, "--trials", "4", "--out", out, "--quiet", "--study", "sn")
    assert code == 0, err
    meta = load_arch(out / "sn" / "best.json").meta["search"]
    assert meta["accuracy_source"]["kind"] == "supernet" and 0.0 <= meta["accuracy"] <= 1.0
    code, _, err = run_cli("search", "--budget", budget, "--device", "host", "--supernet", tmp_path / "supernet.pt",
                           "--predictor", "x.json", "--out", out)
    assert code == 2 and "give one accuracy source" in err
