"""Weight sharing declared where the layer is: every block module's `weight_sharing` names real
tensors of every family, the supernet cuts exactly those by their rule, and a declaration that
does not match its module (a renamed layer) is an error, never a silent fall-back to prefixes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from nas.blocks import former, head, levit, lgl, mobilevit
from nas.blocks.sharing import Chunks, GridOffsets, HeadFeatures, SharingRule, WeightSharingError, declared_rules
from nas.supernet import Supernet
from nas.supernet.slicing import chunked, default_rule, head_fc_rule, levit_bias_rule, rule_for
from search_spaces.presets import PRESETS

TINY = PRESETS["tiny"](10)
SPECIAL_FAMILIES = ("mobilevit", "lgl", "levit", "former")  # families with a tensor prefixes would mix

# What each layer's tensors are, written here by layer type (the specification the blocks must meet).
EXPECTED: list[tuple[type[nn.Module], dict[str, SharingRule]]] = [
    (mobilevit.Attention, {"qkv.weight": Chunks(0, 3), "qkv.bias": Chunks(0, 3)}),
    (mobilevit.MobileViTBlock, {"fusion.0.0.weight": Chunks(1, 2)}),
    (lgl.GlobalSparseAttn, {"qkv.weight": Chunks(0, 3), "qkv.bias": Chunks(0, 3)}),
    (levit.Attention, {"attention_biases": GridOffsets()}),
    (former.DynamicReLU, {"coeffs.2.weight": Chunks(0, 2), "coeffs.2.bias": Chunks(0, 2)}),
    (head.Head, {"fc.weight": HeadFeatures()}),
]


@pytest.fixture(scope="module")
def tiny_supernet() -> Supernet:
    return Supernet(TINY, seed=3)


@pytest.mark.parametrize("preset", ["tiny", "hybrid"])
def test_every_declaration_names_a_real_tensor_of_every_family(preset):
    net = Supernet(PRESETS[preset](10))
    rules = declared_rules(net)
    assert rules == net._sharing  # what the constructor collected and checked
    expected = {}
    for path, module in net.named_modules():
        for cls, table in EXPECTED:
            if type(module) is cls:
                expected.update({f"{path}.{key}": rule for key, rule in table.items()})
    assert rules == expected  # every special tensor declared, nothing else
    state = net.state_dict()
    assert all(name in state for name in rules)
    for i, stage in enumerate(net.space.stages):
        for family in set(stage.families) & set(SPECIAL_FAMILIES):
            assert any(name.startswith(f"stages.{i}.{family}.") for name in rules), (i, family)
    assert "head.fc.weight" in rules


def _per_part_prefix(big: torch.Tensor, shape: torch.Size, dim: int, parts: int) -> torch.Tensor:
    """Each of the `parts` equal pieces of `dim` cut to its share of `shape` (prefix; centre of
    conv kernel dims), then put back together: what a chunked tensor of a member must hold."""
    pieces = []
    for part in big.chunk(parts, dim):
        index = []
        for d, (b, s) in enumerate(zip(part.shape, shape)):
            s = s // parts if d == dim else s
            start = (b - s) // 2 if big.ndim == 4 and d >= 2 else 0
            index.append(slice(start, start + s))
        pieces.append(part[tuple(index)])
    return torch.cat(pieces, dim)


def test_members_take_each_part_of_a_declared_tensor_from_its_own_part(tiny_supernet):
    """The declarations reach the cut: q of a member is q of the supernet, and so on (a plain
    prefix would differ, so this is not the default rule in disguise)."""
    net = tiny_supernet
    name_of = {id(t): n for n, t in [*net.named_parameters(), *net.named_buffers()]}
    seen: dict[type[SharingRule], int] = {}
    mixed_by_prefix = 0
    for arch in [TINY.smallest()] + [TINY.sample(i) for i in range(30)]:
        arch = net.member(arch)
        for name, big, cut in net._plan(arch).entries:
            rule = net._sharing.get(name_of[id(big)])
            if rule is None:
                continue
            got = cut(big.detach())
            seen[type(rule)] = seen.get(type(rule), 0) + 1
            if isinstance(rule, Chunks):
                assert torch.equal(got, _per_part_prefix(big.detach(), got.shape, rule.dim, rule.parts)), name
                mixed_by_prefix += not torch.equal(got, default_rule(big, got.shape, None)(big.detach()))
            elif isinstance(rule, HeadFeatures) and arch.uses_tokens:
                tokens = net.head_token_dim
                sub_tokens = next(s.token_dim for s in reversed(arch.stages) if s.block == "former" and not s.lite)
                token_cols = big[:, big.shape[1] - tokens:][:got.shape[0], :sub_tokens]
                assert torch.equal(got[:, got.shape[1] - sub_tokens:], token_cols)
    assert set(seen) == {Chunks, GridOffsets, HeadFeatures} and mixed_by_prefix > 0


class _Owner(nn.Module):
    def __init__(self, declared: object) -> None:
        super().__init__()
        self.weight_sharing = declared
        self.qkv = nn.Linear(4, 6)


def _wrap(module: nn.Module) -> nn.Module:
    outer = nn.Module()
    outer.inner = module
    return outer


def test_a_declaration_for_a_missing_tensor_is_an_error():
    with pytest.raises(WeightSharingError, match=r"_Owner at inner declares weight sharing for 'proj.weight'.*"
                                                 r"it has qkv.bias, qkv.weight"):
        declared_rules(_wrap(_Owner({"proj.weight": Chunks(0, 3)})))


def test_a_renamed_layer_is_an_error_not_a_silent_fallback_to_prefixes(monkeypatch):
    class RenamedAttention(mobilevit.Attention):  # `qkv` renamed, its declaration inherited unchanged
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__(dim, heads)
            self.to_qkv = self.qkv
            del self.qkv

    with pytest.raises(WeightSharingError, match=r"RenamedAttention at <root> declares weight sharing for "
                                                 r"'qkv.weight', which is not one of its parameters"):
        declared_rules(RenamedAttention(8, 2))
    # The supernet refuses to exist with a stale declaration (here: one naming the renamed layer).
    monkeypatch.setattr(lgl.GlobalSparseAttn, "weight_sharing", {"to_qkv.weight": Chunks(0, 3)})
    with pytest.raises(WeightSharingError, match=r"GlobalSparseAttn at stages\.2\.lgl\.1\.1\.attn declares "
                                                 r"weight sharing for 'to_qkv.weight'"):
        Supernet(TINY)


@pytest.mark.parametrize("declared, why", [
    ({"qkv.weight": Chunks(0, 4)}, r"dim 0 of \(6, 4\) is not 4 equal parts"),
    ({"qkv.weight": Chunks(2, 3)}, r"dim 2 out of range for a 2-d tensor"),
    ({"qkv.bias": Chunks(0, 1)}, r"at least 2 parts"),
    ({"qkv.weight": GridOffsets()}, r"owner Linear has no \(H, W\) `grid`"),
    ({"qkv.bias": HeadFeatures()}, r"expected a \(classes, features\) weight, got \(6,\)"),
    ({"qkv.weight": "chunks"}, r"'chunks' is not a SharingRule"),
    (["qkv.weight"], r"weight_sharing must map tensor paths to rules"),
])
def test_a_declaration_that_does_not_fit_its_tensor_is_an_error(declared, why):
    with pytest.raises(WeightSharingError, match=why):
        declared_rules(_wrap(_Owner(declared)))


def test_a_tensor_declared_twice_is_an_error():
    outer = _wrap(_Owner({"qkv.weight": Chunks(0, 3)}))
    outer.weight_sharing = {"inner.qkv.weight": Chunks(0, 2)}
    with pytest.raises(WeightSharingError, match=r"'qkv.weight', already declared as Chunks\(dim=0, parts=2\)"):
        declared_rules(outer)


def test_every_kind_of_declaration_has_a_slicing_and_an_unknown_one_is_an_error():
    assert rule_for(None) is default_rule
    assert rule_for(GridOffsets()) is levit_bias_rule and rule_for(HeadFeatures()) is head_fc_rule
    big = torch.arange(12.0).reshape(12, 1)
    assert torch.equal(rule_for(Chunks(0, 3))(big, torch.Size((6, 1)), None)(big),
                       chunked(0, 3)(big, torch.Size((6, 1)), None)(big))
    kinds = {Chunks: Chunks(0, 2), GridOffsets: GridOffsets(), HeadFeatures: HeadFeatures()}
    assert set(SharingRule.__subclasses__()) == set(kinds)  # a new kind needs its slicing (and a line here)
    assert all(callable(rule_for(rule)) for rule in kinds.values())

    class Rotated(SharingRule):
        pass

    with pytest.raises(TypeError, match=r"no slicing for the weight-sharing rule"):
        rule_for(Rotated())
