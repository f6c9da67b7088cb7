"""Latency units: a network's units account for every parameter and every FLOP it has, exactly."""
from __future__ import annotations

import pytest

from nas.arch import parse_arch
from nas.blocks.units import Unit, arch_units
from nas.builder import build_model
from nas.profile import count_flops, count_params, inference_copy
from search_spaces.hybrid import HybridSpace
from search_spaces.reference import load_zoo


def _unit_flops(unit: Unit) -> int:
    return count_flops(inference_copy(unit.build()), inputs=unit.example_inputs())


def _model_flops(arch) -> int:
    return count_flops(inference_copy(build_model(arch)), arch.resolution)


def _check_accounts(arch) -> None:
    units = arch_units(arch)
    model = inference_copy(build_model(arch))
    assert sum(count_params(inference_copy(u.build())) for u in units) == count_params(model)
    assert sum(_unit_flops(u) for u in units) == _model_flops(arch)


@pytest.mark.parametrize("name", ["repvit_m0_9", "mobilevit_xxs", "edgevit_xxs", "levit_128s", "mobile_former_26m",
                                  "mobilenetv3_small_075"])
def test_zoo_model_units_add_up_to_the_model(name):
    _check_accounts(load_zoo(name))


@pytest.mark.parametrize("seed", range(6))
def test_sampled_member_units_add_up_to_the_member(seed):
    _check_accounts(HybridSpace(num_classes=10).sample(seed))


def test_unit_keys_are_canonical_and_distinguish_shapes():
    a = Unit.make("repvit.block", [(64, 8, 8)], channels=64, expand=2.0, kernel=3, se=True, act="gelu")
    b = Unit.make("repvit.block", [(64, 8, 8)], se=True, act="gelu", kernel=3, expand=2.0, channels=64)
    c = Unit.make("repvit.block", [(64, 7, 7)], channels=64, expand=2.0, kernel=3, se=True, act="gelu")
    assert a == b and a.key == b.key == "repvit.block(act=gelu,channels=64,expand=2.0,kernel=3,se=1)@64x8x8"
    assert c.key != a.key


def test_odd_sizes_follow_the_network():
    arch = parse_arch({**HybridSpace(num_classes=10).sample(3).to_dict(), "resolution": 96})
    _check_accounts(arch)
