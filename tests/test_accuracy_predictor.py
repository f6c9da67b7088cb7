"""Accuracy predictors: the space encoding, fitting with a held-out check, plain-JSON files, and the
resumable collection of supernet evaluations they are fitted on."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_data import REAL, write_subset

from nas.errors import UserError
from nas.supernet import Supernet
from nas.supernet.evaluate import supernet_file
from predictors.accuracy.collect import collect_samples, sample_member
from predictors.accuracy.encoding import SpaceEncoding
from predictors.accuracy.model import fit_predictor, load_predictor
from search_spaces.presets import PRESETS

SPACE = PRESETS["tiny"](10)


def target(arch) -> float:
    return 0.2 + 0.002 * sum(s.width * s.depth for s in arch.stages) + 0.02 * (arch.stages[3].block == "lgl")


# ------------------------------------------------------------------ encoding
def test_each_used_choice_is_one_hot_and_numeric_choices_are_also_scaled():
    enc = SpaceEncoding(SPACE)
    for i in range(20):
        arch = SPACE.sample(i)
        params = SPACE.encode(arch)
        row = enc.params_row(params)
        for key, value in params.items():
            assert row[enc.columns.index(f"{key}={value}")] == 1.0
            if key in enc.columns:  # numeric: scaled to [0, 1] over the choices
                choices = SPACE.dimensions()[key]
                assert row[enc.columns.index(key)] == pytest.approx(
                    (value - min(choices)) / (max(choices) - min(choices)))
        onehot = [c for c in enc.columns if "=" in c]
        assert sum(row[enc.columns.index(c)] for c in onehot) == len(params)  # unused dimensions stay zero


def test_a_choice_outside_the_space_is_named():
    with pytest.raises(ValueError, match="s0.width: 999"):
        SpaceEncoding(SPACE).params_row({**SPACE.encode(SPACE.smallest()), "s0.width": 999})


# ------------------------------------------------------------------ fitting and files
@pytest.mark.parametrize("kind", ["ridge", "mlp"])
def test_a_fitted_predictor_ranks_held_out_members(kind):
    archs = [SPACE.sample(i) for i in range(80)]
    predictor = fit_predictor(SPACE, archs, [target(a) for a in archs], kind=kind, ensemble=2, hidden=(32,))
    assert predictor.info["holdout"]["kendall_tau"] > 0.6
    fresh = [SPACE.sample(1000 + i) for i in range(40)]
    from scipy.stats import kendalltau

    assert kendalltau(predictor.predict(fresh), [target(a) for a in fresh]).statistic > 0.6


def test_predictor_files_are_plain_json_and_predict_the_same(tmp_path):
    archs = [SPACE.sample(i) for i in range(30)]
    predictor = fit_predictor(SPACE, archs, [target(a) for a in archs], kind="mlp", ensemble=2, hidden=(16,),
                              info={"metric": "synthetic"})
    path = predictor.save(tmp_path / "p.json")
    assert json.loads(path.read_text())["format"] == "hybrid-nas/accuracy-predictor/v1"
    loaded = load_predictor(path)
    assert np.allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.predict_one(archs[0], SPACE.encode(archs[0])) == pytest.approx(float(predictor.predict(archs[:1])[0]))
    assert loaded.info["metric"] == "synthetic" and loaded.space == SPACE


@pytest.mark.parametrize("edit,fragment", [
    (lambda d: "{not json", "not a readable predictor JSON"),
    (lambda d: {**d, "format": "other/v9"}, "format: expected"),
    (lambda d: {**d, "columns": d["columns"][:-1]}, "columns: do not match"),
    (lambda d: {**d, "members": [[{"weight": [[1.0]], "bias": [0.0]}]]}, "layer shapes do not chain"),
    (lambda d: {**d, "target": {}}, "malformed predictor"),
    (lambda d: {**d, "extra": ["colour"]}, "unknown feature 'colour'"),
    (lambda d: {**d, "space": {"stages": "x"}}, "space"),
])
def test_a_broken_predictor_file_is_one_clear_error(tmp_path, edit, fragment):
    archs = [SPACE.sample(i) for i in range(20)]
    good = fit_predictor(SPACE, archs, [target(a) for a in archs], kind="ridge").to_dict()
    path = tmp_path / "p.json"
    changed = edit(good)
    path.write_text(changed if isinstance(changed, str) else json.dumps(changed))
    with pytest.raises(UserError, match=fragment) as err:
        load_predictor(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_size_features_come_from_unit_counts_and_survive_the_file(tmp_path):
    from nas.profile import profile_arch

    archs = [SPACE.sample(i) for i in range(24)]
    predictor = fit_predictor(SPACE, archs, [target(a) for a in archs], kind="ridge",
                              extra=("log_params", "log_macs", "depth"))
    counts = profile_arch(archs[0])
    assert predictor.counts.arch(archs[0]) == (counts["params"], counts["flops"])  # exact, without a build
    assert set(predictor.counts.counts) >= {u.key for r in SPACE.resolutions for u in SPACE.units(r)}
    loaded = load_predictor(predictor.save(tmp_path / "p.json"))
    assert loaded.extra == predictor.extra and loaded.columns[-3:] == ["log_params", "log_macs", "depth"]
    assert np.allclose(loaded.predict(archs), predictor.predict(archs))
    assert loaded.predict_one(archs[3], SPACE.encode(archs[3])) == pytest.approx(float(predictor.predict(archs)[3]))


def test_too_few_samples_is_refused():
    with pytest.raises(UserError, match="need at least 10"):
        fit_predictor(SPACE, [SPACE.sample(i) for i in range(5)], [0.5] * 5)


# ------------------------------------------------------------------ sample collection
def test_collection_resumes_from_its_journal_and_skips_a_torn_line(tmp_path):
    calls = []

    def evaluate(arch):
        calls.append(arch.arch_hash())
        return {"acc": target(arch), "loss": 1.0, "images": 10}

    journal = tmp_path / "s.jsonl"
    first = collect_samples(evaluate, SPACE, 5, seed=3, journal=journal)
    assert len(first) == 5 and len(calls) == 5
    with journal.open("a") as fh:
        fh.write('{"index": 5, "arch": {"na')  # a kill in the middle of a write
    again = collect_samples(evaluate, SPACE, 8, seed=3, journal=journal)
    assert len(calls) == 8 and [r["index"] for r in again] == list(range(8))
    assert [r["arch"].arch_hash() for r in again[:5]] == [r["arch"].arch_hash() for r in first]
    assert again[6]["arch"].arch_hash() == sample_member(SPACE, 3, 6).arch_hash()


def test_a_journal_of_another_space_is_refused(tmp_path):
    journal = tmp_path / "s.jsonl"
    collect_samples(lambda a: {"acc": 0.5, "loss": 1.0, "images": 1}, SPACE, 2, 0, journal)
    with pytest.raises(UserError, match="not a member of the supernet's space"):
        collect_samples(lambda a: {}, PRESETS["proxy"](10), 3, 0, journal)


@pytest.mark.skipif(not (REAL / "train-000.npz").exists(), reason=f"no proxy dataset at {REAL}")
def test_predictor_fit_command_end_to_end(tmp_path, run_cli):
    data = write_subset(tmp_path / "data", train_per_class=20, test_per_class=4)
    supernet = Supernet(PRESETS["tiny"](10), seed=0)
    torch.save(supernet_file(supernet), tmp_path / "supernet.pt")
    out = tmp_path / "pred.json"
    args = ("predictor", "fit", "--supernet", tmp_path / "supernet.pt", "--data", data, "--samples", "20",
            "--model", "ridge", "--calib-batches", "1", "--out", out, "--quiet")
    code, stdout, err = run_cli(*args)
    assert code == 0, err
    assert "out-of-fold (5-fold): Kendall tau" in stdout
    journal = tmp_path / "pred.samples.jsonl"
    lines = journal.read_text().splitlines()
    assert len(lines) == 20 and load_predictor(out).info["samples"] == 20
    assert run_cli(*args)[0] == 0 and journal.read_text().splitlines() == lines  # nothing rated twice
    code, stdout, _ = run_cli("predictor", "show", out)
    assert code == 0 and "tiny space" in stdout and "Kendall tau" in stdout
    code, _, err = run_cli("predictor", "fit", "--supernet", tmp_path / "missing.pt", "--out", out)
    assert code == 2 and "missing.pt" in err and err.count("\n") == 1
