"""The one error type users see.

Anything raised as `UserError` is the user's input being wrong (a file, a field, a flag). The CLI
prints it as a single line on stderr and exits with code 2; everything else is a bug and keeps its
traceback.
"""
from __future__ import annotations


class UserError(Exception):
    """Bad input: printed as one line, exit code 2."""

    exit_code = 2
