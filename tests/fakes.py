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


def trained_looking(model, seed: int = 0):
    """`model` in eval mode with trained-looking BatchNorm statistics and conv biases, so that every
    branch contributes to the output (zero-initialised residual branches, whose last BN weight is 0,
    included) and an eval-mode parity check means something."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            m.weight.data = torch.rand(m.weight.shape, generator=g) * 0.4 + 0.1
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
            m.running_mean = torch.randn(m.running_mean.shape, generator=g) * 0.1
            m.running_var = torch.rand(m.running_var.shape, generator=g) + 0.5
        elif isinstance(m, nn.Conv2d) and m.bias is not None:
            m.bias.data = torch.randn(m.bias.shape, generator=g) * 0.1
    return model.eval()
