"""Tables that know which machine they belong to, and calibration to this one (issue 24).

A table carries the fingerprint of where it was measured, with a speed probe. Used on a machine
whose identity or probe disagrees, it warns once and every output calls it `measured on <other
machine>`; a table without a probe is unverified; `nas latency calibrate` fits a table to this
machine and outputs call it `calibrated from <machine>`. This machine's probe is the one it
remembers (`machine.here`), so "agrees" and "disagrees" are set up exactly, not by timing luck.
"""
from __future__ import annotations

import json
import random

import numpy as np
import pytest
from fakes import fake_host

from nas.arch import save_arch
from nas.blocks.units import arch_units
from nas.errors import UserError
from predictors.latency import machine
from predictors.latency.calibrate import calibrate, op_class
from predictors.latency.machine import PROBES, Fingerprint, Probe, ProbeTiming, here
from predictors.latency.predict import predict
from predictors.latency.table import LatencyTable, load_table, save_table


def _with_probe(table: LatencyTable, factor: float) -> LatencyTable:
    """`table` whose stored probe says its machine takes `factor` x this machine's time, with a
    stated noise of 10% (not whatever load this run's probe met: 59% under a training once)."""
    fp = table.machine
    models = {k: v.model_copy(update={"ms": v.ms * factor, "passes_ms": [t * factor for t in v.passes_ms]})
              for k, v in fp.probe.models.items()}
    return table.model_copy(update={"machine": fp.model_copy(update={"probe": fp.probe.model_copy(
        update={"models": models, "noise_pct": 10.0})})})


def _probe_archs():
    return [p.arch() for p in PROBES]


@pytest.fixture
def arch_file(tmp_path, tiny_arch):
    return save_arch(tiny_arch, tmp_path / "tiny.json")


# ------------------------------------------------------------------ identity and labels
def test_a_table_measured_here_reads_measured_and_warns_nothing(tmp_path, tiny_arch, arch_file, run_cli):
    path = save_table(fake_host([tiny_arch]), tmp_path / "host.json")
    seen = load_table(path).provenance
    assert (seen.where, seen.tag, seen.label, seen.warning) == ("here", "measured", "measured", None)
    code, out, err = run_cli("latency", "predict", arch_file, "--table", path)
    assert code == 0 and err == "" and "host (measured)" in out
    code, out, err = run_cli("latency", "predict", arch_file, "--table", path, "--json")
    assert code == 0 and err == ""
    assert (json.loads(out)["kind"], json.loads(out)["label"], json.loads(out)["machine"]) == \
        ("measured", "measured", "here")


@pytest.mark.parametrize("factor", [3.0, 0.5])
def test_a_disagreeing_probe_warns_once_naming_both_machines_and_outputs_say_other_machine(
        tmp_path, tiny_arch, arch_file, run_cli, factor):
    path = save_table(_with_probe(fake_host([tiny_arch]), factor), tmp_path / "host.json")
    code, out, err = run_cli("latency", "predict", arch_file, "--table", path)
    assert code == 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: ") and str(path) in lines[0]
    theirs, mine = load_table(path).machine.name, here(1).name
    assert theirs != mine and theirs in lines[0] and mine in lines[0]  # both machines, told apart by the probe
    assert "nas latency calibrate --device host" in lines[0] and "nas latency build --device host" in lines[0]
    assert f"host (measured on {theirs})" in out and f"on host (measured on {theirs})" in out
    code, out, err = run_cli("latency", "predict", arch_file, "--table", path, "--json")
    assert json.loads(out)["label"] == f"measured on {theirs}" and json.loads(out)["machine"] == "elsewhere"


@pytest.mark.parametrize("quiet_again,where", [(True, "here"), (False, "elsewhere")])
def test_a_probe_taken_while_busy_is_retaken_before_calling_this_machine_another(tiny_arch, monkeypatch,
                                                                                  quiet_again, where):
    table = _with_probe(fake_host([tiny_arch]), 1.0)  # measured here: carries this machine's probe
    quiet = here(1).probe
    busy = _with_probe(table, 1.5).machine.probe  # the same networks, 1.5x slower: another job was running
    machine.remember(here(1).model_copy(update={"probe": busy}))
    retaken = []
    monkeypatch.setattr(machine, "take_probe", lambda threads, quick=True, passes=3:
                        retaken.append(threads) or (quiet if quiet_again else busy))
    verdict = table.provenance
    assert retaken == [1] and verdict.where == where and (verdict.warning is None) == quiet_again
    assert here(1).probe.quick_ms() == pytest.approx((quiet if quiet_again else busy).quick_ms())  # remembered


