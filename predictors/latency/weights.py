"""The weight-read floor: inside a network, a unit takes at least the time to read its weights.

A unit timed alone in a loop finds its weights in the cache its previous run left them in. Inside
a network the other units' weights (megabytes, for wide stages) have evicted them, and on small
feature maps each weight is used on a few pixels, so reading them, not computing, sets the time:
on the subnets the plain sum missed most, Gemm ran 1.8-2.6x slower in the network than in its
units, and timing the units with the rest's weights read through the cache first closed the gap
(docs/latency.md, "Outliers"). So a prediction costs a unit

    max(entry - per-call overhead, weight_bytes / bandwidth)

with one bandwidth per table, fitted by `nas latency validate` next to the linear correction
(`predict.unit_cost_us`).
Weight bytes belong to the unit, not to the machine: they are counted from its inference-form
module when it is timed, and `python -m predictors.latency.weights TABLE` adds them to a table
built before entries carried them, without timing anything.
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Callable

from nas.blocks.units import Unit
from nas.errors import UserError
from nas.profile import deploy_copy
from predictors.latency.table import LatencyTable, load_table, save_table
from predictors.latency.unit_export import entry_unit, export_key


def unit_weight_bytes(unit: Unit) -> int:
    """Bytes of the unit's tensors in deploy form (RepViT branches fused, every BatchNorm that ONNX
    Runtime folds folded: `profile.deploy_copy`), parameters and buffers, as its graph holds them."""
    module = deploy_copy(unit.build())
    return sum(t.numel() * t.element_size() for t in itertools.chain(module.parameters(), module.buffers()))


def fill_weight_bytes(table: LatencyTable, progress: Callable[[int, int], None] | None = None) -> int:
    """Count the weight bytes of every entry that lacks them (units sharing an export graph share
    their weights: counted once); the number of entries filled."""
    todo = [e for e in table.entries.values() if e.weight_bytes is None]
    known: dict[str, int] = {}
    for i, entry in enumerate(todo, 1):
        unit = entry_unit(entry)
        group = export_key(unit)
        if group not in known:
            known[group] = unit_weight_bytes(unit)
        entry.weight_bytes = known[group]
        if progress:
            progress(i, len(todo))
    return len(todo)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Add each entry's weight bytes to a latency table (no timing).")
    parser.add_argument("tables", nargs="+", help="table files, rewritten in place (atomically)")
    args = parser.parse_args(argv)
    try:
        for path in args.tables:
            table = load_table(path)
            filled = fill_weight_bytes(table)
            save_table(table, path)
            print(f"{path}: {filled} of {len(table.entries)} entries given their weight bytes")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
