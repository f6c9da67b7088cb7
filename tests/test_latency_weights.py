"""The weight-read floor: a unit inside a network costs at least the time to read its weights.

Units timed alone keep their weights in cache; inside a network the rest's weights evict them
(docs/latency.md, Outliers). A table's entries carry their weight bytes, a correction may carry a
bandwidth, a prediction raises each unit to its floor, and validation picks the bandwidth out of fold.
"""
from __future__ import annotations

import numpy as np
import pytest

from nas.blocks.units import arch_units
from nas.profile import deploy_copy
from predictors.latency.predict import floor_us, predict
from predictors.latency.table import Correction, Entry, load_table, save_table
from predictors.latency.unit_export import entry_unit
from predictors.latency.validate import BANDWIDTHS_GBS, Sample, evaluate, floored_sums, weight_mb
from predictors.latency.weights import fill_weight_bytes, main, unit_weight_bytes


def _tensor_bytes(module) -> int:
    return sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()])


def test_weight_bytes_are_the_deploy_form_tensors_in_fp32(tiny_table):
    arch, _ = tiny_table
    for unit in arch_units(arch):
        assert unit_weight_bytes(unit) == _tensor_bytes(deploy_copy(unit.build()))
    repvit = next(u for u in arch_units(arch) if u.op == "repvit.block")
    conv = 4 * 32 * 9 + 4 * 32  # the fused depthwise 3x3: weights and bias, what ONNX Runtime reads
    assert conv < unit_weight_bytes(repvit) < _tensor_bytes(repvit.build())  # BN folded, branches fused


def test_a_build_records_each_units_weight_bytes(tiny_table):
    arch, path = tiny_table
    table = load_table(path)
    for unit in arch_units(arch):
        assert table.entries[unit.key].weight_bytes == unit_weight_bytes(unit)


def test_an_older_table_is_filled_in_without_timing_and_entries_round_trip(tiny_table, tmp_path, capsys):
    arch, path = tiny_table
    table = load_table(path)
    timed = {k: e.us for k, e in table.entries.items()}
    for e in table.entries.values():
        e.weight_bytes = None
    old = tmp_path / "old.json"
    save_table(table, old)
    assert '"weight_bytes"' not in old.read_text()  # an unset field is written as before it existed
    assert main([str(old)]) == 0 and "given their weight bytes" in capsys.readouterr().out
    filled = load_table(old)
    assert {k: e.us for k, e in filled.entries.items()} == timed
    assert all(filled.entries[u.key].weight_bytes == unit_weight_bytes(u) for u in arch_units(arch))
    assert fill_weight_bytes(filled) == 0  # nothing left to count
    assert entry_unit(filled.entries[arch_units(arch)[0].key]) == arch_units(arch)[0]


