"""Size features of an architecture (parameters, MACs, depth) without building it.

A network's latency units account for every parameter and every MAC it has, exactly
(tests/test_units.py), and a space has few distinct units (about a thousand for the proxy space),
while the search rates thousands of members a second. So a predictor that uses a member's size
carries the per-unit counts of its space and adds them up: a dictionary lookup per unit instead of
a model build (50 ms) and an fvcore trace (a second).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from nas.arch.schema import ArchConfig
from nas.blocks.units import Unit, arch_units
from nas.profile import count_flops, count_params, inference_copy

SIZE_FEATURES = ("log_params", "log_macs", "depth")


def unit_counts(unit: Unit) -> tuple[int, int]:
    """(parameters, MACs) of one unit in inference form (RepViT branches fused)."""
    module = inference_copy(unit.build())
    return count_params(module), count_flops(module, inputs=unit.example_inputs())


class UnitCounts:
    """Per-unit (parameters, MACs), keyed by unit key; counts a unit it has not seen on first use."""

    def __init__(self, counts: Mapping[str, Iterable[int]] | None = None) -> None:
        self.counts: dict[str, tuple[int, int]] = {k: (int(p), int(m)) for k, (p, m) in (counts or {}).items()}

    def add(self, units: Iterable[Unit]) -> None:
        for unit in units:
            if unit.key not in self.counts:
                self.counts[unit.key] = unit_counts(unit)

    def arch(self, arch: ArchConfig) -> tuple[int, int]:
        """(parameters, MACs) of `arch`: the sum over its units."""
        units = arch_units(arch)
        self.add(units)
        params = sum(self.counts[u.key][0] for u in units)
        return params, sum(self.counts[u.key][1] for u in units)

    def to_dict(self) -> dict[str, list[int]]:
        return {k: list(v) for k, v in sorted(self.counts.items())}


def depth(arch: ArchConfig) -> int:
    """Layers in sequence: stem convolutions plus blocks of every stage."""
    return arch.stem.depth + sum(s.depth for s in arch.stages)


def size_features(arch: ArchConfig, counts: UnitCounts) -> dict[str, float]:
    params, macs = counts.arch(arch)
    return {"log_params": math.log(params), "log_macs": math.log(max(macs, 1)), "depth": float(depth(arch))}
