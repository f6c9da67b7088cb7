"""Latency tables: resumable builds, predictions that say what they lack, files that fail clearly."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nas.blocks.units import arch_units
from nas.errors import UserError
from predictors.latency.build import build_table
from predictors.latency.measure import RunPolicy
from predictors.latency.predict import predict
from predictors.latency.table import journal_path, load_table

FAST = RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3)


def test_prediction_is_the_sum_of_units_less_overheads_plus_one(tiny_table):
    arch, path = tiny_table
    table = load_table(path)
    units = arch_units(arch)
    expected = sum(table.entries[u.key].us - table.overhead_us for u in units) + table.overhead_us
    pred = predict(arch, table, breakdown=True)
    assert pred.ms == pytest.approx(expected / 1000) and pred.kind == "measured"
    assert [name for name, _, _ in pred.sections] == ["stem", "stage 0", "stage 1", "head"]
    assert sum(ms for _, ms, _ in pred.sections) == pytest.approx(pred.ms - table.overhead_us / 1000)


def test_table_records_its_provenance(tiny_table):
    table = load_table(tiny_table[1])
    assert table.kind == "measured" and table.device == "host" and table.threads == 1
    assert table.cpu and table.ort_version and table.created and table.overhead_us > 0
    entry = next(iter(table.entries.values()))
    assert entry.p10 <= entry.us <= entry.p90 and entry.n == 3


def test_missing_unit_names_the_signature_and_the_command(tiny_table):
    arch, path = tiny_table
    bigger = arch.model_copy(update={"resolution": 96})
    with pytest.raises(UserError, match=r"no entry for unit stem\(.*\)@3x96x96.*nas latency build --device host "
                                        r"--resolutions 96"):
        predict(bigger, load_table(path))


@pytest.mark.parametrize("content, expected", [
    ("", "not valid JSON"),
    ('{"schema": "hybrid-nas/latency-table/v1", "device": "host"', "not valid JSON"),
    ('{"schema": "hybrid-nas/latency-table/v2", "device": "host"}', "newer than this hybrid-nas reads"),
    ('[1, 2]', "expected a latency table object"),
])
def test_corrupt_truncated_or_newer_tables_are_one_clear_error(tmp_path, content, expected):
    (tmp_path / "t.json").write_text(content)
    with pytest.raises(UserError, match=expected):
        load_table(tmp_path / "t.json")


def test_a_bad_entry_is_named(tiny_table, tmp_path):
    data = json.loads(tiny_table[1].read_text())
    key = next(iter(data["entries"]))
    data["entries"][key]["us"] = "fast"
    (tmp_path / "t.json").write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"entries\..*\.us"):
        load_table(tmp_path / "t.json")


def test_unknown_device_lists_the_known_ones(run_cli, tiny_arch):
    code, _, err = run_cli("latency", "predict", "repvit_m0_9", "--device", "iphone99")
    assert code == 2 and "unknown device 'iphone99' (known: " in err and len(err.strip().splitlines()) == 1


def test_predict_cli_prints_a_breakdown_and_json(run_cli, tiny_table, tmp_path):
    arch, path = tiny_table
    from nas.arch import save_arch

    a = save_arch(arch, tmp_path / "a.json")
    code, out, _ = run_cli("latency", "predict", a, "--table", path)
    assert code == 0 and "stage 1" in out and "predicted:" in out and "host (measured)" in out
    code, out, _ = run_cli("latency", "predict", a, "--table", path, "--json")
    assert code == 0 and json.loads(out)["kind"] == "measured"


def _journal_lines(path: Path) -> int:
    j = journal_path(path)
    return len(j.read_text().splitlines()) if j.exists() else 0


def test_kill_9_during_build_then_rerun_loses_and_duplicates_nothing(tmp_path):
    out = tmp_path / "host.json"
    cmd = [sys.executable, "-m", "nas.cli.main", "latency", "build", "--resolutions", "64", "--limit", "40",
           "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while _journal_lines(out) < 8 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = load_table(out, with_journal=True).entries
    assert 8 <= len(before) < 40
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    after = load_table(out).entries
    assert not journal_path(out).exists()
    assert len(after) == len(before) + 40  # the rest (next 40 missing), nothing measured twice
    for key, entry in before.items():  # kept as measured, unless a noisy timing was retimed lower
        if after[key].retimed and not entry.retimed:
            assert after[key].us <= entry.us
        else:
            assert after[key] == entry


def test_noisy_timings_are_retimed_once_keeping_the_lower_median(tiny_table, tmp_path):
    import shutil

    arch, path = tiny_table
    copy = tmp_path / "host.json"
    shutil.copy(path, copy)
    table = load_table(copy)
    key = next(iter(table.entries))
    table.entries[key] = table.entries[key].model_copy(update={"us": 1e6, "p10": 1.0, "p90": 2e6, "retimed": False})
    from predictors.latency.table import save_table

    save_table(table, copy)
    units = {u.key: u for u in arch_units(arch)}
    report = build_table(copy, resolutions=[64], policy=FAST, units=units)
    again = load_table(copy).entries[key]
    assert report.retimed >= 1 and again.retimed and again.us < 1e6
    assert build_table(copy, resolutions=[64], policy=FAST, units=units).retimed == 0  # once only


def test_a_two_pass_build_times_every_unit_again_and_keeps_the_lower_median(tiny_table, tmp_path):
    import shutil

    arch, path = tiny_table
    copy = tmp_path / "host.json"
    shutil.copy(path, copy)
    table = load_table(copy)
    for entry in table.entries.values():  # each timed once, none noisy (a loaded machine makes FAST timings noisy)
        entry.retimed, entry.p10, entry.p90 = False, entry.us, entry.us
    from predictors.latency.table import save_table

    save_table(table, copy)
    first = table.entries
    units = {u.key: u for u in arch_units(arch)}
    report = build_table(copy, resolutions=[64], policy=FAST, units=units, passes=2)
    second = load_table(copy).entries
    assert report.measured == 0 and report.retimed == len(first) > 0
    assert all(second[k].retimed and second[k].us <= first[k].us for k in first)
    assert build_table(copy, resolutions=[64], policy=FAST, units=units, passes=2).retimed == 0  # resumes, ends
    with pytest.raises(Exception, match="passes"):
        build_table(copy, resolutions=[64], policy=FAST, units=units, passes=3)
