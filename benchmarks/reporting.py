"""What every benchmark report records about where it ran and what it read.

Reports are committed and compared across machines: the paths in them are relative to the
repository (never one machine's folders), and each names the machine and library versions that
produced its figures.
"""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from predictors.latency.measure import RunPolicy

ROOT = Path(__file__).resolve().parents[1]
# the timing policy of a benchmark's --tiny run (smoke tests): a few runs per model, figures meaningless
TINY_TIMING = RunPolicy(warmup=1, min_runs=3, min_seconds=0.0, max_runs=3)


def repo_path(path: str | Path) -> str:
    """`path` relative to the repository when it lies inside it, else as given (absolute)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def machine(**versions: str) -> dict[str, object]:
    """Python, torch, the platform and torch's thread count, plus the benchmark's own `versions`
    (library -> version) where its figures depend on more libraries."""
    return {"cpu_threads": torch.get_num_threads(), "python": platform.python_version(),
            "torch": torch.__version__, "platform": platform.platform(), **versions}
