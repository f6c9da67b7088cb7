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
from predictors.accuracy.bench import read_bench

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
