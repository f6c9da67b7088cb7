"""The hybrid search space: the papers' ablation dimensions, Optuna encoding, membership, range."""
from __future__ import annotations

import optuna
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.arch import parse_arch
from nas.builder import build_model
from nas.profile import profile_arch
from search_spaces.hybrid import HybridSpace
from search_spaces.reference import load_zoo

SPACE = HybridSpace(num_classes=10)


def test_dimensions_cover_what_the_five_papers_ablate():
    dims = SPACE.dimensions()
    assert 0 not in dims["tokens"] and set(dims["tokens"]) >= {3, 6}  # 0 = no former stage chosen
    assert "former" in dims["s2.family"] and "former" in dims["s3.family"]
    assert set(dims["s2.sample_rate"]) == {1, 2, 4}
    assert set(dims["se"]) == {"none", "all", "alternate", "last"}
    assert len(dims["stem.depth"]) >= 3 and len(dims["s3.mlp_ratio"]) >= 3
    for key in ("resolution", "s0.depth", "s0.width", "s0.expand", "s0.kernel", "s3.heads", "token_dim"):
        assert len(dims[key]) >= 2
    assert {f for i in range(4) for f in dims[f"s{i}.family"]} == {"mv2", "repvit", "mobilevit", "lgl", "levit",
                                                                   "former"}


def test_size_is_documented_scale():
    assert SPACE.size() > 10 ** 12


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_every_sampled_member_validates_builds_and_runs(seed):
    arch = SPACE.sample(seed)
    assert parse_arch(arch.to_dict()) == arch
    assert SPACE.contains(arch) == (True, "")
    model = build_model(arch).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, arch.resolution, arch.resolution))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_encode_decode_round_trip(seed):
    arch = SPACE.sample(seed)
    params = SPACE.encode(arch)
    assert SPACE.decode(params) == arch
    assert SPACE.encode(SPACE.decode(params)) == params


def test_sampling_is_reproducible_from_a_seed():
    assert SPACE.sample(7) == SPACE.sample(7)
    assert len({SPACE.sample(s).arch_hash() for s in range(20)}) == 20


def test_sampling_within_a_family_layout_keeps_the_layout_and_varies_the_rest():
    layout = ["mv2", "repvit", "mobilevit", "former"]
    members = [SPACE.sample(s, families=layout) for s in range(20)]
    assert all([st.block for st in a.stages] == layout for a in members)
    assert all(SPACE.contains(a) == (True, "") for a in members)
    assert len({a.arch_hash() for a in members}) == 20
    assert SPACE.sample(3, families=layout) == members[3]
    with pytest.raises(ValueError, match="s0.family"):
        SPACE.sample(0, families=["levit", "repvit", "mobilevit", "former"])  # no attention in stage 0


def test_optuna_trials_decode_to_members():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for _ in range(10):
        trial = study.ask()
        arch = SPACE.suggest(trial)
        assert SPACE.decode(trial.params) == arch
        # encode picks one canonical SE placement where several mean the same (no conv stage left)
        assert SPACE.decode(SPACE.encode(arch)) == arch
        study.tell(trial, 0.0)


def test_flat_trials_ask_every_parameter_and_keep_the_ones_their_member_uses():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    families = set()
    for _ in range(30):
        trial = study.ask()
        params = SPACE.suggest_flat(trial)
        assert set(trial.params) == set(SPACE.dimensions())  # one fixed search space for every trial
        arch = SPACE.decode(params)
        assert params == SPACE.encode(arch)  # exactly the member's own parameters
        assert SPACE.canonical_params(trial.params) == params
        families.update(s.block for s in arch.stages)
        study.tell(trial, 0.0)
    assert {"former", "lgl", "mv2"} <= families  # conditional options were dropped and kept as needed


def test_contains_says_why_not():
    ok, reason = SPACE.contains(load_zoo("repvit_m0_9"))
    assert not ok and reason  # e.g. a 15-block stage is not among the depth choices
    arch = SPACE.sample(3)
    odd = parse_arch({**arch.to_dict(), "resolution": 100})
    assert SPACE.contains(odd) == (False, "resolution: 100 is not one of [64, 96, 128, 160, 192, 224]")


def test_range_from_below_mobilenetv3_small_at_64px_to_about_repvit_m1_0():
    smallest = profile_arch(SPACE.smallest())
    mnv3 = load_zoo("mobilenetv3_small_075")
    mnv3_64 = profile_arch(parse_arch({**mnv3.to_dict(), "resolution": 64, "num_classes": 10}))
    assert smallest["flops"] < mnv3_64["flops"] and smallest["params"] < mnv3_64["params"]
    largest = profile_arch(SPACE.largest())
    repvit = load_zoo("repvit_m1_0")
    repvit_10 = profile_arch(parse_arch({**repvit.to_dict(), "num_classes": 10}))
    assert 0.7 <= largest["flops"] / repvit_10["flops"] <= 2.0
    assert 0.5 <= largest["params"] / repvit_10["params"] <= 2.0


def test_listed_units_cover_every_member_at_that_resolution():
    from nas.blocks.units import arch_units

    listed = SPACE.units(64)
    members = [parse_arch({**SPACE.sample(seed).to_dict(), "resolution": 64}) for seed in range(200)]
    members += [SPACE.smallest(), parse_arch({**SPACE.largest().to_dict(), "resolution": 64})]
    for arch in members:
        if SPACE.contains(arch)[0]:
            assert set(arch_units(arch)) <= listed
    assert len(listed) < 3000  # what one resolution of a latency table costs to measure
