"""MobileViT stage (nas/blocks/mobilevit.py): what the paper and apple/ml-cvnets specify."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fakes import trained_looking

from nas.arch import parse_arch
from nas.arch.stages import MobileViTStage
from nas.blocks import StageContext
from nas.blocks.mobilevit import Attention, MobileViTBlock, build_stage
from nas.builder import build_model
from nas.errors import UserError
from nas.export import onnx_bytes


def _stage(cin: int = 24, **fields) -> torch.nn.Module:
    spec = MobileViTStage(**{"depth": 2, "width": 32, "dim": 48, "heads": 4, "expand": 2, **fields})
    return build_stage(spec, StageContext(cin, (16, 16), 0, 1, None))




@pytest.mark.parametrize("stride, cin, size, out", [(2, 24, 16, 8), (1, 32, 16, 16), (1, 24, 16, 16), (2, 24, 15, 8)])
def test_output_shapes(stride: int, cin: int, size: int, out: int) -> None:
    stage = _stage(cin, stride=stride)
    y = stage(torch.randn(2, cin, size, size))
    assert stage.out_channels == 32
    assert y.shape == (2, 32, out, out)


def test_stage_opens_with_mv2_only_when_it_must() -> None:
    """Stride 2 opens with the paper's downsampling MV2; stride 1 at equal width is the bare
    MobileViT block; stride 1 at another width needs a stride-1 MV2 to map the channels."""
    assert [type(m).__name__ for m in _stage(24, stride=2)] == ["InvertedResidual", "MobileViTBlock"]
    assert [type(m).__name__ for m in _stage(32, stride=1)] == ["MobileViTBlock"]
    assert [type(m).__name__ for m in _stage(24, stride=1)] == ["InvertedResidual", "MobileViTBlock"]


@pytest.mark.parametrize("patch", [1, 2, 4])
@pytest.mark.parametrize("hw", [(1, 1), (2, 2), (3, 5), (7, 9), (6, 10)])
def test_any_map_size_works(patch: int, hw: tuple[int, int]) -> None:
    """Maps smaller than or not divisible by the patch (64 px inputs reach 2x2 and 1x1) are
    resized to the next multiple and back: the block keeps the input's H x W."""
    stage = _stage(32, stride=1, patch=patch).eval()
    assert stage(torch.randn(1, 32, *hw)).shape == (1, 32, *hw)


def test_attention_runs_across_patches_per_pixel_position() -> None:
    """Unfolding: one sequence per in-patch position (p*p of them), each of N = HW/p^2 patches."""
    block = MobileViTBlock(channels=16, dim=32, depth=1, heads=2, mlp_ratio=2.0, patch=2, kernel=3, act="swish")
    seen: list[torch.Size] = []
    block.transformer[0].attn.register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    block(torch.randn(3, 16, 8, 12))
    assert seen == [torch.Size([3, 4, 24, 32])]


def test_attention_matches_reference_multihead_attention() -> None:
    """Explicit-matmul attention equals torch's MHA with the same fused projections."""
    torch.manual_seed(0)
    attn = Attention(dim=32, heads=4)
    mha = torch.nn.MultiheadAttention(32, 4, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.qkv.weight)
        mha.in_proj_bias.copy_(attn.qkv.bias)
        mha.out_proj.weight.copy_(attn.proj.weight)
        mha.out_proj.bias.copy_(attn.proj.bias)
    x = torch.randn(2, 4, 9, 32)
    flat = x.reshape(8, 9, 32)
    ref = mha(flat, flat, flat, need_weights=False)[0].reshape(2, 4, 9, 32)
    torch.testing.assert_close(attn(x), ref, atol=1e-5, rtol=1e-5)


def test_parameter_count_follows_official_layers() -> None:
    """MobileViT-XXS layer 3 (24 -> 48 channels, d = 64, L = 2, FFN 2d, 4 heads) layer by layer:
    MV2 (expand 2), local 3x3 conv-BN, bias-free 1x1 to d, L pre-norm layers with biased
    qkv/proj/FFN, final LayerNorm, 1x1 conv-BN back to C, 3x3 fusion conv-BN on 2C."""
    cin, c, d, depth, hidden = 24, 48, 64, 2, 48
    mv2 = cin * hidden + 2 * hidden + 9 * hidden + 2 * hidden + hidden * c + 2 * c
    layer = 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (d * 2 * d + 2 * d) + (2 * d * d + d)
    block = (9 * c * c + 2 * c) + c * d + depth * layer + 2 * d + (d * c + 2 * c) + (9 * 2 * c * c + 2 * c)
    stage = build_stage(MobileViTStage(depth=depth, width=c, dim=d, expand=2, heads=4, mlp_ratio=2.0),
                        StageContext(cin, (64, 64), 0, 1, None))
    assert sum(p.numel() for p in stage.parameters()) == mv2 + block


def test_heads_must_divide_dim() -> None:
    with pytest.raises(UserError, match=r"stages\[0\]\.heads: 5 does not divide dim \(48\)"):
        parse_arch({"resolution": 64,
                    "stages": [{"block": "mobilevit", "depth": 1, "width": 32, "dim": 48, "heads": 5}]})


def _onnx_max_diff(model: torch.nn.Module, shape: tuple[int, ...]) -> float:
    data = onnx_bytes(model, torch.zeros(1, *shape[1:]))
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = torch.randn(*shape)
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    return float(np.abs(session.run(None, {"input": x.numpy()})[0] - ref).max())


@pytest.mark.parametrize("size, patch", [(16, 2), (7, 4)])
def test_onnx_parity_with_dynamic_batch(size: int, patch: int) -> None:
    """Exported at batch 1, run at batch 3 in ONNX Runtime; the 7 px case takes the resize path."""
    stage = _stage(24, stride=2, patch=patch).eval()
    trained_looking(stage)
    assert _onnx_max_diff(stage, (3, 24, size, size)) <= 1e-4


def test_network_at_proxy_resolution() -> None:
    """64 px network of MobileViT stages only, down to 1x1 maps (patch 4 on 2x2, patch 2 on 1x1)."""
    stages = [
        {"block": "mobilevit", "depth": 1, "width": 32, "dim": 48, "stride": 1, "heads": 2},
        {"block": "mobilevit", "depth": 2, "width": 64, "dim": 80, "stride": 2, "patch": 2},
        {"block": "mobilevit", "depth": 3, "width": 96, "dim": 96, "stride": 2, "patch": 2, "kernel": 5},
        {"block": "mobilevit", "depth": 1, "width": 96, "dim": 64, "stride": 2, "patch": 4},
        {"block": "mobilevit", "depth": 1, "width": 80, "dim": 64, "stride": 2, "patch": 2, "act": "gelu"},
    ]
    arch = parse_arch({"resolution": 64, "num_classes": 10, "stem": {"depth": 2, "channels": 16}, "stages": stages})
    model = build_model(arch).eval()
    trained_looking(model)
    feats = model.stage_outputs(torch.randn(2, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 16, 8, 4, 2, 1]
    assert _onnx_max_diff(model, (2, 3, 64, 64)) <= 1e-4
