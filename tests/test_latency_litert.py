"""LiteRT latency tables: units timed as .tflite, the rest derived from the ONNX Runtime table.

The sampling, derivation, labelling and error tests run everywhere; building and timing need the
`litert-convert` extra and are skipped with that reason without it:
    pip install -e '.[test,litert-convert]' && python -m pytest tests/test_latency_litert.py
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import fake_host, fake_table

from nas.blocks.units import arch_units
from nas.errors import UserError
from nas.export import fill_zero_params, litert_interpreter, rewrite_for_litert
from predictors.latency import cross_runtime, pixel6
from predictors.latency.build import open_or_create
from predictors.latency.predict import predict
from predictors.latency.table import Entry, load_table, runtime_note, save_table
from predictors.latency.unit_export import UnitGraph, unit_module
from search_spaces.reference import load_zoo

HAVE_CONVERTER = all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_litert"))
needs_converter = pytest.mark.skipif(
    not HAVE_CONVERTER, reason="needs the litert-convert extra: pip install -e '.[litert-convert]'")


def litert_twin(ort, ratio, timed_keys, overhead_us: float = 1.0):
    """A LiteRT table whose `timed_keys` entries are the ORT ones mapped through `ratio(ort_net_us)`."""
    table = ort.model_copy(deep=True)
    table.runtime, table.ort_version, table.overhead_us, table.entries = "litert", "2.3.0", overhead_us, {}
    for key in timed_keys:
        e = ort.entries[key]
        net = e.us - ort.overhead_us
        us = overhead_us + ratio(net) * net
        table.entries[key] = e.model_copy(update={"us": us, "p10": us, "p90": us})
    return table


@pytest.fixture
def ort(tiny_arch):
    wider = tiny_arch.model_copy(update={"resolution": 96})
    return fake_host([tiny_arch, wider])


def test_a_sample_takes_k_units_of_each_op_spread_over_its_sizes(ort):
    units = {u.key: u for u in arch_units(load_zoo("mobilevit_xxs"))}
    ref = fake_table(units.values(), [256])
    picked = cross_runtime.sample_units(units, ref, per_op=3)
    by_op: dict[str, list[str]] = {}
    for key, unit in units.items():
        by_op.setdefault(unit.op, []).append(key)
    for op, keys in by_op.items():
        chosen = [k for k in picked if units[k].op == op]
        assert len(chosen) == min(3, len(keys))
        ranked = sorted(keys, key=lambda k: ref.entries[k].us)
        assert ranked[0] in chosen and ranked[-1] in chosen  # the op's smallest and largest unit
    assert picked == cross_runtime.sample_units(units, ref, per_op=3)


def test_untimed_entries_are_derived_with_the_ratio_the_timed_ones_show(ort, tiny_arch):
    keys = sorted(ort.entries)
    timed = keys[::2]
    litert = litert_twin(ort, lambda net: 0.7, timed)
    count = cross_runtime.derive_missing(litert, ort, "host.json")
    assert count == len(keys) - len(timed)
    for key in keys:
        e = litert.entries[key]
        expected = 1.0 + 0.7 * (ort.entries[key].us - ort.overhead_us)
        assert e.us == pytest.approx(expected, rel=1e-3)
        assert (e.derived is None) == (key in timed)  # timed entries are kept as timed
    derived_in_arch = sum(litert.entries[u.key].derived is not None for u in arch_units(tiny_arch))
    pred = predict(tiny_arch, litert)
    assert pred.derived == derived_in_arch > 0 and "DERIVED" in pred.label


def test_a_ratio_that_moves_with_size_is_followed(ort):
    keys = sorted(ort.entries)
    ratio = lambda net: 2.0 * net ** -0.2  # noqa: E731 - the law the fit must recover
    litert = litert_twin(ort, ratio, keys[::2])
    cross_runtime.derive_missing(litert, ort, "host.json")
    for key in keys[1::2]:
        net = ort.entries[key].us - ort.overhead_us
        op_fit = litert.derivation["fits"][litert.entries[key].derived["fit_op"]]
        if op_fit["pairs"] >= cross_runtime.MIN_PAIRS:
            assert litert.entries[key].us == pytest.approx(1.0 + ratio(net) * net, rel=0.02)


def test_derive_needs_some_unit_timed_in_both(ort):
    litert = litert_twin(ort, lambda net: 1.0, [])
    with pytest.raises(UserError, match="litert"):
        cross_runtime.derive_missing(litert, ort, "host.json")


def test_a_litert_table_round_trips_and_names_its_runtime(ort, tmp_path, tiny_arch):
    litert = litert_twin(ort, lambda net: 0.9, sorted(ort.entries))
    path = save_table(litert, tmp_path / "host_litert.json")
    again = load_table(path)
    assert again.runtime == "litert" and again.entries == litert.entries
    assert runtime_note(again).startswith("LiteRT 2.3.0")
    assert predict(tiny_arch, again).ms == pytest.approx(predict(tiny_arch, litert).ms)


def test_a_build_does_not_continue_a_table_of_the_other_runtime(ort, tmp_path):
    path = save_table(ort, tmp_path / "host.json")
    with pytest.raises(Exception, match="ONNX Runtime, not LiteRT"):
        open_or_create(path, "host", 1, [64], runtime="litert")


def test_the_pixel6_estimate_from_a_litert_table_says_so():
    anchors = [load_zoo(a.zoo).model_copy(update={"resolution": a.resolution}) for a in pixel6.ANCHORS]
    ort = fake_host(anchors)
    litert = litert_twin(ort, lambda net: 0.8, sorted(ort.entries))
    est = pixel6.estimate_table(litert, "host_litert.json")
    assert est.runtime == "litert" and est.kind == "estimated"
    assert "LiteRT" in runtime_note(est) and "TFLite" in runtime_note(est)
    assert any("LiteRT" in c for c in est.estimate["caveats"])


def test_sample_per_op_is_only_for_litert(run_cli, tmp_path):
    code, out, err = run_cli("latency", "build", "--sample-per-op", "3", "--out", tmp_path / "t.json")
    assert code == 2 and err.count("\n") == 1 and "--sample-per-op" in err
    assert not (tmp_path / "t.json").exists()


def test_a_litert_build_without_the_extra_is_one_line_naming_it(run_cli, tmp_path, monkeypatch):
    for name in ("litert_torch", "ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)
    code, out, err = run_cli("latency", "build", "--runtime", "litert", "--resolutions", "64",
                             "--out", tmp_path / "t.json")
    assert code == 2 and err.count("\n") == 1 and "litert-convert" in err
    assert not (tmp_path / "t.json").exists()


@needs_converter
def test_a_unit_converts_channel_last_and_matches_pytorch():
    """A Mobile-Former unit (feature map and tokens in, both out) through the converter: the
    interpreter's NHWC output equals PyTorch's NCHW one, transposed."""
    from predictors.latency.litert import unit_tflite

    unit = next(u for u in arch_units(load_zoo("mobile_former_26m")) if u.op == "former.mobile")
    data = unit_tflite(unit)
    module = unit_module(unit)
    fill_zero_params(module, 0)
    graph = UnitGraph(rewrite_for_litert(module), tuple(s is not None for s in unit.inputs))
    inputs = tuple(t for t in unit.example_inputs() if t is not None)
    with torch.no_grad():
        expected = graph(*inputs)
    expected = expected if isinstance(expected, tuple) else (expected,)
    interp = litert_interpreter(data)
    for detail in interp.get_input_details():
        match = next(t for t in inputs if math.prod(t.shape) == math.prod(detail["shape"])
                     and (t.dim() != 4 or list(t.permute(0, 2, 3, 1).shape) == list(detail["shape"])))
        interp.set_tensor(detail["index"], (match.permute(0, 2, 3, 1) if match.dim() == 4 else match).numpy())
    interp.invoke()
    got = [np.array(interp.get_tensor(d["index"])) for d in interp.get_output_details()]
    for want in expected:
        want = (want.permute(0, 2, 3, 1) if want.dim() == 4 else want).numpy()
        assert any(g.shape == want.shape and np.abs(g - want).max() <= 1e-3 * np.abs(want).max() for g in got)


@needs_converter
def test_a_litert_build_times_units_and_predicts(tmp_path, tiny_arch):
    from predictors.latency.build import build_table
    from predictors.latency.measure import RunPolicy
    from predictors.latency.validate import measure_arch

    units = {u.key: u for u in arch_units(tiny_arch)}
    policy = RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3)
    report = build_table(tmp_path / "t.json", units=units, resolutions=[64], policy=policy, runtime="litert")
    table = load_table(tmp_path / "t.json")
    assert report.measured == len(units) and table.runtime == "litert" and set(table.entries) == set(units)
    assert all(isinstance(e, Entry) and e.us > 0 for e in table.entries.values())
    assert predict(tiny_arch, table).ms > 0
    ms, p10, p90 = measure_arch(tiny_arch, 1, "litert", tmp_path / "cache")
    assert 0 < p10 <= ms <= p90 and len(list((tmp_path / "cache").glob("*.tflite"))) == 1


@needs_converter
def test_the_litert_vs_ort_benchmark_runs_at_tiny_size(tmp_path):
    """benchmarks/litert_vs_ort.py on 4 small subnets and made-up tables: the report's keys (no figures)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import litert_vs_ort

    from predictors.latency.validate import sample_archs
    from search_spaces.hybrid import HybridSpace

    smallest = min(HybridSpace(num_classes=1000).resolutions)
    archs = sample_archs(fake_table([], [smallest]), 4, 0)
    ort = fake_table([u for a in archs for u in arch_units(a)], [smallest])
    litert = litert_twin(ort, lambda net: 0.9, sorted(ort.entries)[::2])
    cross_runtime.derive_missing(litert, ort, "ort.json")
    save_table(ort, tmp_path / "ort.json")
    save_table(litert, tmp_path / "litert.json")
    assert litert_vs_ort.main(["--litert-table", str(tmp_path / "litert.json"), "--ort-table",
                               str(tmp_path / "ort.json"), "--subnets", "4", "--no-zoo",
                               "--results", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "litert_vs_ort.json").read_text())
    assert {"paired", "litert_table", "ort_table", "pixel6", "machine", "versions"} <= set(report)
    assert report["paired"]["subnets"]["models"] == 4 and report["litert_table"]["samples"] == 4
    assert "skipped" in report["pixel6"]["litert"]  # the made-up tables lack the calibration models
    assert "skipped" in report["pixel6_from_measured"]["onnxruntime"]  # and --no-zoo times none of them
    assert (tmp_path / "out" / "litert_vs_ort.png").stat().st_size > 0


