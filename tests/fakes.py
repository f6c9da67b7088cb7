"""Made-up but well-formed artefacts for tests that check behaviour, not timings."""
from __future__ import annotations

import math
from collections.abc import Iterable

from nas.blocks.units import Unit, arch_units
from predictors.latency.machine import here
from predictors.latency.table import Entry, LatencyTable, runtime_info


def fake_table(units: Iterable[Unit], resolutions: list[int], device: str = "host") -> LatencyTable:
    """A table measured-looking over `units`: 30 us plus 1 us per 1000 input values (deterministic),
    with this machine's fingerprint and the very probe this machine remembers (cached for the
    session, so also in subprocesses), so that it reads as `measured` here and draws no warning."""
    table = LatencyTable(device=device, kind="measured", **runtime_info(1), created="2024-01-01T00:00:00+00:00",
                         resolutions=sorted(resolutions), overhead_us=20.0, machine=here(1))
    for unit in units:
        us = 30.0 + 1e-3 * math.prod(unit.inputs[0])
        table.entries[unit.key] = Entry(us=us, p10=us * 0.9, p90=us * 1.2, n=20, op=unit.op, args=dict(unit.args),
                                        inputs=[None if s is None else list(s) for s in unit.inputs])
    return table


def fake_host(arches) -> LatencyTable:
    """A fake host table over the units of `arches`."""
    return fake_table([u for a in arches for u in arch_units(a)], sorted({a.resolution for a in arches}))


def fake_npz_dataset(dst, classes: int = 4, train_per_class: int = 24, test_per_class: int = 8, size: int = 32):
    """A learnable made-up dataset in the npz layout: class k is noise around its own colour."""
    import json

    import numpy as np

    dst.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    colours = rng.integers(40, 216, size=(classes, 3))
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        labels = np.repeat(np.arange(classes, dtype=np.int64), per_class)
        noise = rng.normal(0, 30, size=(len(labels), size, size, 3))
        images = np.clip(colours[labels][:, None, None, :] + noise, 0, 255).astype(np.uint8)
        np.savez(dst / f"{split}-000.npz", images=images, labels=labels)
    (dst / "classes.json").write_text(json.dumps({str(k): f"class{k}" for k in range(classes)}))
    return dst
