"""Every benchmark script runs at tiny size and writes its report with the keys the docs read.

Smoke tests: made-up data, a few members, one epoch, a few timing runs; they check that each
script runs end to end and what it writes, never its figures. Reports go to tmp_path, never to
benchmarks/results. (proxy_bench.py, accuracy_sources.py and `supernet_study.py fewshot` are run
in test_bench.py; latency_repeatability.py and latency_family_scales.py in test_latency_validate.py.)
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from fakes import fake_npz_dataset

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
RESULTS = BENCHMARKS / "results"
sys.path.insert(0, str(BENCHMARKS))

MACHINE = {"python", "torch", "platform", "cpu_threads"}  # reporting.machine()
LATENCY_MACHINE = {"cpu", "cores", "onnxruntime", "fingerprint"}  # predictors.latency.validate.machine_info()


def _report(path: Path, *keys: str) -> dict:
    report = json.loads(path.read_text())
    missing = set(keys) - set(report)
    assert not missing, f"{path.name}: no {sorted(missing)}"
    return report


def _script(name: str, *args: str, timeout: int = 600) -> None:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """`supernet_study.py rank --smoke` on a made-up dataset: (data, runs folder, its report)."""
    import supernet_study

    root = tmp_path_factory.mktemp("study")
    data = fake_npz_dataset(root / "data")
    runs = root / "runs"
    assert supernet_study.main(["rank", "--smoke", "--data", str(data), "--runs", str(runs),
                                "--standalone-from", ""]) == 0
    return data, runs, runs / "smoke.json"


def test_study_rank_smoke_writes_the_ranking_report_and_plot(study):
    _, runs, path = study
    report = _report(path, "kendall_tau", "kendall_tau_test", "params_kendall_tau", "archs", "throughput",
                     "supernet", "standalone_recipe", "data", "machine", "smoke")
    assert report["smoke"] and len(report["archs"]) == 4 and MACHINE <= set(report["machine"])
    assert {"supernet_val_acc", "supernet_test_acc", "standalone_val_acc", "standalone_source"} <= set(
        report["archs"][0])
    assert report["supernet"]["space"] == "tiny" and path.with_suffix(".png").exists()
    assert not (RESULTS / "smoke.json").exists()


def test_study_dims_rates_every_single_change_of_the_largest_member(study, tmp_path):
    import supernet_study

    data, runs, _ = study
    out = tmp_path / "dims.json"
    assert supernet_study.main(["dims", "--supernet", str(runs / "supernet-tiny-e1" / "supernet.pt"),
                                "--data", str(data), "--out", str(out)]) == 0
    report = _report(out, "supernet", "space", "split", "largest_acc", "changes", "machine")
    assert report["changes"] and {"param", "value", "acc", "drop"} == set(report["changes"][0])


def test_study_layouts_records_a_loss_curve_per_rule(tmp_path):
    import supernet_study

    data = fake_npz_dataset(tmp_path / "data")
    out = tmp_path / "layouts.json"
    assert supernet_study.main(["layouts", "--space", "tiny", "--steps", "3", "--rules", "fixed", "switch-all-ref",
                                "--data", str(data), "--out", str(out)]) == 0
    report = _report(out, "steps", "window", "chance_loss", "curves", "final_window_loss", "seconds", "data", "machine")
    assert set(report["curves"]) == {"fixed", "switch-all-ref"} and out.with_suffix(".png").exists()


def test_study_agreement_recomputes_the_committed_report_from_the_committed_rankings(tmp_path):
    """Reads only committed files: what it writes is the committed supernet_agreement.json."""
    import supernet_study

    out = tmp_path / "agreement.json"
    assert supernet_study.main(["agreement", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads((RESULTS / "supernet_agreement.json").read_text())


def test_standalone_noise_retrains_members_of_a_ranking_report(study, tmp_path):
    import standalone_noise

    data, _, reference = study
    out = tmp_path / "noise.json"
    assert standalone_noise.main(["--reference", str(reference), "--members", "2", "--data", str(data),
                                  "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    report = _report(out, "reference", "recipe", "members", "kendall_tau_vs_reference", "rows", "machine")
    assert report["members"] == 2 and report["recipe"]["seed"] == 1


def test_accuracy_predictor_tiny_fits_on_the_studys_supernet_and_keeps_the_shipped_one(study, tmp_path):
    import accuracy_predictor

    from predictors.accuracy.model import SUPERNET_PREDICTOR

    data, runs, _ = study
    shipped = SUPERNET_PREDICTOR.read_bytes() if SUPERNET_PREDICTOR.exists() else None
    work = tmp_path / "runs"
    shutil.copytree(runs / "supernet-tiny-e1", work / "supernet-tiny-e1")  # the same recipe: reused, not retrained
    assert accuracy_predictor.main(["--tiny", "--data", str(data), "--runs", str(work), "--samples", "20"]) == 0
    report = _report(work / "tiny" / "accuracy_predictor.json", "predictor", "chosen", "fits", "samples",
                     "members_rated_per_s", "supernet", "machine")
    assert set(report["fits"]) == {"mlp", "ridge"} and report["samples"] == 20
    assert "scikit_learn" in report["machine"] and (work / "tiny" / "supernet.json").exists()
    assert (SUPERNET_PREDICTOR.read_bytes() if SUPERNET_PREDICTOR.exists() else None) == shipped


def test_latency_corrections_scores_every_correction_on_the_committed_journals(tmp_path):
    import latency_corrections

    out = tmp_path / "corrections.json"
    assert latency_corrections.main(["--samples", "10", "--out", str(out)]) == 0
    report = _report(out, "table", "samples", "seed", "journals", "machine")
    assert LATENCY_MACHINE <= set(report["machine"]) and len(report["journals"]) == 2
    for scores in report["journals"].values():
        assert {"plain", "scale+unit", "per-family", "per-resolution"} <= set(scores)


def test_latency_calibrate_per_op_scores_both_routes_on_the_committed_journal(tmp_path):
    import latency_calibrate_per_op

    out = tmp_path / "per_op.json"
    assert latency_calibrate_per_op.main(["--samples", "8", "--per-op", "4", "--out", str(out)]) == 0
    report = _report(out, "source", "here", "journal", "machine_here", "scored_on", "rows")
    assert LATENCY_MACHINE <= set(report["scored_on"])
    rows = report["rows"]
    assert set(rows) == {"own table (built here)", "one scale (probe networks)", "per op, 4 units each"}
    assert rows["per op, 4 units each"]["calibration"]["per_op"]["units_each"] == 4
    assert all(r["zoo"]["of"] == 17 and "as_it_stands" in r for r in rows.values())


def test_latency_outliers_tiny_times_one_worst_and_one_best_subnet_in_context(tmp_path):
    import latency_outliers

    out = tmp_path / "outliers.json"
    assert latency_outliers.main(["--tiny", "--out", str(out)]) == 0
    report = _report(out, "command", "tiny", "table", "committed", "measured_here", "summary_median_here", "machine")
    assert report["tiny"] and LATENCY_MACHINE | MACHINE <= set(report["machine"])
    assert set(report["committed"]) == set(report["journals"]) and report["committed"]["latency_host_samples"]["worst"]
    assert {"plain", "scale+unit", "roofline 8 GB/s"} <= set(report["roofline_rescored"]["latency_host_samples"])
    assert [m["kind"] for m in report["measured_here"]] == ["worst", "best"]
    row = report["measured_here"][0]
    assert {"e2e_us", "e2e_static_us", "units_sum_us", "units_context_sum_us", "sections", "in_context_profile",
            "graphs"} <= set(row)
    assert {"dynamic", "static", "units"} == set(row["graphs"]["nodes"])
    assert sum(s["units"] for s in row["sections"].values()) == row["units"]


def test_pixel6_calibration_writes_the_fit_and_its_variants(tmp_path):
    import pixel6_calibration

    out = tmp_path / "pixel6.json"
    shipped_host = ROOT / "predictors" / "latency" / "tables" / "host.json"  # not a calibrated runs/latency/host.json
    assert pixel6_calibration.main(["--host", str(shipped_host), "--out", str(out)]) == 0
    report = _report(out, "machine", "versions", "host_table", "shipped", "variants")
    assert {"a", "b_ms", "loo_error_pct"} <= set(report["shipped"]) and report["variants"]


def test_latency_build_time_tiny_builds_a_few_units_into_the_work_folder(tmp_path):
    import latency_build_time

    out = tmp_path / "build_time.json"
    assert latency_build_time.main(["--tiny", "--work", str(tmp_path / "work"), "--out", str(out)]) == 0
    report = _report(out, "seconds", "target_s", "passed", "tiny", "units", "measured_this_run", "resolutions",
                     "machine")
    assert report["tiny"] and not report["passed"] and report["measured_this_run"] == 5
    assert LATENCY_MACHINE <= set(report["machine"]) and (tmp_path / "work" / "host.json").exists()


@pytest.mark.slow
def test_latency_host_tiny_builds_and_validates_a_scratch_table(tmp_path):
    _script("latency_host.py", "--tiny", "--samples", "4", "--table", tmp_path / "host.json",
            "--results", tmp_path / "results")
    report = _report(tmp_path / "results" / "latency_host.json", "command", "table", "units", "build", "lut",
                     "flops_linear_out_of_fold", "machine")
    assert report["command"].endswith("--tiny") and LATENCY_MACHINE <= set(report["machine"])
    assert (tmp_path / "results" / "latency_host.png").exists()


@pytest.mark.slow
def test_search_quality_at_a_few_trials(tmp_path):
    out = tmp_path / "search_quality.json"
    _script("search_quality.py", "--trials", "4", "--seeds", "1", "--speed-trials", "4", "--out", out)
    report = _report(out, "budgets_ms", "best_accuracy_within_budget", "pareto_hypervolume", "judged",
                     "zoo_comparison", "speed", "machine")
    assert set(next(iter(report["best_accuracy_within_budget"].values()))) == {"tpe", "nsga2", "random"}
    assert out.with_suffix(".png").exists()


@pytest.mark.slow
def test_headline_one_row_at_tiny_size(tmp_path):
    data = fake_npz_dataset(tmp_path / "data", classes=10, train_per_class=8, test_per_class=4)
    out = tmp_path / "headline.json"
    _script("headline.py", "--rows", "1", "--seeds", "0", "--epochs", "1", "--trials", "10", "--repeats", "1",
            "--refine", "0", "--data", data, "--runs", tmp_path / "runs", "--journal", tmp_path / "journal.json",
            "--out", out)
    report = _report(out, "rows", "goal", "recipe", "journal", "machine")
    assert len(report["rows"]) == 1 and {"zoo", "winner", "verdict"} <= set(report["rows"][0])
    assert {"onnxruntime", "optuna"} <= set(report["machine"])
    assert out.with_suffix(".md").exists() and out.with_suffix(".png").exists()