def test_a_probe_within_the_tables_noise_is_this_machine(tiny_arch):
    table = _with_probe(fake_host([tiny_arch]), 1.05)  # 5% off: within the ±10% floor
    assert table.provenance.where == "here" and table.provenance.label == "measured"


@pytest.mark.parametrize("field,value", [("cpu", "Intel Xeon"), ("flags_sha256", "0" * 16), ("ort_version", "1.0.0"),
                                         ("cores", 96)])
def test_another_identity_is_another_machine_whatever_the_probe(tiny_arch, capsys, field, value):
    table = fake_host([tiny_arch])
    table.machine = table.machine.model_copy(update={field: value})
    seen = table.provenance
    assert seen.where == "elsewhere" and seen.tag == "measured on other machine" and field in seen.warning
    assert capsys.readouterr().err.count("\n") == 1


def test_a_table_without_a_probe_is_unverified_even_when_its_strings_match(tiny_arch, capsys):
    table = fake_host([tiny_arch])
    table.machine = None  # as the shipped table: cpu and ort strings only, and they are this machine's
    seen = table.provenance
    assert seen.where == "unverified" and seen.tag == "measured, unverified"
    assert seen.label.startswith("measured elsewhere, unverified") and "nas latency calibrate" in seen.warning
    assert capsys.readouterr().err.count("\n") == 1
    other = fake_host([tiny_arch])
    other.machine, other.cpu = None, "Intel Xeon"
    assert other.provenance.where == "elsewhere" and other.provenance.label.startswith("measured on Intel Xeon")


def test_estimated_and_phone_tables_are_not_this_machine_and_say_so_without_warning(tiny_arch, capsys):
    est = fake_host([tiny_arch])
    est.kind, est.device, est.machine = "estimated", "pixel6", None
    phone = fake_host([tiny_arch])
    phone.device, phone.machine, phone.cpu = "pixel6", None, "Tensor G1"  # an imported phone measurement
    assert (est.provenance.tag, est.provenance.label) == ("estimated", "estimated")
    assert (phone.provenance.tag, phone.provenance.label) == ("measured", "measured")
    assert capsys.readouterr().err == ""


def test_build_records_a_full_probe_and_refuses_to_continue_another_machines_table(tmp_path, tiny_arch):
    from predictors.latency.build import build_table
    from predictors.latency.measure import RunPolicy

    fast = RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3)
    units = {u.key: u for u in arch_units(tiny_arch)}
    path = tmp_path / "host.json"
    build_table(path, resolutions=[64], policy=fast, units=units)
    table = load_table(path)
    assert set(table.machine.probe.models) == {p.name for p in PROBES} and table.provenance.where == "here"
    save_table(_with_probe(table, 3.0), path)
    with pytest.raises(UserError, match="not this machine"):
        build_table(path, resolutions=[64], policy=fast, units=units)


def test_the_probe_networks_are_members_the_shipped_table_can_predict():
    from predictors.latency.devices import SHIPPED
    from search_spaces.hybrid import HybridSpace

    space, shipped = HybridSpace(num_classes=1000), load_table(SHIPPED / "host.json")
    archs = _probe_archs()
    assert all(space.contains(a)[0] for a in archs) and len({a.arch_hash() for a in archs}) == len(PROBES)
    assert all(predict(a, shipped).ms > 0 for a in archs)
    assert [a.arch_hash() for a in archs] == [p.arch().arch_hash() for p in PROBES]  # deterministic
    assert {op_class(u.op) for a in archs for u in arch_units(a)} == {"conv", "attention"}


