"""Device tables: the estimated Pixel 6 table, `nas devices`, and the probe pack -> runner -> import round trip."""
from __future__ import annotations

import importlib.util
import json
import zipfile
from pathlib import Path

import pytest
from fakes import fake_host

from predictors.latency import pixel6
from predictors.latency.predict import predict
from predictors.latency.table import load_table, save_table
from search_spaces.reference import load_zoo

needs_converter = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_litert")),
    reason="needs the litert-convert extra: pip install -e '.[litert-convert]'")


@pytest.fixture
def tables(tmp_path, monkeypatch, tiny_arch):
    """A user table folder holding a fake host table (calibration models + tiny arch)."""
    folder = tmp_path / "tables"
    monkeypatch.setenv("HYBRID_NAS_TABLES", str(folder))
    calib = [load_zoo(a.zoo).model_copy(update={"resolution": a.resolution}) for a in pixel6.ANCHORS]
    save_table(fake_host([*calib, tiny_arch]), folder / "host.json")
    (tmp_path / "tiny.json").write_text(tiny_arch.to_json())
    return folder


# ------------------------------------------------------------------ the fit
def test_affine_fit_recovers_a_line_and_never_takes_a_negative_intercept():
    fit = pixel6.fit_affine([1.0, 2.0, 4.0], [3.0, 5.0, 9.0])
    assert (fit.a, fit.b) == pytest.approx((2.0, 1.0))
    fit = pixel6.fit_affine([1.0, 2.0, 4.0], [1.0, 3.0, 7.0])  # least squares b = -1: not a fixed cost
    assert fit.b == 0.0 and fit.a == pytest.approx(pixel6.fit_proportional([1, 2, 4], [1, 3, 7]).a)


def test_leave_one_out_is_exact_on_a_line():
    points = [pixel6.Point(f"m{i}", 224, x, 2 * x + 1, "s") for i, x in enumerate((1.0, 2.0, 3.0, 5.0))]
    est = pixel6.calibrate(points)
    assert all(abs(e) < 1e-9 for e in est["loo_error_pct"].values()) and est["error_pct"] == 0


def test_published_figures_are_the_cpu_fp32_rows():
    figures = pixel6.published_figures()
    assert {a.model for a in pixel6.ANCHORS} <= set(figures)
    assert figures["EfficientNet-Lite0"][0] == 23.52  # fp32, not the int8 or GPU row


# ------------------------------------------------------------------ estimate
def test_estimated_table_is_labelled_and_predicts_a_times_host_with_the_pipeline_cost_apart(tables, run_cli, tmp_path):
    code, out, err = run_cli("latency", "estimate", "--device", "pixel6", "--from", "host")
    assert code == 0, err
    est_path = tables / "pixel6.json"
    raw = json.loads(est_path.read_text())
    assert raw["kind"] == "estimated" and raw["estimate"]["error_pct"] >= 0
    assert set(raw["estimate"]["loo_error_pct"]) == {a.zoo for a in pixel6.ANCHORS}
    host, est = load_table(tables / "host.json"), load_table(est_path)
    a, b = est.estimate["a"], est.estimate["b_ms"]
    assert est.estimate["pipeline_ms"] == b
    for anchor in pixel6.ANCHORS:
        arch = load_zoo(anchor.zoo).model_copy(update={"resolution": anchor.resolution})
        on_phone = predict(arch, est)
        assert on_phone.ms == pytest.approx(a * predict(arch, host).ms, rel=1e-9)  # the model alone
        assert on_phone.pipeline_ms == b  # stated beside it
    flagged = {e.op for e in est.entries.values() if e.extrapolated}
    assert flagged and all(op.startswith("repvit") for op in flagged)  # the tiny arch's RepViT stage
    assert not any(e.extrapolated for e in est.entries.values() if e.op == "mv2.ir")
    from predictors.latency.table import runtime_note

    note = runtime_note(est)
    assert note.startswith("scaled from host ONNX Runtime") and "TFLite" in note  # both runtimes named

    code, out, _ = run_cli("latency", "predict", tmp_path / "tiny.json", "--device", "pixel6")
    assert code == 0 and "pixel6 (estimated +/-" in out and "ESTIMATED" in out
    code, out, _ = run_cli("latency", "predict", tmp_path / "tiny.json", "--device", "pixel6", "--json")
    assert json.loads(out)["kind"] == "estimated" and json.loads(out)["error_pct"] == est.estimate["error_pct"]


def test_estimate_refuses_an_estimated_source(tables, run_cli):
    assert run_cli("latency", "estimate", "--from", "host")[0] == 0
    code, _, err = run_cli("latency", "estimate", "--from", str(tables / "pixel6.json"), "--out", tables / "x.json")
    assert code == 2 and "needs a measured host table" in err and err.count("\n") == 1


