"""`nas export --tflite`: the LiteRT export of the inference form.

The missing-extra and the rewrite tests run everywhere (CI installs only `.[test]`); the real
conversions need the `litert-convert` extra and are skipped with that reason without it:
    pip install -e '.[test,litert-convert]' && python -m pytest tests/test_export_tflite.py
"""
from __future__ import annotations

import copy
import importlib.util
import json
import sys

import numpy as np
import pytest
import torch
from torch import nn

from nas.arch import parse_arch
from nas.builder import build_model
from nas.export import (
    MissingExtra,
    _pixel_shuffle_prop,
    fill_zero_params,
    rewrite_for_litert,
)

HAVE_CONVERTER = all(importlib.util.find_spec(m) is not None for m in ("litert_torch", "ai_edge_litert"))
needs_converter = pytest.mark.skipif(
    not HAVE_CONVERTER, reason="needs the litert-convert extra: pip install -e '.[litert-convert]'")


@pytest.fixture
def arch_file(tmp_path, tiny_arch_dict):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(tiny_arch_dict))
    return path


@pytest.fixture
def no_litert(monkeypatch):
    """Make the LiteRT packages unimportable, whether or not they are installed: a None entry in
    sys.modules makes `import` and `importlib.import_module` raise ImportError."""
    for name in ("litert_torch", "ai_edge_litert", "ai_edge_litert.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)


def test_missing_extra_is_one_line_naming_it_and_nothing_is_written(no_litert, run_cli, arch_file, tmp_path):
    out = tmp_path / "m.tflite"
    code, stdout, err = run_cli("export", arch_file, "--tflite", out)
    assert code == 2
    assert err == "error: --tflite needs the litert-convert extra: pip install -e '.[litert-convert]'\n"
    assert not out.exists() and stdout == ""


def test_missing_extra_in_the_library_names_the_extra_not_a_flag(no_litert, tiny_arch, tmp_path):
    from nas.export import export_tflite

    with pytest.raises(MissingExtra) as info:
        export_tflite(build_model(tiny_arch), tiny_arch.resolution, tmp_path / "m.tflite")
    assert info.value.extra == "litert-convert" and "--" not in str(info.value).split("pip install")[0]


def test_export_needs_onnx_or_tflite(run_cli, arch_file):
    code, _, err = run_cli("export", arch_file)
    assert code == 2 and "--onnx" in err and "--tflite" in err and err.count("\n") == 1


def test_pixel_shuffle_rewrite_is_exact():
    torch.manual_seed(0)
    for channels, r, size in [(8, 2, (7, 9)), (5, 4, (3, 3)), (3, 3, (1, 2))]:
        deconv = nn.ConvTranspose2d(channels, channels, r, r, groups=channels)
        rewritten = _pixel_shuffle_prop(deconv)
        assert rewritten is not deconv
        x = torch.randn(2, channels, *size)
        with torch.no_grad():  # one product plus the bias per pixel either way: exact in real arithmetic,
            # so each fp32 side is within two roundings (product, sum) of the float64 result; a backend
            # may fuse the add (FMA), so the two sides themselves can differ in the last bit
            wide = copy.deepcopy(deconv).double()
            exact = wide(x.double())
            wide.weight.abs_(), wide.bias.abs_()
            bound = 2.0 ** -23 * wide(x.double().abs())  # 2 ulp-halves of |w x| + |b|
            for out in (rewritten(x), deconv(x)):
                assert ((out.double() - exact).abs() <= bound).all()


def test_rewrite_leaves_other_transposed_convs_alone():
    for deconv in (nn.ConvTranspose2d(4, 4, 3, 2, groups=4), nn.ConvTranspose2d(4, 8, 2, 2, groups=4),
                   nn.ConvTranspose2d(4, 4, 2, 2, groups=1), nn.ConvTranspose2d(4, 4, 2, 2, padding=1, groups=4)):
        assert _pixel_shuffle_prop(deconv) is deconv


def test_rewrite_of_an_edgevit_stage_keeps_its_outputs():
    arch = parse_arch({"name": "lgl", "resolution": 64, "num_classes": 10, "stem": {"depth": 1, "channels": 16},
                       "stages": [{"block": "lgl", "depth": 1, "width": 32, "heads": 2, "sample_rate": 2}]})
    model = build_model(arch).eval()
    fill_zero_params(model)
    rewritten = rewrite_for_litert(copy.deepcopy(model))
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in rewritten.modules())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(rewritten(x), model(x), rtol=0, atol=1e-5)