@needs_converter
def test_a_unit_the_converter_rejects_is_recorded_not_retried_and_a_derived_entry_stands_in(tmp_path, ort):
    """A MobileViT transformer layer over one token per patch (a 2x2 map): the converter fails on
    its rank-4 batch matmul (litert-torch 0.10). The build records why and goes on."""
    from nas.blocks.units import Unit
    from predictors.latency.build import build_table
    from predictors.latency.measure import RunPolicy

    bad = Unit.make("mobilevit.layer", [(4, 1, 144)], act="swish", dim=144, heads=4, mlp_ratio=2.0)
    good = next(u for u in arch_units(load_zoo("mobilevit_xxs")) if u.op == "mobilevit.layer")
    policy = RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3)
    path = tmp_path / "t.json"
    report = build_table(path, units={bad.key: bad, good.key: good}, resolutions=[256], policy=policy,
                         runtime="litert")
    table = load_table(path)
    assert report.measured == 2 and set(table.entries) == {good.key}
    assert "converter rejects" in table.unavailable[bad.key] and "batch_matmul" in table.unavailable[bad.key]
    again = build_table(path, units={bad.key: bad, good.key: good}, resolutions=[256], policy=policy,
                        runtime="litert")
    assert again.measured == 0  # neither retimed nor retried
    reference = fake_table([bad, good], [256])
    table.runtime = "litert"
    cross_runtime.derive_missing(table, reference, "ref.json")
    assert table.entries[bad.key].derived["unavailable"] == table.unavailable[bad.key]