def test_unknown_device_lists_the_known_ones(tables, run_cli, tmp_path):
    code, _, err = run_cli("latency", "predict", tmp_path / "tiny.json", "--device", "pixel9")
    assert code == 2 and "unknown device 'pixel9'" in err and "host" in err and err.count("\n") == 1
    code, _, err = run_cli("latency", "estimate", "--device", "pixel9")
    assert code == 2 and "estimable: pixel6" in err


# ------------------------------------------------------------------ nas devices
def test_devices_lists_tables_and_survives_a_corrupt_one(tables, run_cli):
    assert run_cli("latency", "estimate", "--from", "host")[0] == 0
    (tables / "broken.json").write_text('{"schema": "hybrid-nas/latency-table/v1", "dev')
    code, out, err = run_cli("devices", "--json")
    assert code == 0, err
    rows = {r["device"]: r for r in json.loads(out)}
    assert rows["broken"]["kind"] == "error" and "not valid JSON" in rows["broken"]["error"]
    assert rows["host"]["kind"] == "measured" and rows["host"]["mape"] == "-"
    assert rows["pixel6"]["kind"] == "estimated" and rows["pixel6"]["loo_error_pct"] != "-"
    code, out, _ = run_cli("devices")
    assert code == 0 and "estimated" in out and "error" in out


# ------------------------------------------------------------------ pack -> run -> import
@pytest.fixture
def packed(tables, run_cli, tmp_path, tiny_arch):
    """A pack of two small units of a tiny pixel6 table, run here with the shipped runner."""
    table = fake_host([tiny_arch])
    table.device, table.kind = "pixel6", "estimated"
    small = sorted(table.entries, key=lambda k: table.entries[k].op != "mv2.ir")[:2]
    table.entries = {k: table.entries[k] for k in small}
    save_table(table, tables / "pixel6.json")
    code, out, err = run_cli("latency", "pack", "--device", "pixel6", "--out", tmp_path / "probe.zip", "--limit", "2",
                             "--quiet")
    assert code == 0, err
    folder = tmp_path / "probe"
    with zipfile.ZipFile(tmp_path / "probe.zip") as zf:
        assert {"README.md", "manifest.json", "runner.py", "overhead.onnx"} <= set(zf.namelist())
        zf.extractall(folder)
    import runpy
    runner = runpy.run_path(str(folder / "runner.py"))
    assert runner["main"](["--dir", str(folder), "--out", str(folder / "results.csv"), "--runs", "5",
                           "--min-seconds", "0", "--warmup", "1"]) == 0
    return folder, small


def test_pack_run_import_round_trip(packed, run_cli, tmp_path):
    folder, keys = packed
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [m["key"] for m in manifest["models"]] == sorted(keys)
    code, out, err = run_cli("latency", "import", folder / "results.csv", "--device", "pixel6",
                             "--out", tmp_path / "measured.json")
    assert code == 0, err
    table = load_table(tmp_path / "measured.json")
    assert table.kind == "measured" and table.device == "pixel6" and set(table.entries) == set(keys)
    assert table.overhead_us > 0 and table.cpu and table.threads == 1

    with zipfile.ZipFile(tmp_path / "results.zip", "w") as zf:  # the same results, zipped in a folder
        zf.write(folder / "results.csv", "phone/results.csv")
        zf.write(folder / "run_info.json", "phone/run_info.json")
    code, out, err = run_cli("latency", "import", tmp_path / "results.zip", "--out", tmp_path / "m2.json")
    assert code == 0, err
    assert set(load_table(tmp_path / "m2.json").entries) == set(keys)


def test_benchmark_model_logs_become_results_that_say_they_are_means(packed, run_cli, tmp_path):
    """LiteRT's benchmark_model prints a mean per model; the runner turns one log per model into
    results.csv (mean as median, p10 and p90) and run_info.json says so."""
    folder, keys = packed
    manifest = json.loads((folder / "manifest.json").read_text())
    logs = folder / "logs"
    logs.mkdir()
    for i, model in enumerate([manifest["overhead"], *manifest["models"]]):
        (logs / (Path(model["file"]).stem + ".log")).write_text(
            "INFO: Running benchmark for at least 50 iterations\nInference timings in us: Init: 2113, "
            f"First inference: 901, Warmup (avg): 400.5, Inference (avg): {100.25 + i}\n")
    import runpy
    runner = runpy.run_path(str(folder / "runner.py"))
    assert runner["main"](["--dir", str(folder), "--out", str(folder / "results.csv"),
                           "--from-benchmark-logs", str(logs)]) == 0
    info = json.loads((folder / "run_info.json").read_text())
    assert "mean" in info["timer"]
    code, out, err = run_cli("latency", "import", folder / "results.csv", "--out", tmp_path / "m.json")
    assert code == 0, err
    table = load_table(tmp_path / "m.json")
    assert table.overhead_us == 100.25 and table.entries[keys[0]].us == table.entries[keys[0]].p90 == 101.25
    (logs / "00000.log").write_text("not a benchmark log\n")
    with pytest.raises(SystemExit, match="00000.log"):
        runner["main"](["--dir", str(folder), "--from-benchmark-logs", str(logs)])


