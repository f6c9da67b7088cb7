"""argparse `type=` functions shared by the sub-commands: a bad value is refused while the command
line is parsed, as one line naming the flag, before any data is loaded or any work starts."""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

from nas import atomic
from nas.errors import UserError

SEED_MAX = 2**32 - 1  # numpy's and Optuna's samplers take seeds in [0, 2**32)


def _integer(text: str) -> int:
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def seed(text: str) -> int:
    """A random seed: an integer in [0, 2**32 - 1] (`-1` or `1e20` are refused, not wrapped)."""
    try:
        value = int(text, 10)
    except ValueError:
        value = None
    if value is None or not 0 <= value <= SEED_MAX:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {SEED_MAX}, got {text!r}")
    return value


def at_least(minimum: int) -> Callable[[str], int]:
    """An integer >= `minimum` (`at_least(1)`: a positive count)."""
    def parse(text: str) -> int:
        value = _integer(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {text!r}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = at_least(1)


def path_name(text: str) -> str:
    """A name that becomes one folder or file name (a study's): no separators, no `..`."""
    problem = atomic.path_name_problem(text) if text else "an empty name"
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def output_dir(flag: str, path: str | os.PathLike[str], create: bool = True) -> Path:
    """The output folder `path` of `flag`, created (or with `create=False` only checked that it can
    be), or a one-line error naming both."""
    try:
        return atomic.output_dir(path) if create else atomic.check_output_dir(path)
    except UserError as exc:
        raise UserError(f"{flag}: {exc}") from None


def output_file(flag: str, path: str | os.PathLike[str]) -> Path:
    """`path` if `flag`'s output file may be written there (a new path or a regular file in a folder
    that is or can be made), or a one-line error naming both; checked before the work that makes it."""
    try:
        return atomic.check_output_file(path)
    except UserError as exc:
        raise UserError(f"{flag}: {exc}") from None


def resolutions(text: str) -> list[int]:
    """--resolutions 64,128: sorted distinct pixel sizes (32..1024)."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise UserError(f"--resolutions: expected comma-separated integers like 64,128, got {text!r}") from None
    if not values or any(v < 32 or v > 1024 for v in values):
        raise UserError(f"--resolutions: expected pixel sizes between 32 and 1024, got {text!r}")
    return values


DATA_FORMS = "dataset folder: npz chunks (the imagenette2-64 layout) or one sub-folder of images per class"


def add_data_option(parser: argparse.ArgumentParser, default: str = "$HYBRID_NAS_DATA, else the shared "
                    "imagenette2-64", use: str | None = None) -> None:
    """`--data DIR`, defined once so that every command describes the folder forms alike; `default`
    says where the command looks without it, `use` what it does with the data when not obvious."""
    text = f"{DATA_FORMS} (default: {default})"
    parser.add_argument("--data", metavar="DIR", help=f"{use}; {text}" if use else text)

