"""Validation figures: out-of-fold, and the correction recovers what a unit-sum misses."""
from __future__ import annotations

import numpy as np
import pytest

from nas.blocks.units import arch_units
from nas.errors import ParameterError
from predictors.latency.validate import Sample, evaluate, metrics


def _samples(per_unit_ms: float, scale: float, noise: float = 0.0) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        plain, units = float(rng.uniform(0.5, 30)), int(rng.integers(8, 40))
        measured = (scale * plain + per_unit_ms * units) * (1 + noise * rng.standard_normal())
        out.append(Sample(f"h{i}", 64, int(plain * 1e7 * rng.uniform(0.7, 1.3)), plain, measured, measured, measured,
                          units=units))
    return out


def test_the_correction_recovers_a_per_unit_cost_and_scale():
    result = evaluate(_samples(per_unit_ms=0.05, scale=0.97))
    c = result["correction"]
    assert c["used"] and c["scale"] == pytest.approx(0.97) and c["per_unit_us"] == pytest.approx(50.0)
    assert result["lut_corrected_out_of_fold"]["within_5pct"] == 1.0
    assert result["lut_plain_sum"]["within_5pct"] < 1.0


def test_an_unbiased_sum_needs_next_to_no_correction():
    result = evaluate(_samples(per_unit_ms=0.0, scale=1.0, noise=0.02))
    c = result["correction"]
    assert c["scale"] == pytest.approx(1.0, abs=0.03) and abs(c["per_unit_us"]) < 20
    assert (result["lut_plain_sum"]["within_10pct"] == 1.0
            and result["lut_corrected_out_of_fold"]["within_10pct"] >= 0.95)


def test_metrics_count_within_bands_and_rank_agreement():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    m = metrics(np.array([1.04, 2.15, 2.9, 4.0]), measured)
    assert m["within_5pct"] == 0.75 and m["within_10pct"] == 1.0 and m["kendall_tau"] == pytest.approx(1.0)


def test_repeatability_compares_the_odd_against_the_even_numbered_timings_of_each_subnet():
    samples = _samples(per_unit_ms=0.0, scale=1.0)
    agree = [Sample(**{**s.__dict__, "medians_ms": (2.0, 2.06)}) for s in samples[:3]]  # 3% apart
    # halves: lowest of (2.0, 2.1) against lowest of (2.3, 2.16): 8% apart (the second timing alone, 15%)
    apart = [Sample(**{**s.__dict__, "medians_ms": (2.0, 2.3, 2.1, 2.16)}) for s in samples[3:4]]
    rep = evaluate(agree + apart + samples[4:])["measurement_repeatability"]
    assert rep["subnets"] == 4  # subnets timed once (or from an older journal) do not count
    assert rep["within_5pct"] == 0.75 and rep["within_10pct"] == 1.0
    assert rep["timings_per_half"] == 1  # the shortest record decides
    assert evaluate(samples)["measurement_repeatability"] is None


def _fake_timer(monkeypatch, ms_of, cpu_share: float = 1.0) -> list[str]:
    """validate's timer replaced by `ms_of(arch)` (ms); returns the arch hashes in the order timed."""
    from predictors.latency import validate as v
    from predictors.latency.measure import Timing

    order: list[str] = []

    def timer(*args, **kwargs):
        def time_arch(arch):
            order.append(arch.arch_hash())
            ms = ms_of(arch)
            return Timing(ms * 1000, ms * 1000, ms * 1000, 30, cpu_share)
        return time_arch

    monkeypatch.setattr(v, "ArchTimer", timer)
    monkeypatch.setattr(v, "profile_arch", lambda arch: {"flops": 1})
    return order


def test_a_rerun_resumes_the_journal_and_records_every_timing(tmp_path, monkeypatch):
    from predictors.latency import validate as v
    from search_spaces.hybrid import HybridSpace

    medians = iter([3.0, 5.0, 2.0, 4.0])
    _fake_timer(monkeypatch, lambda arch: next(medians), cpu_share=0.95)
    archs = [HybridSpace(num_classes=10).sample(i) for i in range(2)]
    table = type("T", (), {"threads": 1, "runtime": "onnxruntime"})()
    v.collect(table, archs, tmp_path / "j.jsonl", repeats=1)
    again = v.collect(table, archs, tmp_path / "j.jsonl", repeats=2)  # only the second pass is timed
    assert [s.medians_ms for s in again] == [(3.0, 2.0), (5.0, 4.0)]
    assert [s.measured_ms for s in again] == [2.0, 4.0] and all(s.timings == 2 for s in again)
    assert all(s.cpu_shares == (0.95, 0.95) for s in again)


