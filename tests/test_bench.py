"""The ground-truth bench: a stratified plan, shards that never overlap, rows that survive a kill,
corrupt rows named by file and line, and every accuracy source scored on it."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import fake_npz_dataset, fake_table

from nas.errors import UserError
from predictors.accuracy.bench import (
    append_row,
    layout,
    make_jobs,
    read_bench,
    read_rows,
    shard_jobs,
    stratified_members,
)
from predictors.accuracy.scoring import out_of_fold, rank_scores, size_classes
from predictors.latency.table import save_table
from search_spaces.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
SPACE = PRESETS["tiny"](4)


def _size(arch) -> tuple[float, float]:
    """A stand-in for (parameters, latency): monotone in width and depth."""
    width = sum(s.width * s.depth for s in arch.stages)
    return float(width), float(width + 10 * arch.stem.depth)


def test_the_plan_holds_the_extremes_every_layout_and_no_member_twice():
    members = stratified_members(SPACE, 40, _size, pool_size=400, seed=3)
    assert members[0].arch_hash() == SPACE.smallest().arch_hash()
    assert members[1].arch_hash() == SPACE.largest().arch_hash()
    assert len({m.arch_hash() for m in members}) == 40
    families = SPACE.stages[2].families
    assert {layout(m).split("+")[0] for m in members} == set(families)
    assert stratified_members(SPACE, 40, _size, pool_size=400, seed=3) == members  # a function of the seed


def test_reruns_are_spread_over_the_plan_and_shards_partition_the_jobs():
    jobs = make_jobs(20, 4)
    assert [j.index for j in jobs if j.seed == 0] == list(range(20))
    reruns = [j.index for j in jobs if j.seed == 1]
    assert reruns == [0, 5, 10, 15]
    assert jobs.index(next(j for j in jobs if j.seed == 1)) == 5  # the first rerun comes early
    shards = [shard_jobs(jobs, i, 3) for i in range(3)]
    assert sorted((j.index, j.seed) for s in shards for j in s) == sorted((j.index, j.seed) for j in jobs)
    with pytest.raises(ValueError, match="shard"):
        shard_jobs(jobs, 3, 3)


def _row(arch, seed: int = 0, acc: float = 0.5) -> dict:
    return {"arch_hash": arch.arch_hash(), "arch": arch.to_dict(), "seed": seed, "index": 0, "params": 1000,
            "macs": 10_000, "val_acc": acc, "test_acc": acc, "val_loss": 1.0, "test_loss": 1.0,
            "epochs": [], "train_time_s": 1.0, "latency_ms": {"median": 0.1}}


def test_a_corrupt_row_is_an_error_naming_the_file_and_line(tmp_path):
    path = tmp_path / "rows-1of1.jsonl"
    append_row(path, _row(SPACE.sample(0)))
    with open(path, "a") as fh:
        fh.write('{"format": "hybrid-nas/bench-row/v1", "arch_hash": "x"}\n')
    append_row(path, _row(SPACE.sample(1)))
    with pytest.raises(UserError, match=r"rows-1of1\.jsonl:2: missing field 'arch'"):
        read_rows(path)
    path.write_text(path.read_text().replace('"arch_hash": "x"}', '"arch_hash": "x"'))
    with pytest.raises(UserError, match=r"rows-1of1\.jsonl:2: not a JSON bench row"):
        read_rows(path)


def test_a_row_torn_by_a_kill_is_dropped_and_cut_off_by_the_next_append(tmp_path):
    path = tmp_path / "rows-1of1.jsonl"
    append_row(path, _row(SPACE.sample(0)))
    with open(path, "a") as fh:
        fh.write(json.dumps(_row(SPACE.sample(1)))[:40])  # the kill came mid-write
    assert len(read_rows(path)) == 1
    append_row(path, _row(SPACE.sample(2)))
    assert [r["arch_hash"] for r in read_rows(path)] == [SPACE.sample(i).arch_hash() for i in (0, 2)]
    assert all(json.loads(line) for line in path.read_text().splitlines())


def test_out_of_fold_predictions_never_see_their_own_member():
    x = np.arange(40, dtype=float).reshape(-1, 1)
    y = np.linspace(0, 1, 40)

    def memorise(xt, yt, xh):  # recalls a row it was fitted on, knows nothing else
        seen = dict(zip(xt[:, 0], yt))
        return np.array([seen.get(v, -1.0) for v in xh[:, 0]])

    assert np.all(out_of_fold(memorise, x, y, folds=5) == -1.0)


def test_rank_scores_within_size_classes_ignore_what_size_explains():
    sizes = np.arange(100, dtype=float)
    truth = 10 * (sizes // 20) + np.random.default_rng(0).normal(0, 1, 100)  # the size class, plus noise
    by_size = rank_scores(sizes, truth, sizes, bootstrap=50)
    assert by_size["tau"] > 0.6 and abs(by_size["within_tau"]) < 0.2
    assert by_size["tau_ci"][0] <= by_size["tau"] <= by_size["tau_ci"][1]
    assert list(np.bincount(size_classes(sizes))) == [20] * 5


# ------------------------------------------------------------------ the bench script, end to end

@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = fake_npz_dataset(root / "data")
    tables = root / "tables"
    tables.mkdir()
    units = set().union(*(SPACE.units(r) for r in SPACE.resolutions))
    save_table(fake_table(units, list(SPACE.resolutions)), tables / "host.json")
    env = {**os.environ, "HYBRID_NAS_TABLES": str(tables), "OMP_NUM_THREADS": "1"}
    return root, data, env


def _bench_cmd(root: Path, data: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "benchmarks" / "proxy_bench.py"), "--space", "tiny", "--data", str(data),
            "--members", "6", "--reruns", "2", "--epochs", "1", "--batch-size", "16", "--pool", "60",
            "--out", str(root / "bench"), "--runs", str(root / "runs"), *extra]


def test_bench_resumes_after_kill_9_repeating_and_losing_nothing(bench_env):
    root, data, env = bench_env
    proc = subprocess.Popen(_bench_cmd(root, data), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rows = root / "bench" / "rows-1of1.jsonl"
    deadline = time.time() + 300
    while (not rows.exists() or len(rows.read_text().splitlines()) < 2) and time.time() < deadline \
            and proc.poll() is None:
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = read_rows(rows)
    assert 2 <= len(before) < 8
    done = subprocess.run(_bench_cmd(root, data), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    after = read_bench(root / "bench")
    assert len(after) == 8  # 6 members with seed 0, 2 again with seed 1
    assert len({(r["arch_hash"], r["seed"]) for r in after}) == 8
    assert [r["test_acc"] for r in after[:len(before)]] == [r["test_acc"] for r in before]  # kept as trained
    row = after[0]
    assert row["epochs"][0]["val_acc"] is not None and row["latency_ms"]["median"] > 0
    assert row["macs"] > 0 and row["versions"]["onnxruntime"]


def test_another_recipe_in_the_same_bench_folder_is_refused(bench_env):
    root, data, env = bench_env
    (root / "bench").mkdir(exist_ok=True)
    subprocess.run(_bench_cmd(root, data, "--plan-only"), env=env, capture_output=True, text=True, check=True)
    cmd = _bench_cmd(root, data, "--plan-only")
    cmd[cmd.index("--epochs") + 1] = "3"
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "recipe" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_every_source_scores_finite_on_a_tiny_bench(bench_env, tmp_path):
    root, data, env = bench_env
    subprocess.run(_bench_cmd(root, data), env=env, capture_output=True, text=True, check=True, timeout=600)
    import accuracy_sources

    out = tmp_path / "sources.json"
    assert accuracy_sources.main(["--bench", str(root / "bench"), "--data", str(data), "--bootstrap", "20",
                                  "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"params", "zero-cost: synflow", "zero-cost: naswot", "zero-cost: zico"} <= set(report["sources"])
    assert any(k.startswith("fitted: ridge") for k in report["sources"])
    for name, s in report["sources"].items():
        assert math.isfinite(s["tau"]) and math.isfinite(s["rho"]), name
    assert out.with_suffix(".png").exists()


def test_fit_on_the_bench_then_search_prints_the_predictors_unit(bench_env, run_cli, tmp_path, monkeypatch):
    root, data, env = bench_env
    subprocess.run(_bench_cmd(root, data), env=env, capture_output=True, text=True, check=True, timeout=600)
    monkeypatch.setenv("HYBRID_NAS_TABLES", env["HYBRID_NAS_TABLES"])
    out = tmp_path / "p.json"
    code, stdout, stderr = run_cli("predictor", "fit", "--bench", str(root / "bench"), "--out", str(out),
                                   "--seed", "0")
    assert code == 0, stderr
    assert "its unit: predicted 1-epoch test top-1 on data" in stdout and "out-of-fold" in stdout
    info = json.loads(out.read_text())["info"]
    assert info["bench"]["members"] == 6 and info["holdout"]["folds"] == 3
    code, stdout, stderr = run_cli("search", "--budget", "50ms", "--device", "host", "--predictor", str(out),
                                   "--trials", "20", "--out", str(tmp_path / "runs"), "--quiet")
    assert code == 0, stderr
    assert "predicted 1-epoch test top-1 on data (out-of-fold tau" in stdout
    best = json.loads(next((tmp_path / "runs").glob("*/best.json")).read_text())
    search = best["meta"]["search"]
    assert search["accuracy_source"]["unit"] == "predicted 1-epoch test top-1 on data"
    assert search["accuracy_source"]["holdout"]["kendall_tau"] is not None


def test_supernet_ratings_of_the_bench_one_shot_and_few_shot_feed_the_sources(bench_env, tmp_path):
    root, data, env = bench_env
    subprocess.run(_bench_cmd(root, data), env=env, capture_output=True, text=True, check=True, timeout=600)
    base = [sys.executable, str(ROOT / "benchmarks" / "supernet_study.py"), "fewshot", "--bench", str(root / "bench"),
            "--data", str(data), "--runs", str(tmp_path / "runs")]
    one_shot = tmp_path / "one-shot"
    subprocess.run([sys.executable, "-m", "nas.cli.main", "supernet", "train", "--space", "tiny", "--data", str(data),
                    "--epochs", "1", "--batch-size", "16", "--out", str(one_shot), "--quiet"], env=env, check=True,
                   capture_output=True, timeout=600)
    for extra in ([], ["--split-epochs", "1"]):
        done = subprocess.run([*base, "--one-shot", str(one_shot), *extra], env=env, capture_output=True, text=True,
                              timeout=900)
        assert done.returncode == 0, done.stderr
    ratings = {p.name: json.loads(p.read_text()) for p in (root / "bench").glob("ratings-*.json")}
    assert set(ratings) == {"ratings-oneshot.json", "ratings-fewshot-s2-e1.json"}
    assert all(len(r["ratings"]) == 6 and all(0 <= v <= 1 for v in r["ratings"].values()) for r in ratings.values())
    assert len(ratings["ratings-fewshot-s2-e1.json"]["supernets"]) == len(SPACE.stages[2].families)
    import accuracy_sources

    out = tmp_path / "sources.json"
    assert accuracy_sources.main(["--bench", str(root / "bench"), "--data", str(data), "--bootstrap", "10",
                                  "--out", str(out)]) == 0
    sources = json.loads(out.read_text())["sources"]
    assert any(k.startswith("supernet: few-shot") for k in sources)
    assert any(k.startswith("fitted: ridge on encoding+size+supernet: ") for k in sources)
    for path in (root / "bench").glob("ratings-*.json"):
        path.unlink()  # the other tests' bench stays as it was


def test_any_journal_append_after_a_torn_line_keeps_the_new_record(tmp_path):
    from nas.atomic import append_json_line, read_json_lines

    path = tmp_path / "journal.jsonl"
    append_json_line(path, {"n": 1})
    with open(path, "a") as fh:
        fh.write('{"n": 2, "cut sh')  # a kill mid-write
    append_json_line(path, {"n": 3})
    assert read_json_lines(path) == [{"n": 1}, {"n": 3}]
