"""The predictor's training data: inherited-weight accuracy of random members of a supernet.

Members are drawn uniformly from the supernet's space by seed (sample i is `space.sample(seed +
i)`, so the set is reproducible), rated by `SubnetEvaluator` (extract, BatchNorm recalibration,
val split), and appended one JSON line each to a journal. The journal is the resume point: run
again after a kill and the samples already rated are read back, not rated again.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nas.arch.schema import parse_arch
from nas.atomic import append_json_line, read_json_lines
from nas.errors import UserError
from search_spaces.hybrid import HybridSpace

SAMPLE_SEED_STRIDE = 1_000_003  # keeps the sample seeds of different --seed values apart


def sample_member(space: HybridSpace, seed: int, index: int):
    return space.sample(seed * SAMPLE_SEED_STRIDE + index)


def read_samples(journal: str | os.PathLike[str], space: HybridSpace) -> list[dict[str, Any]]:
    """The journal's records, each with its `arch` checked to be a member of `space`."""
    journal = Path(journal)
    if not journal.exists():
        return []
    records = read_json_lines(journal)
    for n, rec in enumerate(records, 1):
        if not isinstance(rec, dict) or not {"index", "arch", "acc"} <= set(rec):
            raise UserError(f"{journal}: line {n}: expected a record with index, arch and acc")
        arch = parse_arch(rec["arch"], source=f"{journal}: line {n}: arch")
        ok, why = space.contains(arch)
        if not ok:
            raise UserError(f"{journal}: line {n}: not a member of the supernet's space ({why}); "
                            "samples of another supernet? Use another output folder")
        rec["arch"] = arch
    return records


def collect_samples(evaluate: Callable[[Any], dict[str, Any]], space: HybridSpace, count: int, seed: int,
                    journal: str | os.PathLike[str],
                    progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Rate members 0..count-1 not yet in `journal`, appending each as it is done."""
    records = read_samples(journal, space)
    done = {rec["index"] for rec in records}
    for index in range(count):
        if index in done:
            continue
        arch = sample_member(space, seed, index)
        result = evaluate(arch)
        rec = {"index": index, "arch": arch.model_dump(mode="json"), "acc": result["acc"], "loss": result["loss"],
               "images": result["images"]}
        append_json_line(journal, rec)
        records.append({**rec, "arch": arch})
        if progress:
            progress(len(records), count)
    return sorted((r for r in records if r["index"] < count), key=lambda r: r["index"])
