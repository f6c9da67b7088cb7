"""ArchConfig: validation with exact error paths, canonical form, hashing, files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nas.arch import ArchConfig, load_arch, loads_arch, parse_arch, save_arch
from nas.arch.schema import json_schema
from nas.atomic import path_name_problem
from nas.builder import build_model
from nas.errors import UserError


def _err(data) -> str:
    with pytest.raises(UserError) as exc:
        parse_arch(data, source="a.json")
    return str(exc.value)


def test_defaults_are_filled_and_schema_tagged(tiny_arch):
    d = tiny_arch.to_dict()
    assert d["schema"] == "hybrid-nas/arch/v1"
    assert d["stages"][0]["kernel"] == 3 and d["stages"][0]["se"] == "none"
    assert d["stem"]["strides"] == 1  # default: every stem layer strides


def test_error_names_the_field_path_and_the_allowed_values(tiny_arch_dict):
    tiny_arch_dict["stages"].append({"block": "lgl", "depth": 1, "width": 32, "heads": 2, "sample_rate": 3})
    assert _err(tiny_arch_dict) == "a.json: stages[2].sample_rate: 3 is not one of [1, 2, 4]"


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["stages"][0].update(block="transformer"), "stages[0].block: 'transformer' is not one of"),
    (lambda d: d["stages"][0].update(depth="two"), "stages[0].depth: input should be a valid integer"),
    (lambda d: d["stages"][0].update(depth=0), "stages[0].depth: input should be greater than or equal to 1"),
    (lambda d: d.update(resolution=4096), "resolution: input should be less than or equal to 1024"),
    (lambda d: d["stages"][1].update(colour="red"), "stages[1].colour: unknown field"),
    (lambda d: d.pop("resolution"), "resolution: required field is missing"),
    (lambda d: d["stages"][0].pop("block"), "stages[0].block: required field is missing"),
    (lambda d: d["stem"].update(strides=3), "stem.strides: 3 is more than depth (1)"),
    (lambda d: d.update(schema="hybrid-nas/arch/v9"), "schema: 'hybrid-nas/arch/v9' is not supported"),
    (lambda d: d.update(stages=[]), "stages: list should have at least 1 item"),
])
def test_each_kind_of_bad_value_gets_one_precise_line(tiny_arch_dict, mutate, expected):
    mutate(tiny_arch_dict)
    message = _err(tiny_arch_dict)
    assert expected in message and "\n" not in message


def test_malformed_json_is_a_user_error():
    with pytest.raises(UserError, match="not valid JSON: .* line 1"):
        loads_arch('{"resolution": ', source="x.json")
    with pytest.raises(UserError, match="expected a JSON object"):
        loads_arch("[1, 2]")


def test_hash_ignores_name_and_meta_but_not_architecture(tiny_arch):
    renamed = tiny_arch.model_copy(update={"name": "other", "meta": {"note": 1}})
    assert renamed.arch_hash() == tiny_arch.arch_hash()
    wider = parse_arch({**tiny_arch.to_dict(), "resolution": 96})
    assert wider.arch_hash() != tiny_arch.arch_hash()


def test_hash_is_independent_of_key_order_and_explicit_defaults(tiny_arch_dict):
    a = parse_arch(tiny_arch_dict)
    shuffled = json.loads(json.dumps(tiny_arch_dict, sort_keys=True))
    shuffled["stages"][0]["kernel"] = 3  # the default, written out
    assert parse_arch(shuffled).arch_hash() == a.arch_hash()


def test_save_load_round_trip(tmp_path, tiny_arch):
    path = save_arch(tiny_arch, tmp_path / "a.json")
    again = load_arch(path)
    assert again == tiny_arch and path.read_text() == again.to_json()


def test_published_json_schema_file_is_current():
    shipped = Path(__file__).parents[1] / "nas" / "arch" / "arch.schema.json"
    assert json.loads(shipped.read_text()) == json_schema(), \
        "run: python -m nas.arch.write_schema to regenerate nas/arch/arch.schema.json"


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="file not found"):
        load_arch(tmp_path / "none.json")


# Property: any valid ArchConfig round-trips save -> load -> canonical form identically.
_stage = st.one_of(
    st.fixed_dictionaries({"block": st.just("mv2"), "depth": st.integers(1, 3), "width": st.sampled_from([16, 24, 32]),
                           "stride": st.sampled_from([1, 2]), "expand": st.sampled_from([1.0, 2.5, 4.0]),
                           "kernel": st.sampled_from([3, 5]), "se": st.sampled_from(["none", "all", "alternate"]),
                           "act": st.sampled_from(["relu", "hswish"])}),
    st.fixed_dictionaries({"block": st.just("repvit"), "depth": st.integers(1, 3),
                           "width": st.sampled_from([16, 32, 48]),
                           "stride": st.sampled_from([1, 2]), "se": st.sampled_from(["none", "alternate"])}),
    st.fixed_dictionaries({"block": st.just("mobilevit"), "depth": st.integers(1, 2),
                           "width": st.sampled_from([32, 48]),
                           "stride": st.sampled_from([1, 2]), "dim": st.sampled_from([32, 64]),
                           "heads": st.sampled_from([1, 2, 4]), "patch": st.sampled_from([1, 2, 4])}),
    st.fixed_dictionaries({"block": st.just("lgl"), "depth": st.integers(1, 2), "width": st.sampled_from([32, 64]),
                           "stride": st.sampled_from([1, 2]), "heads": st.sampled_from([1, 2]),
                           "sample_rate": st.sampled_from([1, 2, 4])}),
    st.fixed_dictionaries({"block": st.just("levit"), "depth": st.integers(1, 2), "width": st.sampled_from([32, 48]),
                           "stride": st.sampled_from([1, 2]), "heads": st.sampled_from([1, 3]),
                           "mlp_ratio": st.sampled_from([2.0, 3.0])}),
    st.fixed_dictionaries({"block": st.just("former"), "depth": st.integers(1, 2), "width": st.sampled_from([24, 40]),
                           "stride": st.sampled_from([1, 2]), "tokens": st.sampled_from([1, 3, 6]),
                           "token_dim": st.sampled_from([32, 64]), "heads": st.sampled_from([1, 2]),
                           "bridge_heads": st.sampled_from([1, 2])}),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(resolution=st.integers(32, 96), stem_depth=st.integers(1, 3), stages=st.lists(_stage, min_size=1, max_size=3),
       name=st.text(min_size=1, max_size=20).filter(lambda n: path_name_problem(n) is None))
def test_any_valid_config_round_trips_canonically_and_runs(tmp_path_factory, resolution, stem_depth, stages, name):
    arch = parse_arch({"name": name, "resolution": resolution, "num_classes": 7, "stem": {"depth": stem_depth},
                       "stages": stages})
    path = save_arch(arch, tmp_path_factory.mktemp("rt") / "a.json")
    again = load_arch(path)
    assert again == arch
    assert again.to_json() == arch.to_json() == path.read_text()
    assert isinstance(again, ArchConfig)
    with torch.no_grad():
        out = build_model(again).eval()(torch.randn(1, 3, resolution, resolution))
    assert out.shape == (1, 7) and torch.isfinite(out).all()
