"""`nas` command line: one sub-command per job, bad input as one stderr line and exit code 2.

Each sub-command lives in its own module under nas/cli/ and registers itself through
`add_parser(subparsers)`; this file only dispatches and turns UserError into the exit contract.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence

from nas import __version__
from nas.errors import UserError

# Sub-command modules, in the order `nas --help` lists them.
COMMANDS = ("search", "describe", "export", "zoo", "space", "latency", "devices", "predictor", "train", "evaluate", "supernet")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as our one-line contract (exit 2, no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="nas", description="Hardware-aware NAS over hybrid CNN/ViT mobile models.")
    parser.add_argument("--version", action="version", version=f"hybrid-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        importlib.import_module(f"nas.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        args = build_parser().parse_args(argv)
        from predictors.latency.machine import held_warnings  # a table's machine warning: after the output

        with held_warnings():
            return int(args.func(args) or 0)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
