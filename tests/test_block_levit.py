"""LeViT stage: shapes on every grid the hybrid space can produce, the attention-bias table and
its index (as the official code numbers it), shrink attention, ONNX parity, the zoo models."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from fakes import trained_looking
from hypothesis import given, settings
from hypothesis import strategies as st

from nas.arch import parse_arch
from nas.arch.stages import LeViTStage as Spec
from nas.blocks import StageContext
from nas.blocks.levit import Attention, LeViTStage, attention_bias_index, build_stage
from nas.builder import build_model
from nas.export import onnx_bytes
from nas.profile import count_params, inference_copy
from search_spaces.reference import load_zoo


def ctx(cin: int, size: tuple[int, int]) -> StageContext:
    return StageContext(in_channels=cin, in_size=size, index=1, num_stages=3, token_dim=None)


def randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Trained-looking (`fakes.trained_looking`) with random attention biases too."""
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, Attention):
            m.attention_biases.data = torch.randn(m.attention_biases.shape, generator=g)
    return trained_looking(model, seed)


def official_bias_index(size: int, stride: int) -> tuple[torch.Tensor, int]:
    """The official levit.py enumeration: offsets numbered in order of first appearance."""
    points = list(itertools.product(range(size), range(size)))
    queries = list(itertools.product(range(0, size, stride), range(0, size, stride)))
    offsets: dict[tuple[int, int], int] = {}
    idxs = []
    for q in queries:
        for k in points:
            off = (abs(q[0] - k[0]), abs(q[1] - k[1]))
            idxs.append(offsets.setdefault(off, len(offsets)))
    return torch.tensor(idxs).view(len(queries), len(points)), len(offsets)


@pytest.mark.parametrize("size,stride", [(1, 1), (2, 2), (5, 1), (7, 2), (14, 2)])
def test_bias_index_matches_official_numbering(size: int, stride: int) -> None:
    idx, table = official_bias_index(size, stride)
    assert table == size * size  # one bias per (|dy|, |dx|) offset
    assert torch.equal(attention_bias_index((size, size), stride), idx)


def test_bias_index_non_square_grid() -> None:
    idx = attention_bias_index((3, 5))
    assert idx.shape == (15, 15) and int(idx.max()) == 14 and torch.equal(idx, idx.T)
    assert idx[0, 5 * 2 + 4] == 2 * 5 + 4  # query (0,0), key (2,4): offset (2,4)
    assert attention_bias_index((3, 5), stride=2).shape == (2 * 3, 15)


@pytest.mark.parametrize(
    "cin,size,stride,width,out_size",
    [
        (32, (8, 8), 1, 32, (8, 8)),  # plain stage, no transition
        (32, (8, 8), 1, 48, (8, 8)),  # width change at stride 1: stride-1 shrink attention
        (32, (8, 8), 2, 64, (4, 4)),
        (32, (7, 7), 2, 64, (4, 4)),  # odd grid: queries on ceil(7/2)
        (48, (5, 3), 2, 64, (3, 2)),  # non-square, odd
        (64, (2, 2), 2, 96, (1, 1)),  # 64 px proxy: 2x2 -> 1x1
        (64, (1, 1), 2, 96, (1, 1)),  # 1x1 stays 1x1
        (8, (4, 4), 2, 16, (2, 2)),  # input narrower than key_dim: one shrink head
    ],
)
def test_shapes(cin: int, size: tuple[int, int], stride: int, width: int, out_size: tuple[int, int]) -> None:
    spec = Spec(depth=2, width=width, stride=stride, heads=2)
    stage = build_stage(spec, ctx(cin, size))
    y = stage(torch.randn(2, cin, *size))
    assert stage.out_channels == width and stage.out_size == out_size
    assert y.shape == (2, width, *out_size)
    y.sum().backward()  # train mode: BN batch statistics, gradients reach the biases
    assert all(m.attention_biases.grad is not None for m in stage.modules() if isinstance(m, Attention))


def test_stage_structure_follows_official_down_ops() -> None:
    """Shrink attention: heads = in_channels // key_dim, value dim 4 * key_dim, no residual,
    then a residual MLP; then `depth` (attention, MLP) pairs with the stage's heads."""
    stage = build_stage(Spec(depth=3, width=256, stride=2, heads=6, key_dim=16), ctx(128, (14, 14)))
    attns = [m for m in stage.modules() if isinstance(m, Attention)]
    assert len(attns) == 4 and len(stage.blocks) == 2 + 2 * 3
    shrink = attns[0]
    assert (shrink.heads, shrink.key_dim, shrink.value_dim, shrink.stride) == (8, 16, 64, 2)
    assert shrink.attention_biases.shape == (8, 14 * 14)
    assert all((a.heads, a.value_dim, a.stride) == (6, 32, 1) for a in attns[1:])
    assert all(a.attention_biases.shape == (6, 7 * 7) for a in attns[1:])
    assert stage.blocks[0] is shrink  # not wrapped in a residual