def test_models_timed_more_often_get_the_passes_beyond_the_others_and_every_pass_is_interleaved(
        tmp_path, monkeypatch):
    from predictors.latency import validate as v
    from search_spaces.hybrid import HybridSpace

    order = _fake_timer(monkeypatch, lambda arch: 1.0)
    a, b, c = (HybridSpace(num_classes=10).sample(i) for i in range(3))
    table = type("T", (), {"threads": 1, "runtime": "onnxruntime"})()
    found = v.collect(table, [a, b, c], tmp_path / "j.jsonl", repeats=[2, 2, 4])
    ha, hb, hc = (x.arch_hash() for x in (a, b, c))
    assert order == [ha, hb, hc, ha, hb, hc, hc, hc]  # pass by pass, never one model's timings back to back
    assert [s.timings for s in found] == [2, 2, 4]
    with pytest.raises(ParameterError, match="repeats"):
        v.collect(table, [a, b], tmp_path / "k.jsonl", repeats=[2])


def test_the_timer_exports_each_arch_once_and_retakes_a_disturbed_timing(monkeypatch):
    from predictors.latency import validate as v
    from predictors.latency.measure import Timing
    from search_spaces.hybrid import HybridSpace

    exports, shares = [], iter([0.5, 0.7, 0.6, 1.0, 1.0])
    monkeypatch.setattr(v, "network_onnx", lambda model, resolution: exports.append(resolution) or b"onnx")
    monkeypatch.setattr(v, "build_model", lambda arch: None)
    monkeypatch.setattr(v, "time_model", lambda model, threads, policy: Timing(1.0, 1.0, 1.0, 30, next(shares)))
    timer = v.ArchTimer(1, retries=2)
    arch = HybridSpace(num_classes=10).sample(0)
    assert timer(arch).cpu_share == 0.7  # three disturbed timings: the least disturbed is kept
    assert timer(arch).cpu_share == 1.0  # undisturbed at once: not taken again
    assert len(exports) == 1 and next(shares) == 1.0  # exported once; the second call timed once


def test_a_validate_report_says_how_it_timed(tmp_path, monkeypatch):
    from fakes import fake_table

    from predictors.latency import validate as v
    from predictors.latency.predict import predict
    from search_spaces.hybrid import HybridSpace

    table = fake_table(HybridSpace(num_classes=1000).units(64), [64])
    _fake_timer(monkeypatch, lambda arch: predict(arch, table).ms, cpu_share=0.8)
    report = v.validate(table, tmp_path / "host.json", 4, 0, tmp_path / "v", store=False, repeats=3)
    proto = report["protocol"]
    assert proto["retries"] == v.RETRIES and proto["timings_with_share"] == 12 and proto["disturbed_kept"] == 12
    assert proto["pinned_cpu"] is None or isinstance(proto["pinned_cpu"], int)
    unpinned = v.validate(table, tmp_path / "host.json", 4, 0, tmp_path / "u", store=False, pin=False)
    assert unpinned["protocol"]["pinned_cpu"] is None


def test_the_validate_command_times_real_subnets_and_reports_the_measurements_own_spread(run_cli, tmp_path):
    import json

    from fakes import fake_table

    from predictors.latency.table import save_table
    from search_spaces.hybrid import HybridSpace

    table_path = save_table(fake_table(HybridSpace(num_classes=1000).units(64), [64]), tmp_path / "host.json")
    code, out, err = run_cli("latency", "validate", "--table", table_path, "--samples", "4", "--repeats", "2",
                             "--out", tmp_path / "v", "--no-store", "--quiet")
    assert code == 0, err
    assert "measurement vs itself" in out and "FLOPs line" in out
    report = json.loads((tmp_path / "v" / "validate.json").read_text())
    assert report["samples"] == 4 and report["measurement_repeatability"]["subnets"] == 4
    assert all(p["measured_ms"] > 0 for p in report["points"])


