"""Validation figures: out-of-fold, and the correction recovers what a unit-sum misses."""
from __future__ import annotations

import numpy as np
import pytest

from predictors.latency.validate import Sample, evaluate, metrics


def _samples(per_unit_ms: float, scale: float, noise: float = 0.0) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(40):
        plain, units = float(rng.uniform(0.5, 30)), int(rng.integers(8, 40))
        measured = (scale * plain + per_unit_ms * units) * (1 + noise * rng.standard_normal())
        out.append(Sample(f"h{i}", 64, int(plain * 1e7 * rng.uniform(0.7, 1.3)), plain, measured, measured, measured,
                          units=units))
    return out


def test_the_correction_recovers_a_per_unit_cost_and_scale():
    result = evaluate(_samples(per_unit_ms=0.05, scale=0.97))
    c = result["correction"]
    assert c["used"] and c["scale"] == pytest.approx(0.97) and c["per_unit_us"] == pytest.approx(50.0)
    assert result["lut_corrected_out_of_fold"]["within_5pct"] == 1.0
    assert result["lut_plain_sum"]["within_5pct"] < 1.0


def test_an_unbiased_sum_needs_next_to_no_correction():
    result = evaluate(_samples(per_unit_ms=0.0, scale=1.0, noise=0.02))
    c = result["correction"]
    assert c["scale"] == pytest.approx(1.0, abs=0.03) and abs(c["per_unit_us"]) < 20
    assert result["lut_plain_sum"]["within_10pct"] == 1.0 and result["lut_corrected_out_of_fold"]["within_10pct"] >= 0.95


def test_metrics_count_within_bands_and_rank_agreement():
    measured = np.array([1.0, 2.0, 3.0, 4.0])
    m = metrics(np.array([1.04, 2.15, 2.9, 4.0]), measured)
    assert m["within_5pct"] == 0.75 and m["within_10pct"] == 1.0 and m["kendall_tau"] == pytest.approx(1.0)