def test_fill_zero_params_fills_only_all_zero_tensors(tiny_arch):
    model = build_model(tiny_arch)
    zero = {n for n, p in model.named_parameters() if not p.any()}
    kept = {n: p.detach().clone() for n, p in model.named_parameters() if p.any()}
    assert any(n.endswith(".weight") for n in zero), "the builder zero-inits residual BN gammas"
    assert fill_zero_params(model, seed=3) == len(zero)
    params = dict(model.named_parameters())
    assert all(params[n].any() for n in zero)
    assert all(torch.equal(params[n], v) for n, v in kept.items())


@pytest.mark.parametrize("error", [0.0, 1.0])
def test_parity_check_writes_only_a_matching_file(monkeypatch, tiny_arch, tmp_path, error):
    """The check itself, with the converter and interpreter stubbed (runs without the extras):
    the stub returns PyTorch's output plus `error` times its scale."""
    import nas.export as tfl

    model = build_model(tiny_arch)
    seen = {}

    def fake_run(data, x):
        reference = copy.deepcopy(model).eval()
        fill_zero_params(reference, 0)
        with torch.no_grad():
            expected = reference(torch.from_numpy(x)).numpy()
        seen["scale"] = float(np.abs(expected).max())
        return expected + error * seen["scale"]

    monkeypatch.setattr(tfl, "require_converter", lambda: None)
    monkeypatch.setattr(tfl, "tflite_bytes", lambda deploy, x: b"TFL3 stub")
    monkeypatch.setattr(tfl, "run_tflite", fake_run)
    out = tmp_path / "m.tflite"
    if error:
        with pytest.raises(tfl.ParityError, match="not written"):
            tfl.export_tflite(model, 64, out, fill_zeros=True)
        assert not out.exists() and not list(tmp_path.iterdir())
    else:
        result = tfl.export_tflite(model, 64, out, fill_zeros=True)
        assert out.read_bytes() == b"TFL3 stub" and result.max_abs_diff == 0.0
        assert result.output_scale == pytest.approx(seen["scale"]) and result.filled > 0


@needs_converter
def test_tiny_model_tflite_runs_in_the_interpreter_and_matches_pytorch(run_cli, arch_file, tmp_path, tiny_arch):
    from nas.export import TOLERANCE, run_tflite, tflite_op_counts

    out = tmp_path / "m.tflite"
    code, stdout, err = run_cli("export", arch_file, "--tflite", out, "--onnx", tmp_path / "m.onnx")
    assert code == 0, err
    assert "max abs diff" in stdout and "all-zero parameter tensors filled" in stdout
    assert (tmp_path / "m.onnx").stat().st_size > 0
    data = out.read_bytes()
    # Independently of the export's own check: the file's output is the filled, unfused model's.
    model = build_model(tiny_arch, seed=0).eval()
    fill_zero_params(model, seed=0)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x).numpy()
    got = run_tflite(data, x.numpy())
    assert got.shape == (1, 10)
    assert np.abs(got - expected).max() <= TOLERANCE * np.abs(expected).max()
    assert tflite_op_counts(data).get("CONV_2D", 0) > 0


@needs_converter
def test_zero_gammas_are_filled_so_no_branch_is_folded_away(tiny_arch, tmp_path):
    from nas.export import export_tflite, tflite_op_counts

    model = build_model(tiny_arch)
    filled = export_tflite(model, 64, tmp_path / "filled.tflite", fill_zeros=True)
    raw = export_tflite(model, 64, tmp_path / "raw.tflite", fill_zeros=False)
    assert filled.filled > 0 and raw.filled == 0
    ops = (sum(tflite_op_counts((tmp_path / n).read_bytes()).values()) for n in ("filled.tflite", "raw.tflite"))
    assert next(ops) > next(ops)
    assert any(not p.any() for p in model.parameters()), "the caller's model is left as it was"
