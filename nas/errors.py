"""The one error type users see.

Anything raised as `UserError` is the user's input being wrong (a file, a field, a flag). The CLI
prints it as a single line on stderr and exits with code 2; everything else is a bug and keeps its
traceback.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class UserError(Exception):
    """Bad input: printed as one line, exit code 2."""

    exit_code = 2


class ParameterError(UserError):
    """A bad value of one named parameter. The library names the parameter as its caller passed it
    (`num_random`); the CLI shows the flag that set it (`--num-random`): each layer speaks of what
    its user typed. `detail` follows the name directly (" 5: expected >= 0", ": not a URL")."""

    def __init__(self, param: str, detail: str) -> None:
        super().__init__(f"{param}{detail}")
        self.param, self.detail = param, detail


def read_json(path: str | os.PathLike[str], what: str, missing: str = "file not found") -> Any:
    """The JSON content of `path`; a missing or unreadable file is a one-line UserError naming it
    and `what` it should have been (e.g. "predictor JSON file")."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: {missing}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not a readable {what} ({exc})") from None
    except RecursionError:
        raise UserError(f"{path}: not a readable {what} (nested too deeply)") from None
