"""`nas space`: the hybrid search space's dimensions, size, and a sample member."""
from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from nas.cli.args import seed
from search_spaces.hybrid import HybridSpace


def run(args: argparse.Namespace) -> int:
    space = HybridSpace()
    if args.sample is not None:
        print(space.sample(args.sample).to_json(), end="")
        return 0
    dims = {k: list(v) for k, v in space.dimensions().items()}
    if args.json:
        print(json.dumps({"size": space.size(), "dimensions": dims}, indent=2))
        return 0
    table = Table(title=f"hybrid space: {space.size():.2e} architectures")
    table.add_column("parameter")
    table.add_column("choices")
    for key, choices in dims.items():
        table.add_row(key, ", ".join(map(str, choices)))
    Console().print(table)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("space", help="show the hybrid search space",
                       description="List the hybrid space's Optuna parameters with their choices and "
                                   "its size; --sample SEED prints one member as ArchConfig JSON.")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--sample", type=seed, metavar="SEED", help="print a uniformly sampled member")
    p.set_defaults(func=run)
