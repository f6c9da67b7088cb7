"""The `nas` CLI: --help everywhere, real output, and bad input as one stderr line with exit 2."""
from __future__ import annotations

import json
import subprocess
import sys

import onnx
import pytest

from nas.arch import save_arch
from nas.cli.main import COMMANDS, build_parser


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(run_cli, command):
    with pytest.raises(SystemExit) as exc:
        run_cli(command, "--help")
    assert exc.value.code == 0


def test_the_command_list_loads_no_command_and_says_what_each_module_says():
    """`nas --help` lists every command from main's table, importing none of their modules (nor
    torch); the line it shows for each is the one the command's own module registers."""
    code = ("import sys; from nas.cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('nas.cli.') or m == 'torch'), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr.strip() == "['nas.cli.main']", proc.stderr
    assert all(name in proc.stdout for name in COMMANDS)
    sub = next(a for a in build_parser()._actions if a.dest == "command")  # every command's own parser
    assert {a.dest: a.help for a in sub._choices_actions} == COMMANDS


def test_an_unknown_command_is_one_line(run_cli):
    assert "invalid choice: 'frobnicate'" in _bad(run_cli, "frobnicate", "--help")


def test_describe_prints_params_flops_and_stage_shapes(run_cli, tmp_path, tiny_arch):
    path = save_arch(tiny_arch, tmp_path / "a.json")
    code, out, _ = run_cli("describe", path, "--json")
    info = json.loads(out)
    assert code == 0 and info["params"] > 0 and info["flops"] > 0
    assert [r["stage"] for r in info["stages"]] == ["stem", "0", "1", "head"]
    assert info["stages"][2]["output"] == [32, 8, 8]  # 64 px / 2 (stem) / 2 / 2


def test_export_writes_a_checked_onnx_with_dynamic_batch(run_cli, tmp_path, tiny_arch):
    path = save_arch(tiny_arch, tmp_path / "a.json")
    code, out, err = run_cli("export", path, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err
    model = onnx.load(tmp_path / "m.onnx")
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def _bad(run_cli, *args) -> str:
    code, out, err = run_cli(*args)
    assert code == 2, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    return lines[0]


def test_malformed_json(run_cli, tmp_path):
    (tmp_path / "a.json").write_text("{not json")
    assert "a.json: not valid JSON" in _bad(run_cli, "describe", tmp_path / "a.json")


def test_unknown_block_family(run_cli, tmp_path, tiny_arch_dict):
    tiny_arch_dict["stages"][0]["block"] = "resnet"
    (tmp_path / "a.json").write_text(json.dumps(tiny_arch_dict))
    assert "stages[0].block: 'resnet' is not one of" in _bad(run_cli, "describe", tmp_path / "a.json")


def test_wrong_type(run_cli, tmp_path, tiny_arch_dict):
    tiny_arch_dict["stages"][1]["width"] = "wide"
    (tmp_path / "a.json").write_text(json.dumps(tiny_arch_dict))
    assert "stages[1].width: input should be a valid integer" in _bad(run_cli, "export", tmp_path / "a.json",
                                                                       "--onnx", tmp_path / "m.onnx")


def test_out_of_range_value(run_cli, tmp_path, tiny_arch_dict):
    tiny_arch_dict["stages"][0]["kernel"] = 9
    (tmp_path / "a.json").write_text(json.dumps(tiny_arch_dict))
    assert "stages[0].kernel: 9 is not one of [3, 5, 7]" in _bad(run_cli, "describe", tmp_path / "a.json")


def test_unknown_zoo_name(run_cli):
    assert "not_a_model: not a file and not a reference model (known:" in _bad(run_cli, "describe", "not_a_model")


def test_unwritable_output_path(run_cli, tmp_path, tiny_arch):
    path = save_arch(tiny_arch, tmp_path / "a.json")
    target = path / "m.onnx"  # a folder that cannot exist: its parent is a file (holds for root too)
    assert "m.onnx: cannot create folder" in _bad(run_cli, "export", path, "--onnx", target)
    assert path.read_text() == tiny_arch.to_json()  # nothing lost


def test_corrupt_weights(run_cli, tmp_path, tiny_arch):
    path = save_arch(tiny_arch, tmp_path / "a.json")
    (tmp_path / "w.pt").write_bytes(b"\x80\x04garbage")
    assert "w.pt: not a readable weights-only checkpoint" in _bad(
        run_cli, "export", path, "--onnx", tmp_path / "m.onnx", "--weights", tmp_path / "w.pt")


def test_unknown_flag_is_one_line(run_cli):
    assert "unrecognized arguments: --frobnicate" in _bad(run_cli, "zoo", "--frobnicate")


def test_console_script_exit_code_and_no_traceback(tmp_path):
    (tmp_path / "a.json").write_text("[]")
    proc = subprocess.run([sys.executable, "-m", "nas.cli.main", "describe", str(tmp_path / "a.json")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr
