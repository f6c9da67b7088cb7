"""Latency budgets as the user types them (`--budget 1ms`, `750us`, `1.5e-3s`), in milliseconds.

A bare number is refused: 1 could mean a second or a millisecond, and a budget off by 1000x
silently searches the wrong space.
"""
from __future__ import annotations

import math
import re

from nas.errors import ParameterError

_UNITS_MS = {"s": 1000.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "μs": 1e-3}  # µ (micro sign) and μ (Greek mu)
_BUDGET = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+\.)\s*(s|ms|us|µs|μs)\s*$")


def parse_budget(text: str) -> float:
    """`text` as milliseconds; anything but a positive finite number with a time unit is a UserError."""
    match = _BUDGET.match(text or "")
    value = float(match.group(1)) * _UNITS_MS[match.group(2)] if match else math.nan
    if not (math.isfinite(value) and value > 0):
        raise ParameterError("budget", f": expected a positive latency with a unit like 1ms, 750us or 1.5e-3s, "
                        f"got {text!r}")
    return value
