"""Made-up but well-formed artefacts for tests that check behaviour, not timings."""
from __future__ import annotations

import math
from typing import Iterable

from nas.blocks.units import Unit, arch_units
from predictors.latency.table import Entry, LatencyTable, runtime_info


def fake_table(units: Iterable[Unit], resolutions: list[int], device: str = "host") -> LatencyTable:
    """A table measured-looking (on this machine's runtime, so it draws no warning) over `units`:
    30 us plus 1 us per 1000 input values (deterministic)."""
    table = LatencyTable(device=device, kind="measured", **runtime_info(1), created="2024-01-01T00:00:00+00:00",
                         resolutions=sorted(resolutions), overhead_us=20.0)
    for unit in units:
        us = 30.0 + 1e-3 * math.prod(unit.inputs[0])
        table.entries[unit.key] = Entry(us=us, p10=us * 0.9, p90=us * 1.2, n=20, op=unit.op, args=dict(unit.args),
                                        inputs=[None if s is None else list(s) for s in unit.inputs])
    return table


def fake_host(arches) -> LatencyTable:
    """A fake host table over the units of `arches`."""
    return fake_table([u for a in arches for u in arch_units(a)], sorted({a.resolution for a in arches}))
