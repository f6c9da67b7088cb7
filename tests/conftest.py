"""Shared fixtures: a few tiny architectures and a helper to run the CLI in-process."""
from __future__ import annotations

import pytest

from nas.arch import parse_arch
from nas.cli.main import main
from predictors.latency import machine


@pytest.fixture(scope="session", autouse=True)
def _own_probe_cache(tmp_path_factory):
    """This test run's own cache of the machine's speed probe (`predictors/latency/machine.py`),
    inherited by the processes tests start: made-up tables carry the probe this run remembers,
    so that no other run's probe (another test run's build refreshes it) makes them look foreign.
    The probe is taken once, here, before any test."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HYBRID_NAS_CACHE", str(tmp_path_factory.mktemp("probe-cache")))
        machine.here(1)
        yield


@pytest.fixture(autouse=True)
def _session_probe_kept():
    """A test that builds or calibrates a table times a fresh probe and remembers it (process memo
    and disk cache). Under load that probe can differ from the session's by more than a made-up
    table's stated noise, and every later test would then see its made-up tables as another
    machine's (CI once failed so: probe 3.04 vs 4.16 ms). So the session's probe is put back after
    each test."""
    memo = dict(machine._MEMO)
    files = {path: path.read_bytes() for path in machine.cache_dir().glob("probe-*.json")}
    yield
    machine._MEMO.clear()
    machine._MEMO.update(memo)
    for path in machine.cache_dir().glob("probe-*.json"):
        if path not in files:
            path.unlink()
    for path, data in files.items():
        path.write_bytes(data)


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


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """(tiny arch, path of a table built here with its units only, timed a few runs each)."""
    from nas.blocks.units import arch_units
    from predictors.latency.build import build_table
    from predictors.latency.measure import RunPolicy

    arch = parse_arch({"name": "tiny", "resolution": 64, "num_classes": 10, "stem": {"depth": 1, "channels": 16},
                       "stages": [{"block": "mv2", "depth": 1, "width": 24, "expand": 2},
                                  {"block": "repvit", "depth": 2, "width": 32, "se": "alternate"}]})
    path = tmp_path_factory.mktemp("lut") / "host.json"
    build_table(path, resolutions=[64], policy=RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3),
                units={u.key: u for u in arch_units(arch)})
    return arch, path