# ------------------------------------------------------------------ calibration
def test_calibrate_recovers_a_known_scale_from_a_doctored_table(tmp_path):
    base = fake_host(_probe_archs())
    k = 2.5  # the doctored table's machine is 2.5x slower: every entry, its overhead and its probe
    slow = _with_probe(base, k)
    slow.overhead_us *= k
    slow.entries = {key: e.model_copy(update={"us": e.us * k, "p10": e.p10 * k, "p90": e.p90 * k})
                    for key, e in slow.entries.items()}
    slow.correction = slow.correction.model_copy(update={"bandwidth_gbs": 4.0, "per_mb_us": 50.0})  # memory too
    table = calibrate(slow, tmp_path / "slow.json", mine=here(1), per_op=0)
    assert table.correction.bandwidth_gbs == pytest.approx(4.0 * k, rel=1e-4)
    assert table.correction.per_mb_us == pytest.approx(50.0 / k, rel=1e-4)
    cal = table.calibration
    assert cal["method"] == "one scale" and cal["reference"] == "probe"
    assert cal["scale"] == pytest.approx(1 / k, rel=1e-4) and cal["fit_error_pct"] < 0.01
    assert all(table.entries[key].us == pytest.approx(e.us) for key, e in base.entries.items())
    assert table.overhead_us == pytest.approx(base.overhead_us)
    assert table.kind == "calibrated" and table.provenance.where == "here"
    assert table.provenance.label.startswith(f"calibrated from {slow.machine.name}")


def test_calibrate_from_a_table_without_a_probe_fits_its_predictions_per_op_class_where_they_differ(tmp_path):
    base = fake_host(_probe_archs())
    base.overhead_us, base.machine = 0.0, None
    mine = machine.static_fingerprint(1).model_copy(update={"probe": Probe(noise_pct=10.0, models={
        p.name: ProbeTiming(arch_hash=p.arch().arch_hash(), ms=predict(p.arch(), base).ms, passes_ms=[])
        for p in PROBES})})  # this machine runs exactly as `base` predicts
    doctored = base.model_copy(update={"entries": {
        key: e.model_copy(update={"us": e.us * 2}) if op_class(e.op) == "conv" else e
        for key, e in base.entries.items()}})  # its machine is 2x slower on convolutions only
    cal = calibrate(doctored, tmp_path / "d.json", mine=mine, per_op=0).calibration
    assert cal["reference"] == "prediction" and cal["method"] == "per op class"
    assert cal["class_scales"]["conv"] == pytest.approx(0.5, rel=0.02)
    assert cal["class_scales"]["attention"] == pytest.approx(1.0, rel=0.02)
    assert cal["per_class_error_pct"] < cal["one_scale_error_pct"]

    uniform = base.model_copy(update={"entries": {key: e.model_copy(update={"us": e.us * 2})
                                                  for key, e in base.entries.items()}})
    cal = calibrate(uniform, tmp_path / "u.json", mine=mine, per_op=0).calibration
    assert cal["method"] == "one scale" and cal["scale"] == pytest.approx(0.5, rel=1e-4)


def _machine_like(base: LatencyTable) -> Fingerprint:
    """This machine's fingerprint with a probe that runs exactly as `base` predicts."""
    return machine.static_fingerprint(1).model_copy(update={"probe": Probe(noise_pct=10.0, models={
        p.name: ProbeTiming(arch_hash=p.arch().arch_hash(), ms=predict(p.arch(), base).ms, passes_ms=[])
        for p in PROBES})})


def test_per_op_calibration_carries_each_op_by_its_own_ratio_where_one_scale_cannot(tmp_path):
    from predictors.latency.calibrate import per_op_entries

    base = fake_host(_probe_archs())  # this machine
    base.machine = None
    doctored = base.model_copy(update={"entries": {  # elsewhere: 3x slower on convolutions, as fast on the rest
        key: e.model_copy(update={"us": base.overhead_us + 3 * (e.us - base.overhead_us)}) if op_class(e.op) == "conv"
        else e for key, e in base.entries.items()}})
    by_op: dict[str, list[str]] = {}
    for key, e in base.entries.items():
        by_op.setdefault(e.op, []).append(key)
    held = {keys[0] for keys in by_op.values() if len(keys) > 4}  # one unit of each well-sampled op not timed
    assert held
    timed = base.model_copy(update={"entries": {k: e for k, e in base.entries.items() if k not in held}})
    entries, fits = per_op_entries(doctored, timed)
    for key in held:
        assert entries[key].us == pytest.approx(base.entries[key].us, rel=1e-3)  # each op's ratio, 1/3 or 1
    assert all(entries[k] == base.entries[k] for k in timed.entries)  # what was timed here is kept as timed
    assert fits["*"]["pairs"] == len(timed.entries)

    cal = calibrate(doctored, tmp_path / "d.json", mine=_machine_like(base), timed=timed).calibration
    assert cal["per_op"]["kept"] and cal["method"].startswith("per op")
    assert cal["fit_error_pct"] < 1.0 < cal["one_scale_error_pct"]  # one scale cannot serve both classes
    uniform = base.model_copy(update={"entries": {k: e.model_copy(update={"us": e.us * 2}) for k, e in
                                                  base.entries.items()}, "overhead_us": 2 * base.overhead_us})
    slower_sample = timed.model_copy(update={"entries": {k: e.model_copy(update={"us": e.us * 1.3})
                                                         for k, e in timed.entries.items()}})
    cal = calibrate(uniform, tmp_path / "u.json", mine=_machine_like(base), timed=slower_sample).calibration
    assert cal["method"] == "one scale" and not cal["per_op"]["kept"]  # a sample that disagrees with the probes loses
    assert cal["per_op"]["probe_error_pct"] > cal["fit_error_pct"]