def test_figures_are_given_per_resolution_and_as_a_share_of_the_measurements_own_agreement():
    samples = [Sample(**{**s.__dict__, "resolution": 64 if i % 2 else 224,
                         "medians_ms": (s.measured_ms, s.measured_ms * (1.08 if i % 4 == 0 else 1.02))})
               for i, s in enumerate(_samples(per_unit_ms=0.0, scale=1.0, noise=0.04))]
    result = evaluate(samples)
    rep, lut = result["measurement_repeatability"], result["lut"]
    assert rep["within_5pct"] == 0.75 and rep["within_10pct"] == 1.0  # one subnet in four repeats only within 8%
    assert result["lut_vs_measurement_noise"]["within_5pct"] == pytest.approx(lut["within_5pct"] / 0.75, abs=1e-4)
    by_res = result["per_resolution"]
    assert set(by_res) == {"64", "224"} and sum(r["samples"] for r in by_res.values()) == 40
    series = result["_series"]
    for r, fig in by_res.items():
        idx = np.array([s.resolution == int(r) for s in samples])
        assert fig["lut"] == metrics(series["lut"][idx], series["measured"][idx])
        assert fig["measurement_repeatability"]["subnets"] == idx.sum()


def test_validate_times_the_zoo_in_the_same_passes_and_reports_it_apart(tmp_path, monkeypatch):
    from fakes import fake_table

    from predictors.latency import validate as v
    from predictors.latency.predict import predict
    from search_spaces.hybrid import HybridSpace
    from search_spaces.reference import load_zoo_scaled

    zoo = [load_zoo_scaled(name, 64, 1000) for name in ("repvit_m0_9", "mobilevit_xxs")]
    table = fake_table([*HybridSpace(num_classes=1000).units(64), *(u for a in zoo for u in arch_units(a))], [64])
    monkeypatch.setattr(v, "zoo_archs", lambda t: zoo)
    _fake_timer(monkeypatch, lambda arch: predict(arch, table).ms * 1.04)
    report = v.validate(table, tmp_path / "host.json", 4, 0, tmp_path / "v", store=False, zoo=True, zoo_repeats=4)
    z = report["zoo"]
    assert z["measurement_repeatability"]["timings_per_half"] == 2 and report["timings_per_zoo_model"] == 4
    assert [m["name"] for m in z["models"]] == [a.name for a in zoo] and z["of"] == 2 and z["within_5pct"] == 2
    assert all(m["error_pct"] == pytest.approx(100 * (1 / 1.04 - 1), abs=0.01) for m in z["models"])
    assert report["samples"] == 4 and report["table_label"] == "measured"  # the zoo is not among the subnets


def test_the_repeatability_benchmark_runs_at_tiny_size(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "rep.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "latency_repeatability.py"
    done = subprocess.run([sys.executable, str(script), "--samples", "3", "--tiny", "--trace-seconds", "0.3",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["protocols"]) == {"current", "interleaved", "interleaved_p10", "pinned", "undisturbed"}
    assert all(0 <= p["within_5pct"] <= p["within_10pct"] <= 1 for p in report["protocols"].values())
    assert report["machine"]["fingerprint"]["probe"]["models"] and report["samples"] == 3
    trace = report["noise_trace"]  # one subnet in consecutive chunks: the machine's own speed, second to second
    assert trace["chunks"] >= 2 and trace["max_over_min"] >= trace["p90_over_p10"] >= 1.0


def test_the_family_scales_benchmark_refits_a_committed_validate_run(tmp_path):
    """Reads the committed second-machine validate run: one scale, conv/attention and per-family
    fits, each scored out of fold on the subnets and on the zoo it never saw."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "scales.json"
    done = subprocess.run([sys.executable, str(root / "benchmarks" / "latency_family_scales.py"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    assert set(report["fits"]) == {"one scale", "conv vs attention", "per family"}
    assert report["subnets"] == 200 and report["zoo_models"] == 17
    per_family = report["fits"]["per family"]["coefficients"]
    assert {"former", "mv2", "per_unit_ms"} <= set(per_family)
    bad = subprocess.run([sys.executable, str(root / "benchmarks" / "latency_family_scales.py"), "--validate",
                          str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--validate" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("flags, named", [(["--repeats", "1"], "--repeats"),
                                          (["--zoo", "--zoo-repeats", "1"], "--zoo-repeats"),
                                          (["--zoo-repeats", "8"], "--zoo-repeats")])
def test_validate_refuses_timing_counts_it_cannot_use_in_one_line(run_cli, flags, named):
    code, _, err = run_cli("latency", "validate", *flags)
    assert code == 2 and named in err and len(err.strip().splitlines()) == 1
