"""MV2 stage (MobileNetV2/V3 inverted residual, EfficientNet-Lite MBConv): shapes, the expansion
and SE rules of the TF reference code, residual placement, ONNX parity, the calibration zoo models
block by block, and the stage inside a 64 px hybrid network."""
from __future__ import annotations

import math

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fakes import trained_looking as randomise
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from nas.arch import parse_arch
from nas.arch.stages import MV2Stage as Spec
from nas.blocks import StageContext
from nas.blocks.common import SqueezeExcite
from nas.blocks.mv2 import InvertedResidual, build_stage, hidden_channels
from nas.builder import build_model
from nas.export import onnx_bytes
from search_spaces.reference import load_zoo


def ctx(cin: int, size: tuple[int, int] = (32, 32)) -> StageContext:
    return StageContext(in_channels=cin, in_size=size, index=0, num_stages=1, token_dim=None)




@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(32, 32), (15, 17), (1, 1)])
def test_output_shape(stride: int, size: tuple[int, int]) -> None:
    stage = build_stage(Spec(depth=2, width=40, stride=stride, expand=3, kernel=5, se="all"), ctx(24, size))
    y = stage(torch.randn(2, 24, *size))
    assert stage.out_channels == 40
    assert y.shape == (2, 40, math.ceil(size[0] / stride), math.ceil(size[1] / stride))


def test_expand_one_has_no_expansion_conv() -> None:
    block = InvertedResidual(16, 16, expand=1.0)
    assert isinstance(block.expand, nn.Identity)
    assert block.dw[0][0].in_channels == 16 and block.use_residual


@pytest.mark.parametrize("cin,expand,hidden", [(16, 4.5, 72), (24, 3.67, 88), (64, 2.3, 144), (24, 6, 144),
                                              (32, 1.0, 32)])
def test_hidden_width_follows_tf_rounding(cin: int, expand: float, hidden: int) -> None:
    """TF's expand_input_by_factor: make_divisible(in * ef, 8) (MNv3-Small 72/16, 88/24; Large 184/80)."""
    assert hidden_channels(cin, expand) == hidden
    assert InvertedResidual(cin, cin, expand=expand).dw[0][0].out_channels == hidden


def test_residual_only_when_shape_is_kept() -> None:
    assert InvertedResidual(32, 32, stride=1).use_residual
    assert not InvertedResidual(32, 32, stride=2).use_residual
    assert not InvertedResidual(24, 32, stride=1).use_residual
    block = InvertedResidual(32, 32).eval()
    nn.init.zeros_(block.project[1].weight)  # silence the branch: the block is the identity
    nn.init.zeros_(block.project[1].bias)
    x = torch.randn(1, 32, 8, 8)
    assert torch.equal(block(x), x)


@pytest.mark.parametrize("mode,expected", [("none", [False] * 3), ("all", [True] * 3),
                                           ("alternate", [True, False, True])])
def test_se_placement_and_form(mode: str, expected: list[bool]) -> None:
    stage = build_stage(Spec(depth=3, width=40, expand=6, se=mode), ctx(24))
    assert [isinstance(b.se, SqueezeExcite) for b in stage] == expected
    if mode == "all":  # MNv3: on the hidden features, hidden/4 rounded to 8, ReLU, hard-sigmoid
        se = stage[1].se
        assert se.reduce.in_channels == 240 and se.reduce.out_channels == 64
        assert isinstance(se.act, nn.ReLU) and isinstance(se.gate, nn.Hardsigmoid)


def test_stride_and_width_change_on_first_block_only() -> None:
    stage = build_stage(Spec(depth=3, width=48, stride=2), ctx(24))
    assert [b.dw[0][0].stride for b in stage] == [(2, 2), (1, 1), (1, 1)]
    assert [b.use_residual for b in stage] == [False, True, True]


def test_onnx_parity_of_a_small_stage() -> None:
    stage = randomise(build_stage(Spec(depth=2, width=32, stride=2, expand=4, kernel=5, se="all", act="hswish"),
                                  ctx(16)))
    x = torch.randn(3, 16, 19, 23)
    with torch.no_grad():
        expected = stage(x).numpy()
    sess = ort.InferenceSession(onnx_bytes(stage, x[:1]), providers=["CPUExecutionProvider"])
    assert np.abs(sess.run(None, {"input": x.numpy()})[0] - expected).max() <= 1e-5


def _hidden_widths(name: str) -> list[int]:
    model = build_model(load_zoo(name))
    return [b.dw[0][0].out_channels for stage in model.stages for b in stage]


def test_mobilenetv3_large_075_blocks_match_the_tf_conv_defs() -> None:
    """V3_LARGE with depth_multiplier 0.75: every block's expanded width, as TF rounds it."""
    assert _hidden_widths("mobilenetv3_large_075") == [16, 64, 72, 72, 96, 96, 192, 160, 144, 144, 384, 528,
                                                       528, 720, 720]


def test_mobilenetv3_small_075_blocks_match_the_tf_conv_defs() -> None:
    assert _hidden_widths("mobilenetv3_small_075") == [16, 72, 88, 96, 192, 192, 96, 120, 240, 432, 432]


def test_efficientnet_lite2_depth_scaling_keeps_first_and_last_repeats() -> None:
    arch = load_zoo("efficientnet_lite2")
    assert [s.depth for s in arch.stages] == [1, 3, 3, 4, 4, 5, 1]  # ceil(1.2 * B0 repeats), ends fixed
    assert all(s.se == "none" and s.act == "relu6" for s in arch.stages)


@settings(max_examples=12, deadline=None)
@given(stages=st.lists(st.tuples(st.integers(1, 4), st.sampled_from([32, 40, 64, 96]), st.sampled_from([1, 2]),
                                 st.sampled_from([1.0, 2.5, 4.0, 6.0]), st.sampled_from([3, 5, 7]),
                                 st.sampled_from(["none", "all", "alternate"])), min_size=1, max_size=4))
def test_any_stage_runs_in_a_64px_network(stages) -> None:
    specs = [{"block": "mv2", "depth": d, "width": w, "stride": s, "expand": e, "kernel": k, "se": se}
             for d, w, s, e, k, se in stages]
    arch = parse_arch({"resolution": 64, "num_classes": 10, "stem": {"depth": 2, "channels": 16},
                       "stages": specs + [{"block": "repvit", "depth": 1, "width": 48, "stride": 1}]})
    out = build_model(arch).eval()(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
