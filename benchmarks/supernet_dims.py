"""Which elastic dimension does a trained supernet serve worst? One change at a time from the largest.

A supernet rates members well only if every choice it shares weights across keeps working. This
starts from the space's largest member (the one the sandwich trains hardest) and changes one
choice at a time to each of its other values — a stage's depth, width, family, the stem's depth,
the SE placement, ... — rating each with inherited weights and BN recalibration, as the search
does. A choice whose change costs far more accuracy than its lost capacity explains is one the
shared weights do not serve: its members are rated by how much of that choice's training they got.

    python benchmarks/supernet_dims.py --supernet runs/supernet_rank/supernet-proxy-teacherfixed/supernet.pt

Writes benchmarks/results/supernet_dims.json (every change, its accuracy and the drop from the
largest member).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine  # noqa: E402

from nas.atomic import atomic_write_text  # noqa: E402
from nas.data import default_data_root, load_dataset  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator, load_supernet  # noqa: E402
from search_spaces.hybrid import ExtremeTrial, HybridSpace  # noqa: E402


class OneChange:
    """Answers as the space's largest member does, except `name` -> `value`; records what was asked
    and what it answered."""

    def __init__(self, name: str | None = None, value: Any = None) -> None:
        self.largest = ExtremeTrial(largest=True)
        self.name, self.value = name, value
        self.asked: dict[str, list[Any]] = {}
        self.answered: dict[str, Any] = {}

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.asked[name] = list(choices)
        answer = self.value if name == self.name else self.largest.suggest_categorical(name, choices)
        self.answered[name] = answer
        return answer


def single_changes(space: HybridSpace) -> list[tuple[str, Any]]:
    """(parameter, value) for every other value of every choice the largest member makes."""
    probe = OneChange()
    space.suggest(probe)
    return [(name, value) for name, choices in probe.asked.items() for value in choices
            if value != probe.answered[name]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, help="supernet.pt (or a run folder) of a trained supernet")
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "supernet_dims.json"))
    args = p.parse_args()
    started = time.perf_counter()
    data = load_dataset(args.data)
    supernet = load_supernet(args.supernet)
    space = supernet.space
    evaluator = SubnetEvaluator(supernet, data, args.split)
    base = evaluator.evaluate(space.largest())["acc"]
    print(f"largest member: {base:.1%}")
    rows = []
    for name, value in single_changes(space):
        acc = evaluator.evaluate(space.suggest(OneChange(name, value)))["acc"]
        rows.append({"param": name, "value": value, "acc": round(acc, 4), "drop": round(base - acc, 4)})
        print(f"  {name:18s} -> {value!s:10s} {acc:.1%}  ({acc - base:+.1%})", flush=True)
    rows.sort(key=lambda r: -r["drop"])
    report = {"supernet": str(args.supernet), "space": space.name, "split": args.split,
              "largest_acc": round(base, 4), "changes": rows, "wall_time_s": round(time.perf_counter() - started, 1),
              "machine": machine()}
    atomic_write_text(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