def test_per_op_calibration_drops_a_correction_this_machine_does_not_pay(tmp_path):
    from predictors.latency.table import Correction

    base = fake_host(_probe_archs())  # this machine: the plain sum of its units is what a network takes
    base.machine = None
    elsewhere = base.model_copy(update={"correction": Correction(per_unit_us=40.0, fitted_on=100)})
    cal = calibrate(elsewhere, tmp_path / "e.json", mine=_machine_like(base), timed=base).calibration
    po = cal["per_op"]
    assert po["kept"] and po["correction"] == "none"
    assert po["probe_error_pct_by_correction"]["none"] < 1.0 < po["probe_error_pct_by_correction"]["carried"]


def test_per_op_calibration_times_its_sample_here(tmp_path):
    from predictors.latency.calibrate import time_sample

    source = fake_host(_probe_archs())
    timed = time_sample(source, per_op=1, passes=1)
    assert {e.op for e in timed.entries.values()} == {e.op for e in source.entries.values()}  # one unit per op
    assert all(e.derived is None and e.us > 0 for e in timed.entries.values()) and timed.overhead_us > 0


def test_calibrate_command_writes_a_user_table_that_wins_and_is_labelled_calibrated(
        tmp_path, monkeypatch, run_cli, arch_file, tiny_arch):
    folder = tmp_path / "tables"
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(folder))
    source = save_table(_with_probe(fake_host([tiny_arch, *_probe_archs()]), 2.0), tmp_path / "elsewhere.json")
    monkeypatch.setattr(machine, "here", lambda threads, fresh=False, quick=True, passes=3: here(1))  # no timing
    code, out, err = run_cli("latency", "calibrate", "--device", "host", "--from", source, "--per-op", "0")
    assert code == 0, err
    table = load_table(folder / "host.json")
    assert table.kind == "calibrated" and table.calibration["scale"] == pytest.approx(0.5, rel=1e-4)
    assert "calibrated from" in out and "conv-64" in out and err == ""
    code, out, err = run_cli("devices", "--json")
    row = {r["device"]: r for r in json.loads(out)}["host"]
    assert code == 0 and row["kind"] == "calibrated" and row["label"].startswith("calibrated from")
    code, out, err = run_cli("latency", "predict", arch_file, "--device", "host", "--json")
    assert json.loads(out)["kind"] == "calibrated" and json.loads(out)["label"].startswith("calibrated from")
    code, _, err = run_cli("latency", "calibrate", "--from", folder / "host.json", "--out", tmp_path / "x.json")
    assert code == 2 and "is a calibrated table" in err
    save_table(fake_host([tiny_arch]), folder / "host.json")  # the user's own build: not replaced
    code, _, err = run_cli("latency", "calibrate", "--from", source)
    assert code == 2 and "holds a measured table" in err and err.count("\n") == 1


# ------------------------------------------------------------------ labels in every output
def _four_tables(tiny_arch) -> dict[str, LatencyTable]:
    here_t = fake_host([tiny_arch])
    other = _with_probe(fake_host([tiny_arch]), 3.0)
    unverified = fake_host([tiny_arch])
    unverified.machine = None
    calibrated = calibrate(_with_probe(fake_host([tiny_arch, *_probe_archs()]), 2.0), "src.json", mine=here(1),
                           per_op=0)
    return {"measured": here_t, "measured on other machine": other, "measured, unverified": unverified,
            "calibrated": calibrated}


