"""`--budget` parsing: every accepted spelling, and one clear error for the rest."""
from __future__ import annotations

import pytest

from nas.budget import parse_budget
from nas.errors import UserError


@pytest.mark.parametrize("text,ms", [
    ("1ms", 1.0), ("0.8 ms", 0.8), ("750us", 0.75), ("750µs", 0.75), ("750μs", 0.75), ("1.5e-3s", 1.5),
    ("2 s", 2000.0), (" 3ms ", 3.0), (".5ms", 0.5), ("1.ms", 1.0), ("2E-3s", 2.0), ("1e3us", 1.0),
])
def test_accepted(text, ms):
    assert parse_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text", ["1xs", "-1ms", "0ms", "0us", "", "   ", "nan", "nanms", "inf", "infms", "1",
                                  "1.5", "ms", "1 m s", "1msx", "1e-400s", "1,5ms", "+-1ms"])
def test_rejected_with_one_line(text):
    with pytest.raises(UserError) as err:
        parse_budget(text)
    message = str(err.value)
    assert "\n" not in message
    assert message == ("budget: expected a positive latency with a unit like 1ms, 750us or 1.5e-3s, "
                       f"got {text!r}")
