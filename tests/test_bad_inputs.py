"""Bad input, class by class: one stderr line naming the argument or file, exit code 2, no
traceback; and the inputs that used to be wrongly accepted are refused (outputs only to regular
files or new paths, names that cannot leave the output folder, booleans that are not numbers,
archives with size caps). Each test reproduces one class of issue 20's list."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
from fakes import fake_npz_dataset

import nas.safezip
from nas.arch import io as arch_io
from nas.arch import parse_arch, save_arch
from nas.atomic import atomic_write_text, check_output_file
from nas.builder import build_model
from nas.errors import UserError
from nas.safezip import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, safe_extract


def refused(run_cli, *args) -> str:
    """Run `nas ARGS`; assert the contract (exit 2, one `error:` line, no traceback); the line."""
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def arch_file(tmp_path, tiny_arch_dict) -> Path:
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_arch_dict))
    return path


@pytest.fixture
def other_weights(tmp_path, tiny_arch_dict) -> Path:
    """A state dict of a wider network than `arch_file`'s (same keys, other shapes)."""
    wider = {**tiny_arch_dict, "stages": [{**s, "width": s["width"] + 8} for s in tiny_arch_dict["stages"]]}
    path = tmp_path / "other.pt"
    torch.save(build_model(parse_arch(wider)).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return fake_npz_dataset(tmp_path_factory.mktemp("data"), classes=4, train_per_class=4, test_per_class=2)


# --- crashes that were tracebacks -------------------------------------------------------------

@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000,
                                  '{"name": ' + '{"a": ' * 100_000 + "1" + "}" * 100_001])
def test_a_100k_deep_nested_arch_json_is_one_line_not_a_recursion_error(run_cli, tmp_path, text):
    (tmp_path / "deep.json").write_text(text)
    assert "deep.json: nested more than 64 levels deep" in refused(run_cli, "describe", tmp_path / "deep.json")


def test_deep_nesting_inside_meta_is_refused_before_it_breaks_serialisation(run_cli, tmp_path, tiny_arch_dict):
    meta: dict = {}
    for _ in range(200):  # parses fine, but pydantic could not write it back out
        meta = {"a": meta}
    (tmp_path / "a.json").write_text(json.dumps({**tiny_arch_dict, "meta": meta}))
    assert "a.json: nested more than 64 levels deep" in refused(run_cli, "describe", tmp_path / "a.json")


@pytest.mark.parametrize("command", ["export", "evaluate", "train"])
def test_weights_of_another_architecture_are_one_line_naming_the_file_and_the_weight(
        run_cli, tmp_path, arch_file, other_weights, data_dir, command):
    args = {"export": ["export", arch_file, "--onnx", tmp_path / "m.onnx", "--weights", other_weights],
            "evaluate": ["evaluate", arch_file, "--weights", other_weights, "--no-latency", "--data", data_dir],
            "train": ["train", arch_file, "--epochs", "1", "--num-classes", "10", "--data", data_dir,
                      "--batch-size", "4", "--init-from", other_weights, "--out", tmp_path / "run", "--quiet"]}[command]
    line = refused(run_cli, *args)
    assert "other.pt: 'stages.0." in line and "has shape" in line and "the model needs" in line
    assert not (tmp_path / "m.onnx").exists() and not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("command", ["predict", "show"])
def test_a_binary_latency_table_is_one_line_naming_the_file(run_cli, tmp_path, arch_file, command):
    (tmp_path / "t.json").write_bytes(bytes(range(256)) * 16)
    args = ["latency", command, *([arch_file] if command == "predict" else []), "--table", tmp_path / "t.json"]
    assert "t.json: not a latency table (binary" in refused(run_cli, *args)


def _proc_path() -> Path:
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc here")
    return Path("/proc/nas-no-such-folder/run")