@needs_converter
def test_a_litert_pack_times_tflite_units_and_imports_as_a_litert_table(tables, run_cli, tmp_path, tiny_arch):
    table = fake_host([tiny_arch])
    table.device, table.kind = "pixel6", "estimated"
    save_table(table, tables / "pixel6.json")
    code, out, err = run_cli("latency", "pack", "--device", "pixel6", "--runtime", "litert", "--limit", "2",
                             "--out", tmp_path / "probe.zip", "--quiet")
    assert code == 0, err
    folder = tmp_path / "probe"
    with zipfile.ZipFile(tmp_path / "probe.zip") as zf:
        names = set(zf.namelist())
        zf.extractall(folder)
    assert "overhead.tflite" in names and sum(n.endswith(".tflite") for n in names) == 3
    assert "LiteRT" in (folder / "README.md").read_text()
    import runpy
    runner = runpy.run_path(str(folder / "runner.py"))
    assert runner["main"](["--dir", str(folder), "--out", str(folder / "results.csv"), "--runs", "5",
                           "--min-seconds", "0", "--warmup", "1"]) == 0
    code, out, err = run_cli("latency", "import", folder / "results.csv", "--out", tmp_path / "m.json")
    assert code == 0, err
    measured = load_table(tmp_path / "m.json")
    assert measured.runtime == "litert" and len(measured.entries) == 2 and measured.overhead_us > 0


def test_import_reports_unknown_and_missing_keys(packed, run_cli, tmp_path):
    folder, keys = packed
    lines = (folder / "results.csv").read_text().splitlines()
    lines = [line for line in lines if not line.startswith(f'"{keys[0]}"') and not line.startswith(f"{keys[0]},")]
    lines.append("mv2.ir(made-up)@1x1x1,10,9,11,5")
    (folder / "results.csv").write_text("\n".join(lines) + "\n")
    code, out, err = run_cli("latency", "import", folder / "results.csv", "--out", tmp_path / "m.json")
    assert code == 0, err
    assert "1 keys not in" in out and "made-up" in out and "1 of 2 table units have no measurement" in out
    code, _, err = run_cli("latency", "import", folder / "results.csv")  # would replace a fuller pixel6 table
    assert code == 2 and "1 of 2 units" in err and "--allow-partial" in err


@pytest.mark.parametrize("member", ["../evil.csv", "/abs/results.csv", "a/../../results.csv"])
def test_zip_member_escaping_its_folder_is_rejected(tmp_path, run_cli, member):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr(member, "key,median_us,p10_us,p90_us,runs\n")
    code, _, err = run_cli("latency", "import", bad, "--device", "pixel6")
    assert code == 2 and "escapes the archive folder" in err and err.count("\n") == 1
    assert not (tmp_path.parent / "evil.csv").exists()


HEADER = "key,median_us,p10_us,p90_us,runs\n"
OVERHEAD = "__overhead__,20,19,22,100\n"


@pytest.mark.parametrize("text,fragment", [
    ("", "expected the header"),
    ("key,median,p10,p90,runs\n" + OVERHEAD, "expected the header"),
    (HEADER + OVERHEAD + "a,1,2\n", "expected 5 fields"),
    (HEADER + OVERHEAD + "a,fast,1,2,3\n", "must be numbers"),
    (HEADER + OVERHEAD + "a,1,1,2,2.5\n", "must be numbers"),
    (HEADER + OVERHEAD + "a,-1,-2,2,3\n", "positive"),
    (HEADER + OVERHEAD + "a,nan,1,2,3\n", "positive"),
    (HEADER + OVERHEAD + "a,5,6,7,3\n", "p10_us <= median_us <= p90_us"),
    (HEADER + OVERHEAD + "a,5,4,7,3\na,5,4,7,3\n", "duplicate key"),
    (HEADER + "a,5,4,7,3\n", "no __overhead__ row"),
])
def test_malformed_results_are_one_line_exit_2(tmp_path, run_cli, text, fragment):
    path = tmp_path / "results.csv"
    path.write_text(text)
    code, _, err = run_cli("latency", "import", path, "--device", "pixel6")
    assert code == 2 and fragment in err and err.count("\n") == 1 and err.startswith("error: ")
