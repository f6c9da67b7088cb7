"""EdgeViT local-global-local stage (nas/blocks/lgl.py): shapes, the sparse-attention invariants
of the paper/official code, maps that are not multiples of the sample rate, ONNX parity."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from nas.arch import parse_arch
from nas.arch.stages import LGLStage
from nas.blocks import StageContext
from nas.blocks.lgl import GlobalSparseAttn, LocalAgg, PatchEmbed, build_stage
from nas.builder import build_model
from nas.errors import UserError
from nas.export import onnx_bytes


def _stage(cin: int, size: int, **spec) -> nn.Module:
    spec = {"depth": 1, "width": 32, "heads": 2, **spec}
    torch.manual_seed(0)
    return build_stage(LGLStage(**spec), StageContext(cin, (size, size), 0, 1, None)).eval()


@pytest.mark.parametrize("stride, cin, size, expected", [
    (2, 16, 16, 8),   # 2x2 stride-2 patch embedding
    (1, 32, 16, 16),  # official stage 1: no embedding, the stem made the width
    (1, 24, 16, 16),  # width change at stride 1: 1x1 embedding
])
def test_output_shape(stride, cin, size, expected):
    stage = _stage(cin, size, stride=stride, depth=2)
    with torch.no_grad():
        out = stage(torch.randn(2, cin, size, size))
    assert stage.out_channels == 32
    assert out.shape == (2, 32, expected, expected)
    assert isinstance(stage[0], PatchEmbed) == (stride == 2 or cin != 32)


def test_sample_rate_one_is_a_plain_transformer_block():
    """Official LGLBlock with sr_ratio 1: no LocalAgg, no sub-sampling, no LocalProp/LayerNorm."""
    blocks = list(_stage(32, 8, stride=1, sample_rate=1).children())
    assert not any(isinstance(m, LocalAgg | nn.ConvTranspose2d) for b in blocks for m in b.modules())
    assert any(isinstance(m, LocalAgg) for m in _stage(32, 8, stride=1, sample_rate=2).modules())


@pytest.mark.parametrize("r", [2, 4])
def test_local_prop_is_depthwise_transposed_conv_of_kernel_and_stride_r(r):
    prop = GlobalSparseAttn(32, 2, r).local_prop
    assert isinstance(prop, nn.ConvTranspose2d)
    assert prop.kernel_size == (r, r) and prop.stride == (r, r) and prop.groups == 32


@pytest.mark.parametrize("r", [2, 4])
def test_only_delegate_tokens_attend(r):
    """The official sampler is AvgPool2d(kernel 1, stride r): tokens off the stride-r grid do
    not reach the attention, so changing them leaves GlobalSparseAttn's output unchanged."""
    torch.manual_seed(0)
    attn = GlobalSparseAttn(16, 2, r).eval()
    x = torch.randn(1, 16, 9, 10)
    y = x.clone()
    y[:, :, 1::r, :] += 5.0
    y[:, :, :, 1::r] -= 3.0
    with torch.no_grad():
        assert torch.equal(attn(x), attn(y))
        z = x.clone()
        z[:, :, 0, 0] += 1.0  # a delegate
        assert not torch.allclose(attn(x), attn(z))


@pytest.mark.parametrize("r", [1, 2, 4])
@pytest.mark.parametrize("size", [(1, 1), (2, 3), (5, 7), (6, 9)])
def test_maps_not_multiple_of_the_sample_rate_keep_their_size(r, size):
    stage = _stage(32, size[0], stride=1, sample_rate=r)
    with torch.no_grad():
        out = stage(torch.randn(1, 32, *size))
    assert out.shape == (1, 32, *size)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size, expected", [((1, 1), (1, 1)), ((7, 5), (4, 3)), ((8, 8), (4, 4))])
def test_stride_two_on_odd_and_tiny_maps_rounds_up(size, expected):
    with torch.no_grad():
        out = _stage(16, size[0], stride=2, sample_rate=2)(torch.randn(1, 16, *size))
    assert out.shape[-2:] == expected


def test_heads_must_divide_width():
    with pytest.raises(UserError, match=r"stages\[0\]\.heads: 3 does not divide width \(32\)"):
        parse_arch({"resolution": 64, "stages": [{"block": "lgl", "depth": 1, "width": 32, "heads": 3}]})


def test_low_resolution_hybrid_network_exports_to_onnx():
    """At the proxy resolution (64 px) behind an mv2 stage, down to a 1x1 map with r = 4, both
    embedding kinds; ONNX Runtime (batch 2 through a batch-1 export) matches torch."""
    arch = parse_arch({
        "resolution": 64, "num_classes": 10, "stem": {"depth": 2, "channels": 16},
        "stages": [
            {"block": "mv2", "depth": 1, "width": 24},
            {"block": "lgl", "depth": 2, "width": 32, "stride": 1, "heads": 2, "sample_rate": 4},
            {"block": "lgl", "depth": 1, "width": 48, "stride": 2, "heads": 3, "sample_rate": 2},
            {"block": "lgl", "depth": 1, "width": 64, "stride": 2, "heads": 4, "sample_rate": 4},
            {"block": "lgl", "depth": 1, "width": 96, "stride": 2, "heads": 4, "sample_rate": 1},
        ],
        "head": {"norm": "bn"},
    })
    model = build_model(arch, seed=0).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    assert model.stage_outputs(x)[-1].shape == (2, 96, 1, 1)
    with torch.no_grad():
        expected = model(x).numpy()
    sess = ort.InferenceSession(onnx_bytes(model, x[:1]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-4
