"""Unit ONNX graphs: a graph exported once per op and arguments is right at every feature-map size."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

from nas.blocks.units import Unit, arch_units
from predictors.latency.measure import make_session
from predictors.latency.unit_export import SPATIALLY_GENERIC_OPS, export_group, export_key, unit_module, with_shapes
from search_spaces.hybrid import HybridSpace
from search_spaces.reference import load_zoo


def _pairs() -> dict[str, tuple[Unit, Unit]]:
    """For each generic op, two units sharing an export key at different sizes."""
    groups: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    space = HybridSpace(num_classes=10)
    units = space.units(64) | space.units(96) | set(arch_units(load_zoo("mobile_former_26m")))
    for u in units:
        if u.op in SPATIALLY_GENERIC_OPS:
            groups[u.op][export_key(u)].add(u)
    pairs = {}
    for op, by_key in groups.items():
        for members in sorted(by_key.values(), key=lambda m: min(u.key for u in m)):
            if len({u.inputs for u in members}) > 1:
                a, b = sorted(members, key=lambda u: u.key)[:2]
                pairs[op] = (a, b)
                break
    return pairs


PAIRS = _pairs()


def test_every_generic_op_is_exercised():
    assert set(PAIRS) == SPATIALLY_GENERIC_OPS - {"former.lite", "former.entry"}


@pytest.mark.parametrize("op", sorted(PAIRS))
def test_graph_exported_at_one_size_matches_torch_at_another(op):
    first, second = PAIRS[op]
    model = with_shapes(export_group(first), second)
    session = make_session(model, threads=1)
    inputs = second.example_inputs(seed=1)
    feeds = {i.name: t.numpy() for i, t in zip(session.get_inputs(), [t for t in inputs if t is not None])}
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        expected = unit_module(second)(*inputs).numpy()
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-4 * max(1.0, np.abs(expected).max())
