"""Mobile-Former stage (nas/blocks/former.py): what the paper and the official release specify."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fakes import trained_looking

from nas.arch import parse_arch
from nas.arch.stages import FormerStage
from nas.blocks import StageContext
from nas.blocks.former import (
    DownMobileSubBlock,
    DynamicReLU,
    Former,
    FormerToMobile,
    LiteStage,
    MobileSubBlock,
    MobileToFormer,
    build_stage,
)
from nas.blocks.units import arch_units
from nas.builder import build_model
from nas.errors import UserError
from nas.export import onnx_bytes
from search_spaces.reference import load_zoo


def _stage(cin: int = 24, in_dim: int | None = None, in_tokens: int | None = None, **fields) -> torch.nn.Module:
    spec = FormerStage(**{"depth": 2, "width": 32, "tokens": 4, "token_dim": 64, **fields})
    return build_stage(spec, StageContext(cin, (16, 16), 0, 1, in_dim, in_tokens))




@pytest.mark.parametrize("stride, size, out", [(1, 16, 16), (2, 16, 8), (2, 15, 8), (2, 1, 1), (1, 3, 3)])
def test_output_shapes(stride: int, size: int, out: int) -> None:
    stage = _stage(24, stride=stride)
    assert stage.uses_tokens and stage.out_channels == 32 and stage.token_dim == 64
    x, tokens = stage(torch.randn(2, 24, size, size + 1), None)
    assert x.shape == (2, 32, out, (size + 2) // 2 if stride == 2 else size + 1)
    assert tokens.shape == (2, 4, 64)


def test_first_stage_owns_the_tokens_shared_by_every_image() -> None:
    """Tokens are learnable global priors, not a projection of the image (unlike ViT patches):
    before the first bridge they are the same for every image."""
    stage = _stage(24)
    assert stage.entry.extra.shape == (4, 64) and stage.entry.extra.requires_grad
    start = stage.entry(torch.randn(3, 24, 8, 8), None)
    assert start.shape == (3, 4, 64) and torch.equal(start[0], start[2])


@pytest.mark.parametrize("in_tokens, in_dim", [(4, 64), (6, 64), (3, 48)])
def test_later_stage_takes_incoming_tokens(in_tokens: int, in_dim: int) -> None:
    """A later stage keeps the incoming tokens (first ones first: token 0 is the classifier's),
    projects them when token_dim changes, appends learnable ones only when it wants more."""
    stage = _stage(24, in_dim=in_dim, in_tokens=in_tokens).eval()
    incoming = torch.randn(2, in_tokens, in_dim)
    entered = stage.entry(torch.randn(2, 24, 8, 8), incoming)
    assert entered.shape == (2, 4, 64)
    assert (stage.entry.extra is None) == (in_tokens >= 4)
    if in_dim == 64:
        assert torch.equal(entered[:, :min(in_tokens, 4)], incoming[:, :4])
    else:
        assert isinstance(stage.entry.proj, torch.nn.Linear)
    assert stage(torch.randn(2, 24, 8, 8), incoming)[1].shape == (2, 4, 64)


def test_stride_two_is_mobile_former_down() -> None:
    """Mobile-Former-down: DW(stride 2, x6) -> PW -> DW(x4) -> PW, both 1x1 convs after the
    downsampling; the other blocks are 1x1 expand -> DW -> 1x1 project."""
    stage = _stage(24, stride=2, depth=3, expand=3)
    down, rest = stage.blocks[0].mobile, [b.mobile for b in stage.blocks[1:]]
    assert isinstance(down, DownMobileSubBlock) and all(isinstance(m, MobileSubBlock) for m in rest)
    assert down.dw1[0].stride == (2, 2) and down.dw1[0].groups == 24
    assert down.pw1.conv[0].weight.shape == (32, 24 * 6, 1, 1)
    assert down.dw2[0].weight.shape == (32 * 4, 1, 3, 3)
    assert rest[0].expand.conv[0].weight.shape == (32 * 3, 32, 1, 1)
    assert not stage.blocks[0].use_residual and stage.blocks[1].use_residual


def test_bridges_are_light() -> None:
    """No projection on the many pixels: Mobile->Former has only token-side linears (W_q, the
    gate, W_o), Former->Mobile only W_k and W_v; the former projects only its queries."""
    m2f, f2m, former = MobileToFormer(32, 64, 2), FormerToMobile(32, 64, 2), Former(64, 4, 2.0)
    assert {n for n, _ in m2f.named_parameters()} == {"q.weight", "q.bias", "gate.0.weight", "gate.0.bias",
                                                     "proj.weight", "proj.bias", "norm.weight", "norm.bias"}
    assert {n.split(".")[0] for n, _ in f2m.named_parameters()} == {"k", "v"}
    assert former.ffn[0].out_features == 128  # FFN expansion 2, not 4
    n_attn = sum(p.numel() for n, p in former.named_parameters() if n.split(".")[0] in ("q", "proj"))
    assert n_attn == 2 * (64 * 64 + 64)


def test_mobile_to_former_sees_the_map_as_a_set_and_former_to_mobile_per_pixel() -> None:
    """Tokens attend over pixels (invariant to a pixel permutation); each pixel attends over
    tokens on its own (equivariant)."""
    torch.manual_seed(0)
    x, z = torch.randn(2, 32, 5, 6), torch.randn(2, 3, 64)
    perm = torch.randperm(30)
    xp = x.flatten(2)[..., perm].reshape_as(x)
    m2f, f2m = MobileToFormer(32, 64, 2).eval(), FormerToMobile(32, 64, 2).eval()
    torch.testing.assert_close(m2f(xp, z), m2f(x, z))
    torch.testing.assert_close(f2m(xp, z), f2m(x, z).flatten(2)[..., perm].reshape_as(x))


def test_former_is_post_norm_and_token_permutation_equivariant() -> None:
    former = Former(64, 4, 2.0).eval()
    z = torch.randn(2, 5, 64)
    out = former(z)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)  # last op is LayerNorm
    perm = torch.tensor([3, 0, 4, 1, 2])
    torch.testing.assert_close(former(z[:, perm]), out[:, perm])


def test_dynamic_relu_is_generated_from_token_zero() -> None:
    """Coefficients come from the first token only; a neutral generator is ReLU (a1 = 1, a2 = 0);
    the slopes stay in a1 in [0, 2], a2 in [-1, 1]."""
    act = DynamicReLU(8, 64)
    x, z = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 64)
    z2 = z.clone()
    z2[:, 1:] = torch.randn(2, 2, 64)
    torch.testing.assert_close(act(x, z), act(x, z2))
    torch.nn.init.zeros_(act.coeffs[2].weight)
    torch.nn.init.zeros_(act.coeffs[2].bias)
    torch.testing.assert_close(act(x, z), torch.relu(x))
    torch.nn.init.constant_(act.coeffs[2].bias, 100.0)  # both slopes saturate: max(2x, x)
    torch.testing.assert_close(act(x, z), torch.maximum(2 * x, x))


def test_lite_stage_is_bneck_lite_without_tokens() -> None:
    stage = _stage(16, lite=True, depth=1, width=16, stride=1, expand=2)
    assert isinstance(stage, LiteStage) and not getattr(stage, "uses_tokens", False)
    block = stage[0]
    assert block.dw[0][0].weight.shape == (32, 1, 3, 3) and block.project.conv[0].weight.shape == (16, 32, 1, 1)
    assert block.use_residual and stage(torch.randn(1, 16, 9, 9)).shape == (1, 16, 9, 9)


def test_grouped_pointwise_convs_fall_back_on_odd_input_widths() -> None:
    """Mobile-Former-26M groups its 1x1 convs by 4 (with a shuffle); a preceding stage of any
    width still builds: groups and bridge heads fall back to a divisor of its width."""
    stage = _stage(24, groups=4, stride=1)
    assert stage.blocks[0].mobile.expand.conv[0].groups == 4
    odd = _stage(33, groups=4, stride=2)
    assert odd.blocks[0].mobile_to_former.heads == 1
    assert odd.blocks[0].mobile.pw1.groups == 2  # 33 * 6 -> 32: the largest common divisor with 4
    assert odd(torch.randn(1, 33, 7, 7), None)[0].shape == (1, 32, 4, 4)


# ------------------------------------------------------------------ Mobile-Former-26M's shuffles, as released
def _shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The release's ChannelShuffle(groups): view as (groups, C / groups), transpose, flatten."""
    return x.unflatten(1, (groups, -1)).transpose(1, 2).flatten(1, 2)


def _mf26m() -> torch.nn.Module:
    model = build_model(load_zoo("mobile_former_26m")).eval()
    trained_looking(model)
    return model


def test_26m_bneck_lite_shuffles_after_the_expanding_depthwise_conv_not_after_the_grouped_1x1() -> None:
    """The release's DnaBlock3 with e2 = 0: DW 3x3 (8 -> 24, stride 2)-BN-ReLU6, ChannelShuffle(8),
    1x1 in 4 groups (24 -> 12)-BN, nothing after; each group of the 1x1 sees all 8 inputs."""
    lite = _mf26m().stages[0][0]
    assert [n for n, _ in lite.named_children()] == ["dw", "shuffle", "project"]
    assert lite.shuffle.groups == 8 and lite.project.conv[0].groups == 4 and lite.project.shuffle_groups == 1
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(lite(x), lite.project.conv(_shuffle(lite.dw(x), 8)))


def test_26m_down_blocks_shuffle_after_each_expanding_depthwise_conv_before_its_activation() -> None:
    """The release's DnaBlock3: conv1 = DW(stride 2, x6)-BN-ChannelShuffle(inp), dynamic ReLU,
    conv2 = 1x1 in 4 groups-BN; conv3 = DW(x4)-BN-ChannelShuffle(oup), dynamic ReLU, conv4 = 1x1
    in 4 groups-BN, plus conv2's output. No shuffle after either grouped 1x1."""
    model = _mf26m()
    downs = [s.blocks[0].mobile for s in model.stages[1:] if isinstance(s.blocks[0].mobile, DownMobileSubBlock)]
    assert [(d.shuffle1.groups, d.shuffle2.groups) for d in downs] == [(12, 24), (24, 48), (64, 96)]
    for down in downs:
        assert [n for n, _ in down.named_children()] == ["dw1", "shuffle1", "act1", "pw1", "dw2", "shuffle2",
                                                         "act2", "pw2"]
        assert (down.pw1.shuffle_groups, down.pw2.shuffle_groups) == (1, 1) and down.pw1.conv[0].groups == 4
    down, x, z = downs[0], torch.randn(2, 12, 8, 8), torch.randn(2, 3, 128)
    with torch.no_grad():
        conv2 = down.pw1.conv(down.act1(_shuffle(down.dw1(x), 12), z))
        release = down.pw2.conv(down.act2(_shuffle(down.dw2(conv2), 24), z)) + conv2
        torch.testing.assert_close(down(x, z), release)


def test_26m_stride_one_blocks_shuffle_after_each_grouped_1x1() -> None:
    """The release's DnaBlock (group_num 4): 1x1 in 4 groups-BN-ChannelShuffle(4), dynamic ReLU, DW,
    dynamic ReLU, 1x1 in 4 groups-BN-ChannelShuffle(4)."""
    blocks = [b.mobile for s in _mf26m().stages[1:] for b in s.blocks if isinstance(b.mobile, MobileSubBlock)]
    assert len(blocks) == 5  # the release's blocks 2, 4, 6, 7 and 9
    for m in blocks:
        assert (m.expand.shuffle_groups, m.project.shuffle_groups) == (4, 4)
    m, x, z = blocks[0], torch.randn(2, 12, 8, 8), torch.randn(2, 3, 128)
    with torch.no_grad():
        hidden = m.act2(m.dw(m.act1(_shuffle(m.expand.conv(x), 4), z)), z)
        torch.testing.assert_close(m(x, z), _shuffle(m.project.conv(hidden), 4))


def test_shuffle_after_dw_defaults_to_after_every_1x1_and_leaves_hashes_and_unit_keys_alone() -> None:
    """Added after schema v1: at its default (false) an architecture keeps the hash and latency-unit
    keys it had before the field existed, and its blocks shuffle after each grouped 1x1."""
    stage = {"block": "former", "depth": 1, "width": 32, "token_dim": 64, "groups": 4}
    before = parse_arch({"resolution": 64, "stages": [{**stage, "lite": True}, stage]})
    spelled = parse_arch({"resolution": 64, "stages": [{**stage, "lite": True, "shuffle_after_dw": False},
                                                       {**stage, "shuffle_after_dw": False}]})
    after = parse_arch({"resolution": 64, "stages": [{**stage, "lite": True, "shuffle_after_dw": True},
                                                     {**stage, "shuffle_after_dw": True}]})
    assert spelled.arch_hash() == before.arch_hash() != after.arch_hash()
    keys = [u.key for u in arch_units(before)]
    assert not any("shuffle_after_dw" in k for k in keys)
    assert [u.key for u in arch_units(after)] != keys
    lite = build_model(before).stages[0][0]
    assert isinstance(lite.shuffle, torch.nn.Identity) and lite.project.shuffle_groups == 4


@pytest.mark.parametrize("fields, message", [
    ({"heads": 5}, "heads: 5 does not divide token_dim"),
    ({"width": 30, "groups": 4}, "groups: 4 does not divide width"),
    ({"lite": True, "expand": 2.5}, "expand: bneck-lite"),
    ({"lite": True, "closing_bridge": True}, "closing_bridge"),
    ({"shuffle_after_dw": True}, "shuffle_after_dw: needs grouped"),
])
def test_schema_rejects_what_cannot_build(fields: dict, message: str) -> None:
    stage = {"block": "former", "depth": 1, "width": 32, "token_dim": 64, **fields}
    with pytest.raises(UserError, match=message):
        parse_arch({"resolution": 64, "stages": [stage]})


@pytest.mark.parametrize("with_tokens", [False, True])
def test_onnx_parity(with_tokens: bool) -> None:
    """Exports with a dynamic batch, first stage (tokens created inside) and later stage alike."""
    stage = _stage(24, in_dim=48 if with_tokens else None, in_tokens=6 if with_tokens else None,
                   stride=2, closing_bridge=True).eval()
    trained_looking(stage)
    x, z = torch.randn(3, 24, 9, 11), torch.randn(3, 6, 48)
    example = (x[:1], z[:1]) if with_tokens else x[:1]
    sess = ort.InferenceSession(onnx_bytes(stage, example), providers=["CPUExecutionProvider"])
    feeds = {"input0": x.numpy(), "input1": z.numpy()} if with_tokens else {"input": x.numpy()}
    outs = sess.run(None, feeds)
    with torch.no_grad():
        ref = stage(x, z if with_tokens else None)
    for got, want in zip(outs, ref):
        assert got.shape == tuple(want.shape)
        assert np.abs(got - want.numpy()).max() <= 1e-4


def test_hybrid_network_at_64px() -> None:
    """The search space mixes former stages after mv2/repvit at 64 px: 3 and then 6 tokens of
    another dimension, a 1x1 map at the end; the head reads token 0."""
    arch = parse_arch({
        "resolution": 64, "num_classes": 10, "stem": {"depth": 2, "channels": 16},
        "stages": [{"block": "mv2", "depth": 1, "width": 24, "expand": 2},
                   {"block": "repvit", "depth": 1, "width": 40, "stride": 2},
                   {"block": "former", "depth": 2, "width": 48, "stride": 2, "tokens": 3, "token_dim": 64},
                   {"block": "former", "depth": 1, "width": 64, "stride": 1, "tokens": 6, "token_dim": 96,
                    "expand": 3},
                   {"block": "former", "depth": 1, "width": 96, "stride": 2, "tokens": 6, "token_dim": 96,
                    "closing_bridge": True},
                   {"block": "mv2", "depth": 1, "width": 96, "stride": 2}],
        "head": {"channels": 128, "hidden": 256}})
    model = build_model(arch)
    y = model(torch.randn(2, 3, 64, 64))
    y.sum().backward()
    assert y.shape == (2, 10) and model.stages[2].entry.extra.grad is not None
    assert model.head.hidden[0].in_features == 128 + 96


@pytest.mark.parametrize("name, blocks, params_m", [
    ("mobile_former_26m", 8, 3.2), ("mobile_former_96m", 8, 4.6), ("mobile_former_294m", 11, 11.4)])
def test_zoo_structure(name: str, blocks: int, params_m: float) -> None:
    """Block counts of the official tables (294M: 11 Mobile-Former blocks after the stem and
    bneck-lite) and parameter counts within 5% (FLOPs: the shared zoo test)."""
    arch = load_zoo(name)
    model = build_model(arch)
    assert sum(len(s.blocks) for s in model.stages if getattr(s, "uses_tokens", False)) == blocks
    assert isinstance(model.stages[0], LiteStage)
    assert abs(sum(p.numel() for p in model.parameters()) / (params_m * 1e6) - 1) < 0.05
