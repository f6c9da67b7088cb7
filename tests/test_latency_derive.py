"""Derived table entries (predictors/latency/derive.py): units a shipped table lacks after zoo models
changed form, priced from their timed counterparts and marked as such wherever they are used."""
from __future__ import annotations

import dataclasses
import json

import pytest
from fakes import fake_table

from nas.blocks.units import arch_units
from predictors.latency import derive
from predictors.latency.build import zoo_models
from predictors.latency.predict import predict
from predictors.latency.table import Entry, LatencyTable, load_table, save_table
from search_spaces.reference import load_zoo


@pytest.fixture
def tables(tmp_path, monkeypatch):
    """A measured host table of the zoo in its earlier form (224 px and the 64 px proxy versions),
    an estimated table made from it (a = 0.5, heads among the calibration ops), and timing here
    replaced by a fixed ratio of 2 and a per-call overhead of 5 us."""
    probe = LatencyTable(device="host", kind="measured", cpu="x", ort_version="x", threads=1, created="x",
                         resolutions=[64, 224], overhead_us=20.0)
    units = [u for a in zoo_models(probe.resolutions) for u in arch_units(derive.earlier_form(a))]
    host = fake_table(units, [64, 224])
    est = LatencyTable(device="pixel6", kind="estimated", cpu="y", ort_version="x", threads=1, created="x",
                       resolutions=[64, 224], overhead_us=10.0, estimate={"a": 0.5, "calibration_ops": ["head"]},
                       entries={k: e.model_copy(update={"us": e.us / 2}) for k, e in host.entries.items()})
    monkeypatch.setattr(derive, "paired_ratios", lambda pairs, passes: (
        {k: {"ratio": 2.0, "new_us": 110.0, "old_us": 57.5} for k in pairs}, 5.0))
    return save_table(host, tmp_path / "host.json"), save_table(est, tmp_path / "pixel6.json")


def test_only_the_changed_mobile_former_units_are_derived_each_from_its_earlier_form(tables):
    host_path, est_path = tables
    before = load_table(host_path)
    keys = derive.derive(host_path, [est_path])
    assert len(keys) == 14  # 26M: lite, 3 downs, head; 96M, 294M: head; each at 224 px and 64 px
    assert {k.split("(")[0] for k in keys} == {"former.lite", "former.down", "head"}
    host, est = load_table(host_path), load_table(est_path)
    for key in keys:
        entry = host.entries[key]
        old = before.entries[entry.derived["from"]]
        assert entry.us == pytest.approx(20.0 + (old.us - 20.0) * 2.0, abs=1e-3)  # overhead kept, rest x2
        assert entry.derived["ratio"] == 2.0 and entry.derived["passes"] == 7
        # the estimated table: the same unit by its own scaling, still marked derived
        assert est.entries[key].us == pytest.approx(entry.us * 0.5)
        assert est.entries[key].derived == entry.derived
        assert est.entries[key].extrapolated == (entry.op != "head")
    assert derive.derive(host_path, [est_path], check=True) == keys  # re-running re-derives the same units


def test_a_prediction_says_how_many_of_its_units_are_derived(tables):
    host_path, est_path = tables
    derive.derive(host_path, [est_path])
    host = load_table(host_path)
    for name, derived in (("mobile_former_26m", 5), ("mobile_former_96m", 1), ("repvit_m0_9", 0)):
        pred = predict(load_zoo(name), host)
        assert pred.derived == derived
        assert ("DERIVED" in dataclasses.replace(pred, table=None).label) == bool(derived)


def test_timed_entries_are_written_as_before_the_field_existed():
    entry = Entry(us=1.0, p10=1.0, p90=1.0, n=1, op="head", args={}, inputs=[])
    assert "derived" not in json.loads(json.dumps(entry.model_dump()))
    marked = entry.model_copy(update={"derived": {"from": "k", "ratio": 1.1}})
    assert Entry.model_validate(marked.model_dump()) == marked


def test_a_unit_without_a_timed_counterpart_is_not_derived(tables):
    host_path, _ = tables
    table = load_table(host_path)
    old_head = next(u.key for u in arch_units(derive.earlier_form(load_zoo("mobile_former_96m"))) if u.op == "head")
    del table.entries[old_head]
    save_table(table, host_path)
    with pytest.raises(Exception, match="no timed counterpart"):
        derive.derive(host_path, [])