def test_a_bad_table_path_is_one_error_line(tmp_path, capsys):
    assert main([str(tmp_path / "missing.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_the_floor_raises_a_unit_only_where_reading_its_weights_takes_longer(tiny_table):
    arch, path = tiny_table
    table = load_table(path)
    plain = predict(arch, table)
    assert floor_us(8_000_000, 8.0) == pytest.approx(1000.0) and floor_us(None, 8.0) == floor_us(10, 0.0) == 0.0
    slow_memory = table.model_copy(update={"correction": Correction(bandwidth_gbs=1e-3)})  # 1 MB/s: every unit floored
    floored = predict(arch, slow_memory)
    expected = sum(floor_us(table.entries[u.key].weight_bytes, 1e-3) for u in arch_units(arch)) + table.overhead_us
    assert floored.ms == pytest.approx(expected / 1000) and floored.plain_ms == pytest.approx(plain.plain_ms)
    fast_memory = table.model_copy(update={"correction": Correction(bandwidth_gbs=1e6)})  # no unit floored
    assert predict(arch, fast_memory).ms == pytest.approx(plain.ms)


def _weighed_samples(bandwidth_gbs: float, per_mb_ms: float = 0.0) -> tuple[list[Sample], np.ndarray, np.ndarray]:
    """Made-up networks whose true latency is 1.02 x (units raised to their floor at `bandwidth_gbs`)
    + `per_mb_ms` per MB of weights; with their floored sums and weight MB."""
    rng = np.random.default_rng(0)
    samples, sums, mbs = [], [], []
    for i in range(60):
        n = int(rng.integers(8, 40))
        entries = [Entry(us=float(us), p10=float(us), p90=float(us), n=1, op="x", args={}, inputs=[],
                         weight_bytes=int(wb))
                   for us, wb in zip(rng.uniform(20, 400, n), rng.lognormal(13, 1.5, n))]
        floored, mb = floored_sums(entries, 10.0), weight_mb(entries)
        truth = 1.02 * floored[BANDWIDTHS_GBS.index(bandwidth_gbs)] + per_mb_ms * mb
        samples.append(Sample(f"h{i}", 64, int(1e7 * floored[0]), float(floored[0]), truth, truth, truth, units=n))
        sums.append(floored)
        mbs.append(mb)
    return samples, np.stack(sums), np.array(mbs)


def test_validation_finds_the_bandwidth_out_of_fold_and_stores_it():
    samples, sums, mbs = _weighed_samples(8.0)
    with_weights, without = evaluate(samples, sums, mbs), evaluate(samples)
    c = with_weights["correction"]
    assert c["used"] and c["bandwidth_gbs"] == 8.0 and c["scale"] == pytest.approx(1.02)
    assert c["per_mb_us"] == pytest.approx(0.0, abs=1e-6)
    assert with_weights["lut_weights_out_of_fold"]["within_5pct"] == 1.0 == with_weights["lut"]["within_5pct"]
    assert with_weights["lut_corrected_out_of_fold"]["mape"] > 0.02  # the linear correction alone cannot fit it
    assert "lut_weights_out_of_fold" not in without and without["correction"]["bandwidth_gbs"] == 0.0


def test_validation_finds_a_cost_per_megabyte_of_weights():
    samples, sums, mbs = _weighed_samples(0.0, per_mb_ms=0.03)  # 30 us per MB, no floor
    c = evaluate(samples, sums, mbs)["correction"]
    assert c["bandwidth_gbs"] == 0.0 and c["per_mb_us"] == pytest.approx(30.0) and c["scale"] == pytest.approx(1.02)


def test_no_floor_is_stored_where_it_does_not_help():
    rng = np.random.default_rng(1)
    samples, sums, mbs = _weighed_samples(8.0)
    order = rng.permutation(len(sums))  # floors of other networks: no bandwidth explains these
    c = evaluate(samples, sums[order], mbs[order])["correction"]
    assert c["bandwidth_gbs"] == 0.0


def test_a_megabyte_term_reaches_predictions(tiny_table):
    arch, path = tiny_table
    table = load_table(path)
    mb = sum(table.entries[u.key].weight_bytes for u in arch_units(arch)) / 1e6
    priced = table.model_copy(update={"correction": Correction(per_mb_us=100.0)})
    assert predict(arch, priced).ms == pytest.approx(predict(arch, table).ms + 0.1 * mb)


def test_entries_without_weight_bytes_give_no_weight_features():
    entry = Entry(us=50.0, p10=50.0, p90=50.0, n=1, op="x", args={}, inputs=[])
    assert floored_sums([entry], 10.0) is None and weight_mb([entry]) is None


def test_without_a_bandwidth_a_unit_faster_than_the_overhead_is_summed_as_timed():
    fast = Entry(us=5.0, p10=5.0, p90=5.0, n=1, op="x", args={}, inputs=[], weight_bytes=1000)
    slow = Entry(us=100.0, p10=100.0, p90=100.0, n=1, op="x", args={}, inputs=[], weight_bytes=1000)
    sums = floored_sums([fast, slow], 10.0)
    assert sums[BANDWIDTHS_GBS.index(0.0)] == pytest.approx((5.0 - 10.0 + 100.0 - 10.0 + 10.0) / 1000)
