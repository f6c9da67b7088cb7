"""Shared fixtures: a few tiny architectures and a helper to run the CLI in-process."""
from __future__ import annotations

import pytest

from nas.arch import parse_arch
from nas.cli.main import main


@pytest.fixture(scope="session", autouse=True)
def _own_probe_cache(tmp_path_factory):
    """This test run's own cache of the machine's speed probe (`predictors/latency/machine.py`),
    inherited by the processes tests start: made-up tables carry the probe this run remembers,
    so that no other run's probe (another test run's build refreshes it) makes them look foreign."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRID_NAS_CACHE", str(tmp_path_factory.mktemp("probe-cache")))
        yield


@pytest.fixture
def tiny_arch_dict() -> dict:
    return {
        "name": "tiny", "resolution": 64, "num_classes": 10,
        "stem": {"depth": 1, "channels": 16},
        "stages": [
            {"block": "mv2", "depth": 1, "width": 24, "expand": 2},
            {"block": "repvit", "depth": 2, "width": 32, "se": "alternate"},
        ],
    }


@pytest.fixture
def tiny_arch(tiny_arch_dict):
    return parse_arch(tiny_arch_dict)


@pytest.fixture
def run_cli(capsys):
    """Run `nas ARGS...` in-process; returns (exit code, stdout, stderr)."""
    def _run(*args: str) -> tuple[int, str, str]:
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return code, out.out, out.err
    return _run
