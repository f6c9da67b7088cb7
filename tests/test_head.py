"""The classifier head: the official Mobile-Former head is expressible, and fields added to the
schema after v1 leave every earlier architecture's hash and latency-unit key as they were."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nas.arch import parse_arch
from nas.arch.schema import HeadSpec
from nas.blocks.head import Head
from nas.blocks.units import arch_units
from nas.builder import build_model
from predictors.accuracy.bench import read_bench
from search_spaces.reference import load_zoo

# Mobile-Former-26M's head in the official code (AAboys/MobileFormer, MergeClassifier): channel
# shuffle, 1x1 conv in 4 groups to 6 x 96 channels, BN, ReLU6, pool, h_swish, concat token 0,
# Linear to 1024, BatchNorm1d, h_swish, Linear to the classes.
OFFICIAL_26M = HeadSpec(channels=576, groups=4, act="relu6", pool_act="hswish", hidden=1024, hidden_norm="bn",
                        hidden_act="hswish")


def test_the_official_mobile_former_head_computes_its_layers_in_order():
    head = Head(OFFICIAL_26M, in_channels=96, num_classes=1000, token_dim=128).eval()
    conv, bn = head.conv[0][0], head.conv[0][1]
    assert conv.groups == 4 and conv.weight.numel() == 96 * 576 // 4  # the dense conv's 41,472 extra weights gone
    assert isinstance(head.conv[1], torch.nn.ReLU6) and isinstance(head.pool_act, torch.nn.Hardswish)
    linear, norm, act = head.hidden
    assert (linear.in_features, linear.out_features) == (576 + 128, 1024)
    assert isinstance(norm, torch.nn.BatchNorm1d) and isinstance(act, torch.nn.Hardswish)
    x, tokens = torch.randn(2, 96, 7, 7), torch.randn(2, 3, 128)
    # the same function written out by hand from the official layer order
    shuffled = x.unflatten(1, (4, -1)).transpose(1, 2).flatten(1, 2)
    pooled = torch.nn.functional.hardswish(torch.nn.functional.relu6(bn(conv(shuffled))).mean((2, 3)))
    expected = head.fc(act(norm(linear(torch.cat([pooled, tokens[:, 0]], dim=1)))))
    assert torch.allclose(head(x, tokens), expected, atol=1e-6)


# The release's MergeClassifier state_dict for Mobile-Former-26M, name by name, beside ours: what
# loading an official checkpoint maps, and the shapes that pin the groups, widths and BatchNorm1d.
# (Its conv.0 is the ChannelShuffle(4), fc.2 the h_swish, classifier.0 the dropout: no weights.)
RELEASE_26M_HEAD = {
    "conv.1.weight": ("conv.0.0.weight", (576, 96 // 4, 1, 1)),  # 1x1 conv in 4 groups, no bias
    **{f"conv.2.{p}": (f"conv.0.1.{p}", (576,)) for p in ("weight", "bias", "running_mean", "running_var")},
    "fc.0.weight": ("hidden.0.weight", (1024, 576 + 128)),  # pooled features + token 0
    "fc.0.bias": ("hidden.0.bias", (1024,)),
    **{f"fc.1.{p}": (f"hidden.1.{p}", (1024,)) for p in ("weight", "bias", "running_mean", "running_var")},
    "classifier.1.weight": ("fc.weight", (1000, 1024)),
    "classifier.1.bias": ("fc.bias", (1000,)),
}


def test_the_26m_zoo_head_is_the_release_head_parameter_for_parameter():
    assert load_zoo("mobile_former_26m").head == OFFICIAL_26M
    head = build_model(load_zoo("mobile_former_26m")).head
    ours = {k: tuple(v.shape) for k, v in head.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert ours == dict(RELEASE_26M_HEAD.values())


@pytest.mark.parametrize("name, width, groups, hidden, token_dim", [
    ("mobile_former_26m", 96, 4, 1024, 128), ("mobile_former_96m", 128, 1, 1280, 128),
    ("mobile_former_294m", 192, 1, 1920, 192)])
def test_every_zoo_mobile_former_head_has_the_release_layers_in_order(name, width, groups, hidden, token_dim):
    """[shuffle] 1x1 conv (6x the last width) - BN - ReLU6 - pool - h_swish - concat token 0 - Linear -
    BatchNorm1d - h_swish - (dropout) - Linear; only the 26M groups (and shuffles) its 1x1 conv."""
    head = build_model(load_zoo(name)).head
    layers = [type(m).__name__ for m in head.modules() if not list(m.children())]
    assert layers == ["Conv2d", "BatchNorm2d", "ReLU6", "Hardswish", "Linear", "BatchNorm1d", "Hardswish",
                      "Identity", "Dropout", "Linear"]  # Identity: no BN before the classifier (LeViT's norm)
    conv = head.conv[0][0]
    assert head.groups == conv.groups == groups and conv.weight.shape == (6 * width, width // groups, 1, 1)
    assert (head.hidden[0].in_features, head.hidden[0].out_features) == (6 * width + token_dim, hidden)


def test_fields_added_after_v1_keep_earlier_hashes_and_unit_keys_at_their_default():
    row = read_bench(Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "proxy_bench")[0]
    written_before = {**row["arch"], "head": {k: v for k, v in row["arch"]["head"].items()
                                              if k not in ("groups", "pool_act", "hidden_norm", "hidden_act")}}
    arch = parse_arch(written_before)
    assert arch.arch_hash() == row["arch_hash"]  # the bench row still names its member
    changed = parse_arch({**written_before, "head": {**written_before["head"], "pool_act": "hswish"}})
    assert changed.arch_hash() != arch.arch_hash()
    head_key = [u.key for u in arch_units(arch) if u.op == "head"]
    assert head_key and "pool_act" not in head_key[0] and "groups" not in head_key[0]
    assert [u.key for u in arch_units(changed) if u.op == "head"] != head_key


def test_a_grouped_head_needs_a_conv_whose_width_the_groups_divide():
    with pytest.raises(ValueError, match="groups 4"):
        HeadSpec(channels=0, groups=4)
    with pytest.raises(ValueError, match="groups 4"):
        HeadSpec(channels=570, groups=4)
