"""`nas` command line: one sub-command per job, bad input as one stderr line and exit code 2.

Each sub-command lives in its own module under nas/cli/ and registers itself through
`add_parser(subparsers)`; this file only dispatches and turns UserError into the exit contract.
Only the module of the command being run is imported (each imports torch, optuna, rich... at its
top): `nas --help` lists the commands from the table below without loading any of them.
"""
from __future__ import annotations

import argparse
import importlib
import os
import re
import select
import sys
import warnings
from collections.abc import Sequence

from nas import __version__
from nas.errors import ParameterError, UserError

# Sub-command modules (nas/cli/<name>.py), in the order `nas --help` lists them, with the line it
# shows for each: the module's own help, repeated here so that listing them imports none of them
# (tests/test_cli.py holds the two the same).
COMMANDS: dict[str, str] = {
    "search": "latency-constrained architecture search (Optuna)",
    "describe": "parameters, FLOPs and per-stage shapes of an architecture",
    "export": "export an architecture to ONNX and/or TFLite (LiteRT)",
    "zoo": "list the reference models and their published figures",
    "space": "show the hybrid search space",
    "latency": "build, inspect and use per-device latency tables",
    "devices": "list the devices with latency tables",
    "predictor": "fit and inspect accuracy predictors (fast search signal)",
    "train": "train one architecture standalone (resumable, DDP under torchrun)",
    "evaluate": "test accuracy and measured latency of a trained model",
    "supernet": "train the weight-sharing supernet / evaluate members with it",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as our one-line contract (exit 2, no usage dump).

    A value that starts with '-' and a digit (`--budget -1ms`, `--seed -1`, `--lr -1e-3`) is taken
    as the flag's value, for its check to refuse with a reason, not as an unknown option: plain
    argparse only does so for bare negative numbers, and says "expected one argument"."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # no option of ours starts like this; `.*` so that it holds whether argparse match()es or fullmatch()es
        self._negative_number_matcher = re.compile(r"-\.?\d.*", re.DOTALL)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `nas` parser. Given the command line `argv`, only the command it names gets its full
    sub-parser (so only that command's module is imported) and the others just their help line;
    without it, every command gets its full sub-parser (to check or document all flags)."""
    parser = _Parser(prog="nas", description="Hardware-aware NAS over hybrid CNN/ViT mobile models.")
    parser.add_argument("--version", action="version", version=f"hybrid-nas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    chosen = set(COMMANDS) if argv is None else {_command_named(argv)}
    for name, summary in COMMANDS.items():
        if name in chosen:
            # lazy: a command module loads its heavy dependencies (torch ~1.5 s), only for the command run
            importlib.import_module(f"nas.cli.{name}").add_parser(sub)
        else:
            sub.add_parser(name, help=summary)
    return parser


def _command_named(argv: Sequence[str]) -> str | None:
    """The command `argv` runs: its first word that is not an option (`nas` itself takes no values)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def _flag_for(parser: argparse.ArgumentParser, param: str) -> str | None:
    """The long option whose value lands in `param` (`num_random` -> `--num-random`), searched
    through every sub-command parser built; None where no flag sets it."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                if (flag := _flag_for(sub, param)) is not None:
                    return flag
        elif action.dest == param and action.option_strings:
            return max(action.option_strings, key=len)
    return None


def error_line(exc: UserError, parser: argparse.ArgumentParser) -> str:
    """The one stderr line for `exc`; a bad parameter is named by the flag `parser` sets it with."""
    if isinstance(exc, ParameterError):
        return f"error: {_one_line((_flag_for(parser, exc.param) or exc.param) + exc.detail)}"
    return f"error: {_one_line(str(exc))}"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
        # lazy: pydantic etc. (~0.1 s), not before parsing (--help); a table's machine warning: after the output
        from predictors.latency.machine import held_warnings

        with held_warnings():
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit-time flush
        return code
    except UserError as exc:
        print(error_line(exc, parser), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `nas space --json | head -1`: the reader has all it wanted
        if not _stdout_pipe_closed():
            raise  # some other pipe or socket broke: not the reader leaving, keep the traceback
        _silence_stdout()
        return 141  # 128 + SIGPIPE, as a process killed by it would report


# Every character str.splitlines() breaks at, shown as its escape (\n, \x1e, \u2028).
_LINE_BREAKS = {ord(c): c.encode("unicode_escape").decode() for c in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"}


def _one_line(message: str) -> str:
    """The contract is one stderr line: a line break inside a value (a file name, a key) is shown escaped."""
    return message.translate(_LINE_BREAKS)


def _stdout_pipe_closed() -> bool:
    """Whether stdout is a pipe whose reading end has gone (poll reports an error on it)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null so nothing more (the exit-time flush) writes to the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