@pytest.mark.parametrize("command", ["train", "search"])
@pytest.mark.parametrize("where", ["regular file", "/proc"])
def test_train_and_search_out_naming_a_regular_file_or_proc_are_refused(
        run_cli, tmp_path, arch_file, data_dir, command, where):
    if where == "regular file":
        out = tmp_path / "existing"
        out.write_text("keep me")
    else:
        out = _proc_path()
    args = (["train", arch_file, "--epochs", "1", "--data", data_dir, "--batch-size", "4", "--quiet"]
            if command == "train"
            else ["search", "--budget", "1ms", "--trials", "1", "--quiet"])
    line = refused(run_cli, *args, "--out", out)
    assert str(out) in line
    if where == "regular file":
        assert "is a file" in line and out.read_text() == "keep me"


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


@pytest.mark.parametrize("kind", ["truncated zip", "binary zip", "binary csv", "zip holding a binary csv"])
def test_latency_import_refuses_truncated_or_binary_zips_and_binary_csvs(run_cli, tmp_path, kind):
    noise = os.urandom(4096)
    if kind == "truncated zip":
        whole = _zip(tmp_path / "whole.zip", {"results.csv": b"key,median_us\n" * 50}).read_bytes()
        (tmp_path / "r.zip").write_bytes(whole[: len(whole) // 2])
        source = tmp_path / "r.zip"
    elif kind == "binary zip":
        source = tmp_path / "r.zip"
        source.write_bytes(b"PK\x03\x04" + noise)
    elif kind == "binary csv":
        source = tmp_path / "results.csv"
        source.write_bytes(b"\xff\xfe" + noise)
    else:
        source = _zip(tmp_path / "r.zip", {"results.csv": b"\xff\xfe" + noise})
    line = refused(run_cli, "latency", "import", source, "--out", tmp_path / "t.json")
    assert source.name in line and ("not a valid zip file" in line or "not a results CSV" in line)
    assert not (tmp_path / "t.json").exists()


SEED_COMMANDS = {
    "export": lambda a, t: ["export", a, "--onnx", t / "m.onnx"],
    "train": lambda a, t: ["train", a, "--epochs", "1", "--out", t / "run"],
    "search": lambda a, t: ["search", "--budget", "1ms", "--out", t / "runs"],
    "supernet train": lambda a, t: ["supernet", "train", "--epochs", "1", "--out", t / "sn"],
}


@pytest.mark.parametrize("seed", ["-1", "1e20", str(2**32), str(10**20), "seven"])
@pytest.mark.parametrize("command", [*SEED_COMMANDS, "space"])
def test_seeds_outside_0_to_2_pow_32_are_refused_by_every_command_that_takes_one(
        run_cli, tmp_path, arch_file, command, seed):
    args = ["space", "--sample", seed] if command == "space" else [*SEED_COMMANDS[command](arch_file, tmp_path),
                                                                   "--seed", seed]
    line = refused(run_cli, *args)
    assert f"argument {'--sample' if command == 'space' else '--seed'}: expected an integer from 0 to" in line
    assert repr(seed) in line and not any(tmp_path.glob("*/*"))


@pytest.mark.parametrize("budget", [["--budget", "-1ms"], ["--budget=-1ms"], ["--budget", "-0.5ms"],
                                    ["--budget", "-1e-3s"], ["--budget", "0ms"]])
def test_a_negative_or_zero_budget_is_refused_with_the_budget_rule_in_either_spelling(run_cli, tmp_path, budget):
    line = refused(run_cli, "search", *budget, "--out", tmp_path)
    assert "--budget: expected a positive latency with a unit" in line and "expected one argument" not in line


def test_a_closed_stdout_pipe_ends_quietly_without_a_broken_pipe_traceback():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader (`head -1`) has gone before the first write
    try:
        proc = subprocess.run([sys.executable, "-m", "nas.cli.main", "space", "--json"], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)
    assert proc.returncode == 141 and proc.stderr == ""


# --- wrongly accepted, now refused ------------------------------------------------------------

def test_outputs_are_never_written_over_a_fifo_a_device_node_or_a_folder(run_cli, tmp_path, arch_file):
    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    assert "pipe.onnx: is a FIFO; outputs are written only to regular files" in refused(
        run_cli, "export", arch_file, "--onnx", fifo)
    (tmp_path / "folder.onnx").mkdir()
    assert "folder.onnx: is a folder" in refused(run_cli, "export", arch_file, "--onnx", tmp_path / "folder.onnx")
    assert (tmp_path / "folder.onnx").is_dir()
    with pytest.raises(UserError, match="is a FIFO"):
        atomic_write_text(fifo, "x")
    assert fifo.is_fifo()
    with pytest.raises(UserError, match="is a character device"):  # only checked: nothing is written to it
        check_output_file("/dev/null")
    link = tmp_path / "link.onnx"
    link.symlink_to("/dev/null")  # a link is judged by what it points to
    assert "is a character device" in refused(run_cli, "export", arch_file, "--onnx", link)
    assert link.is_symlink()
    (tmp_path / "m.onnx").write_text("old")  # a regular file is still replaced, atomically
    code, _, err = run_cli("export", arch_file, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err
    assert (tmp_path / "m.onnx").read_bytes() != b"old"


@pytest.mark.parametrize("study", ["../../x", "a/b", "..", "a\\b", "/abs", "."])
def test_a_study_name_that_would_leave_the_output_folder_is_refused(run_cli, tmp_path, study):
    out = tmp_path / "deep" / "runs"
    line = refused(run_cli, "search", "--budget", "1ms", "--trials", "1", "--out", out, "--study", study)
    assert "argument --study:" in line and "a name must be a plain file name" in line
    assert not (tmp_path / "deep").exists()


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "a\\b", ".", "line\nbreak"])
def test_an_arch_name_that_would_leave_the_output_folder_is_refused(run_cli, tmp_path, tiny_arch_dict, name):
    (tmp_path / "a.json").write_text(json.dumps({**tiny_arch_dict, "name": name}))
    line = refused(run_cli, "train", tmp_path / "a.json", "--epochs", "1", "--data", tmp_path / "no-data")
    assert "a.json: name:" in line and "a name must be a plain file name" in line
    assert not (tmp_path.parent / "x").exists()


def test_latency_import_refuses_a_device_name_that_is_a_path(run_cli, tmp_path):
    line = refused(run_cli, "latency", "import", tmp_path / "results.csv", "--device", "../../x")
    assert "argument --device: '../../x' contains a path separator" in line


@pytest.mark.parametrize("where, value, path", [
    (("stem", "depth"), True, "stem.depth: input should be a valid integer (got True)"),
    (("stages", 0, "stride"), True, "stages[0].stride: input should be a valid integer (got True)"),
    (("stages", 0, "depth"), False, "stages[0].depth: input should be a valid integer (got False)"),
    (("stages", 0, "kernel"), 3.0, "stages[0].kernel: input should be a valid integer (got 3.0)"),
    (("stages", 0, "expand"), True, "stages[0].expand: input should be a valid number (got True)"),
    (("resolution",), "64", "resolution: input should be a valid integer (got '64')"),
    (("head", "distill"), 1, "head.distill: input should be a valid boolean (got 1)"),
])
def test_booleans_are_not_numbers_and_numbers_are_not_booleans_in_the_arch_schema(
        run_cli, tmp_path, tiny_arch_dict, where, value, path):
    data = json.loads(json.dumps(tiny_arch_dict))
    node = data
    for key in where[:-1]:
        node = node[key] if isinstance(key, int) else node.setdefault(key, {})
    node[where[-1]] = value
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert f"a.json: {path}" in refused(run_cli, "describe", tmp_path / "a.json")


def test_an_integer_still_stands_for_a_float_in_the_arch_schema(tiny_arch_dict):
    tiny_arch_dict["stages"][0]["expand"] = 2
    assert parse_arch(tiny_arch_dict).stages[0].expand == 2.0


@pytest.mark.parametrize("value", ["0", "1", "-1"])
def test_num_classes_below_two_is_refused_before_the_data_is_read(run_cli, tmp_path, arch_file, value):
    line = refused(run_cli, "train", arch_file, "--epochs", "1", "--num-classes", value, "--data", tmp_path / "none")
    assert f"argument --num-classes: expected an integer of at least 2, got '{value}'" in line


def test_a_zip_member_over_the_per_member_cap_is_refused_before_anything_is_extracted(
        run_cli, tmp_path, monkeypatch):
    assert MAX_MEMBER_BYTES == 64 * 2**20
    monkeypatch.setattr(nas.safezip, "MAX_MEMBER_BYTES", 1000)
    archive = _zip(tmp_path / "r.zip", {"run_info.json": b"{}", "results.csv": b"0" * 2000})
    line = refused(run_cli, "latency", "import", archive, "--out", tmp_path / "t.json")
    assert "r.zip: member 'results.csv' inflates to" in line and "refusing to extract" in line
    dest = tmp_path / "dest"
    with pytest.raises(UserError, match="more than the .* MB a member may"):
        safe_extract(archive, dest)
    assert not dest.exists() or not any(dest.iterdir())


def test_zip_members_over_the_total_cap_are_refused_before_anything_is_extracted(tmp_path, monkeypatch):
    assert MAX_TOTAL_BYTES == 512 * 2**20
    monkeypatch.setattr(nas.safezip, "MAX_TOTAL_BYTES", 3000)
    archive = _zip(tmp_path / "r.zip", {f"m{i}.bin": b"0" * 1000 for i in range(4)})
    with pytest.raises(UserError, match=r"r.zip: members inflate to more than .* an archive may \(at 'm3.bin'\)"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists() or not any((tmp_path / "dest").iterdir())


def test_an_arch_file_that_is_huge_a_folder_or_an_idle_fifo_is_one_line(run_cli, tmp_path, arch_file, monkeypatch):
    monkeypatch.setattr(arch_io, "MAX_ARCH_BYTES", 100)
    assert "tiny.json: larger than" in refused(run_cli, "describe", arch_file)
    (tmp_path / "folder.json").mkdir()
    assert "folder.json: is a folder" in refused(run_cli, "describe", tmp_path / "folder.json")
    os.mkfifo(tmp_path / "idle.json")  # nobody writes to it: read as empty, not waited on forever
    assert "idle.json: not valid JSON" in refused(run_cli, "describe", tmp_path / "idle.json")


def test_a_newline_in_a_file_name_does_not_break_the_one_line_contract(run_cli, tmp_path):
    assert "a\\nb.json: file not found" in refused(run_cli, "describe", tmp_path / "a\nb.json")


def test_save_arch_keeps_working_for_valid_names(tmp_path, tiny_arch):
    assert save_arch(tiny_arch.model_copy(update={"name": "ok-name_1.5"}), tmp_path / "a.json").is_file()


# ------------------------------------------------------------------ library names parameters, CLI names flags
def test_a_library_error_names_the_parameter_and_the_cli_names_the_flag_that_set_it(run_cli):
    from nas.budget import parse_budget
    from nas.supernet.trainer import Sandwich

    with pytest.raises(UserError) as caught:
        Sandwich(num_random=-1)
    assert str(caught.value) == "num_random -1: expected >= 0"  # as a Python caller spelled it
    with pytest.raises(UserError, match=r"^budget: expected a positive latency"):
        parse_budget("-1ms")
    assert refused(run_cli, "search", "--budget", "-1ms").startswith("error: --budget: expected a positive latency")


def test_every_parameter_is_set_by_one_flag_in_every_command_so_the_flag_named_is_unambiguous():
    import argparse

    from nas.cli.main import build_parser

    flags: dict[str, set[str]] = {}

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.option_strings:
                flags.setdefault(action.dest, set()).add(max(action.option_strings, key=len))

    walk(build_parser())
    assert flags["num_random"] == {"--num-random"} and flags["storage"] == {"--storage"}
    assert {dest: f for dest, f in flags.items() if len(f) > 1} == {}
