"""The reference zoo: every published model within 5% params and 15% FLOPs of its paper, and
its ONNX export equal to torch within 1e-4; the deploy counts (every BN folded, the RepViT
convention) below ours and of a network that computes the same function."""
from __future__ import annotations

import functools

import numpy as np
import onnxruntime as ort
import pytest
import torch

from nas.blocks.common import ConvBN
from nas.blocks.units import arch_units
from nas.builder import build_model
from nas.export import onnx_bytes
from nas.profile import count_params, deploy_copy, deploy_counts
from search_spaces.reference import fidelity, load_zoo, zoo_names

_fidelity = functools.cache(fidelity)  # two tests read each row; one count per model

FAMILIES = {"mv2", "repvit", "mobilevit", "lgl", "levit", "former"}


def test_zoo_covers_the_five_families():
    families = {s.block for n in zoo_names() for s in load_zoo(n).stages}
    assert families == FAMILIES


@pytest.mark.parametrize("name", zoo_names())
def test_published_figures_are_recorded(name):
    pub = load_zoo(name).meta["published"]
    assert {"paper", "params_m", "flops_m", "top1", "resolution", "source"} <= set(pub)
    assert pub["resolution"] == load_zoo(name).resolution


@pytest.mark.parametrize("name", zoo_names())
def test_params_and_flops_match_the_paper(name):
    row = _fidelity(name)
    assert abs(row["params_err"]) <= 0.05, f"params {row['params'] / 1e6:.2f}M vs {row['params_published'] / 1e6}M"
    assert abs(row["flops_err"]) <= 0.15, f"FLOPs {row['flops'] / 1e6:.0f}M vs {row['flops_published'] / 1e6}M"


def _with_trained_like_norms(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """BatchNorm statistics calibrated on `x` and random affine weights, as after training, so
    that export bugs in norm folding (and anything after it) show in the logits instead of
    hiding in near-zero or exploding activations of a freshly initialised network."""
    gen = torch.Generator().manual_seed(1)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in norms:
        m.weight.data.copy_(0.5 + torch.rand(m.num_features, generator=gen))
        m.bias.data.copy_(0.1 * torch.randn(m.num_features, generator=gen))
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(x)
        for m in norms:  # a dead channel's ~0 variance would amplify float noise by 1/sqrt(eps)
            m.running_var.clamp_(min=0.05)
    return model.eval()


@pytest.mark.parametrize("name", zoo_names())
def test_onnx_runtime_matches_torch(name):
    arch = load_zoo(name)
    x = torch.randn(2, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(0))
    model = _with_trained_like_norms(
        build_model(arch, seed=0),
        torch.randn(8, 3, arch.resolution, arch.resolution, generator=torch.Generator().manual_seed(2)))
    with torch.no_grad():
        expected = model(x).numpy()
    assert expected.std() > 0.01  # logits spread 100x the tolerance: the comparison below is not vacuous
    sess = ort.InferenceSession(onnx_bytes(model, x[:1]), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input": x.numpy()})[0]  # batch 2 through a batch-1 export: dynamic axis
    assert np.abs(got - expected).max() <= 1e-4, (np.abs(got - expected).max(), expected.std())


# ------------------------------------------------------------------ deploy counts: every BN folded
@pytest.mark.parametrize("name", zoo_names())
def test_deploy_params_are_below_ours_for_every_model_with_batchnorm(name):
    row = _fidelity(name)
    assert row["params_deploy"] < row["params"], (row["params_deploy"], row["params"])
    assert row["flops_deploy"] < row["flops"]  # fvcore counts an eval-mode BN: 2 per element


def test_deploy_count_of_conv_bn_is_the_conv_weights_and_one_bias_per_output_channel():
    model = torch.nn.Sequential(ConvBN(3, 8, 3), torch.nn.ReLU(), ConvBN(8, 16, 1))
    assert count_params(model) == 8 * 3 * 9 + 2 * 8 + 16 * 8 + 2 * 16  # conv without bias + BN
    params, _ = deploy_counts(model, 8)
    assert params == (8 * 3 * 9 + 8) + (16 * 8 + 16)


@pytest.fixture
def float64():
    """Float64 throughout (folded layers are created in the default dtype): float32 noise of a deep
    network (~3e-4 on LeViT's logits) would hide a fold that is off by 1e-6; float64 noise is 1e-12."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.mark.parametrize("name", ["repvit_m0_9", "levit_128s", "edgevit_xxs", "mobile_former_26m"])
def test_the_folded_network_computes_the_same_function(name, float64):
    arch = load_zoo(name).model_copy(update={"resolution": 64})
    model = _with_trained_like_norms(
        build_model(arch, seed=0), torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(2)))
    folded = deploy_copy(model)
    bns = [m for m in folded.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(bns) == (10 if name == "edgevit_xxs" else 0)  # only EdgeViT's pre-norms stay (no layer before)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert expected.dtype == torch.float64 and expected.std() > 0.01
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9)


# ------------------------------------------------------------------ the official structure, pinned
def test_edgevit_stem_is_the_official_patch_embedding_a_4x4_conv_with_bias_then_layernorm():
    model = build_model(load_zoo("edgevit_xxs"))
    shapes = {k: tuple(v.shape) for k, v in model.stem.state_dict().items()}
    assert shapes == {"0.proj.weight": (36, 3, 4, 4), "0.proj.bias": (36,), "0.norm.weight": (36,),
                      "0.norm.bias": (36,)}  # no BatchNorm statistics: saic-fi/edgevit patch_embed1
    x = torch.randn(2, 3, 32, 32)
    tokens = torch.nn.functional.conv2d(x, model.stem[0].proj.weight, model.stem[0].proj.bias, stride=4)
    expected = torch.nn.functional.layer_norm(tokens.permute(0, 2, 3, 1), (36,), model.stem[0].norm.weight,
                                              model.stem[0].norm.bias).permute(0, 3, 1, 2)
    torch.testing.assert_close(model.stem(x), expected)


def test_levit_gives_each_classifier_its_own_batchnorm_as_bn_linear_does():
    head = build_model(load_zoo("levit_128s")).head
    assert isinstance(head.norm, torch.nn.BatchNorm1d) and isinstance(head.norm_dist, torch.nn.BatchNorm1d)
    assert head.norm is not head.norm_dist and head.fc_dist is not None
    assert [n for n, _ in head.named_children()] == ["conv", "pool_act", "hidden", "norm", "dropout", "fc", "norm_dist",
                                                     "fc_dist"]


# ------------------------------------------------------------------ the shipped tables price the zoo
@pytest.mark.parametrize("device", ["host", "pixel6"])
def test_the_shipped_tables_price_every_zoo_model_and_count_its_derived_units(device):
    """At its own resolution and scaled to the proxy dataset (64 px, 10 classes). Only the units the
    Mobile-Former models changed in issue 21 are derived (predictors/latency/derive.py), not timed."""
    from predictors.latency.devices import SHIPPED
    from predictors.latency.predict import predict
    from predictors.latency.table import load_table
    from search_spaces.reference import load_zoo_scaled

    table = load_table(SHIPPED / f"{device}.json")
    for name in zoo_names():
        for arch in (load_zoo(name), load_zoo_scaled(name, 64, 10)):
            if arch.resolution not in table.resolutions:
                continue
            derived = [u.op for u in arch_units(arch) if table.entries[u.key].derived is not None]
            assert predict(arch, table).derived == len(derived)
            assert sorted(derived) == {"mobile_former_26m": ["former.down"] * 3 + ["former.lite", "head"],
                                       "mobile_former_96m": ["head"], "mobile_former_294m": ["head"]}.get(name, [])