def test_no_transition_when_shape_kept() -> None:
    stage = build_stage(Spec(depth=2, width=128, stride=1, heads=4), ctx(128, (14, 14)))
    assert len(stage.blocks) == 4


def test_wrong_grid_is_a_clear_error() -> None:
    stage = build_stage(Spec(depth=1, width=32, stride=1, heads=2), ctx(32, (4, 4))).eval()
    with pytest.raises(ValueError, match="grid"):
        stage(torch.randn(1, 32, 5, 5))


@pytest.mark.parametrize("stride,width", [(1, 32), (2, 48)])
def test_onnx_parity_dynamic_batch(stride: int, width: int) -> None:
    ort = pytest.importorskip("onnxruntime")
    stage = randomise(build_stage(Spec(depth=2, width=width, stride=stride, heads=3, attn_ratio=1.5,
                                       mlp_ratio=3.0), ctx(32, (7, 7))))
    data = onnx_bytes(stage, torch.zeros(1, 32, 7, 7))
    x = torch.randn(3, 32, 7, 7)
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = inference_copy(stage)(x).numpy()
    assert np.abs(got - want).max() <= 1e-5


@settings(max_examples=12, deadline=None)
@given(cin=st.sampled_from([8, 16, 24, 40]), side=st.integers(1, 9), stride=st.sampled_from([1, 2]),
       width=st.sampled_from([8, 32, 56]), depth=st.integers(1, 3), heads=st.integers(1, 5),
       key_dim=st.sampled_from([8, 16, 32, 64]), attn_ratio=st.sampled_from([1.0, 1.7, 4.0]),
       mlp_ratio=st.sampled_from([1.0, 2.5, 6.0]))
def test_any_valid_spec_builds_and_runs(cin: int, side: int, stride: int, width: int, depth: int, heads: int,
                                         key_dim: int, attn_ratio: float, mlp_ratio: float) -> None:
    spec = Spec(depth=depth, width=width, stride=stride, heads=heads, key_dim=key_dim,
                attn_ratio=attn_ratio, mlp_ratio=mlp_ratio)
    stage = build_stage(spec, ctx(cin, (side, side + 1))).eval()
    y = stage(torch.randn(1, cin, side, side + 1))
    assert y.shape == (1, width, (side - 1) // stride + 1, side // stride + 1)
    assert torch.isfinite(y).all()


def test_low_resolution_network() -> None:
    """64 px proxy setting: 16x16 after the stem, down to 1x1 and a stride-2 stage on 1x1."""
    arch = parse_arch({
        "resolution": 64, "num_classes": 10, "stem": {"depth": 2, "channels": 16},
        "stages": [{"block": "levit", "stride": 1, "width": 32, "depth": 1, "heads": 2},
                   {"block": "levit", "stride": 2, "width": 48, "depth": 2, "heads": 3},
                   {"block": "levit", "stride": 2, "width": 64, "depth": 1, "heads": 4, "key_dim": 8},
                   {"block": "levit", "stride": 2, "width": 80, "depth": 1, "heads": 2},
                   {"block": "levit", "stride": 2, "width": 96, "depth": 1, "heads": 2, "mlp_ratio": 3.0},
                   {"block": "levit", "stride": 2, "width": 96, "depth": 1, "heads": 2}],
        "head": {"norm": "bn", "distill": True}})
    model = build_model(arch)
    sizes = [tuple(o.shape[-2:]) for o in model.stage_outputs(torch.randn(2, 3, 64, 64))]
    assert sizes == [(16, 16), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1), (1, 1)]
    assert model.eval()(torch.randn(2, 3, 64, 64)).shape == (2, 10)


def test_levit_128s_zoo_structure() -> None:
    """Official LeViT-128S: attention-bias tables 14x14 / 7x7 / 4x4 with heads 4, (8), 6, (16), 8
    (shrink heads in brackets), and 7.8M parameters as published (distillation head included)."""
    arch = load_zoo("levit_128s")
    model = build_model(arch)
    tables = [tuple(m.attention_biases.shape) for m in model.modules() if isinstance(m, Attention)]
    assert tables == [(4, 196)] * 2 + [(8, 196)] + [(6, 49)] * 3 + [(16, 49)] + [(8, 16)] * 4
    params = count_params(inference_copy(model))
    assert abs(params / (arch.meta["published"]["params_m"] * 1e6) - 1) < 0.05
    assert isinstance(model.stages[0], LeViTStage)