def test_nas_devices_says_measured_calibrated_estimated_or_other_machine(tmp_path, monkeypatch, run_cli, tiny_arch):
    folder = tmp_path / "tables"
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(folder))
    tables = _four_tables(tiny_arch)
    est = fake_host([tiny_arch])
    est.kind, est.device, est.machine = "estimated", "pixel6", None
    tables["estimated"] = est
    names = {}
    for i, (tag, table) in enumerate(tables.items()):
        names[f"t{i}"] = tag
        save_table(table, folder / f"t{i}.json")
    code, out, err = run_cli("devices", "--json")
    assert code == 0
    rows = {r["device"]: r for r in json.loads(out)}
    assert {name: rows[name]["kind"] for name in names} == names
    assert rows["t1"]["label"] == f"measured on {tables['measured on other machine'].machine.name}"
    assert rows["t2"]["source"].endswith("no speed probe, 1 thread(s)")
    ours = [line for line in err.splitlines() if str(folder) in line]
    assert len(ours) == 2 and all(line.startswith("warning: ") for line in ours)  # the other machine's, the unverified
    code, out, _ = run_cli("devices")
    assert code == 0 and "calibrated" in out and "other machine" in out and "estimated" in out


@pytest.mark.parametrize("tag", ["measured", "measured on other machine", "calibrated"])
def test_evaluate_labels_the_host_table_it_compares_with(tmp_path, tiny_arch, capsys, tag):
    from nas.builder import build_model
    from nas.cli.evaluate import _print, latency_report

    path = save_table(_four_tables(tiny_arch)[tag], tmp_path / "host.json")
    report = latency_report(tiny_arch, build_model(tiny_arch), "host", str(path), 1)
    label = load_table(path).kind_note
    assert report["host_table_kind"] == tag and report["host_table_label"] == label
    _print({"arch": "tiny", "arch_hash": "h", "resolution": 64, "split": "test", "acc": 0.5, "loss": 1.0, "images": 1,
            "latency": report})
    assert report["host_table_runtime"].startswith("ONNX Runtime ") and report["measured_runtime"].startswith("ONNX")
    assert f"host table ({label}; {report['host_table_runtime']}) predicts" in capsys.readouterr().out


@pytest.mark.parametrize("tag", ["measured", "measured on other machine", "calibrated"])
def test_best_json_records_the_tables_provenance(tmp_path, monkeypatch, run_cli, tag):
    from nas.arch import load_arch
    from predictors.accuracy.model import fit_predictor
    from search_spaces.presets import PRESETS

    space = PRESETS["tiny"](10)
    archs = [space.sample(i) for i in range(30)]
    predictor = fit_predictor(space, archs, [random.Random(i).random() for i in range(30)], kind="ridge",
                              info={"metric": "synthetic"})
    predictor.save(tmp_path / "p.json")
    units = {u.key: u for r in space.resolutions for u in space.units(r)}
    from fakes import fake_table

    table = fake_table(units.values(), list(space.resolutions))
    if tag == "measured on other machine":
        table = _with_probe(table, 3.0)
    elif tag == "calibrated":
        table = calibrate(_with_probe(fake_table([*units.values(), *(u for a in _probe_archs() for u in arch_units(a))],
                                                 list(space.resolutions)), 2.0), "src.json", mine=here(1),
                          per_op=0)
    save_table(table, tmp_path / "tables" / "host.json")
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(tmp_path / "tables"))
    code, out, err = run_cli("search", "--budget", "10s", "--device", "host", "--predictor", tmp_path / "p.json",
                             "--out", tmp_path / "runs", "--trials", "4", "--study", "s", "--quiet")
    assert code == 0, err
    meta = load_arch(tmp_path / "runs" / "s" / "best.json").meta["search"]
    assert (meta["latency_kind"] == tag
            and meta["latency_label"] == load_table(tmp_path / "tables" / "host.json").kind_note)
    assert (tag == "measured on other machine") == ("warning:" in err)
    assert np.isfinite(meta["latency_ms"])
    assert meta["latency_runtime"] == f"ONNX Runtime {table.ort_version}, {table.threads} thread(s)"
    report = (tmp_path / "runs" / "s" / "report.md").read_text()
    assert meta["latency_label"] in report  # report.md names the table as truthfully as best.json
