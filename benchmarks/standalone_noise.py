"""How well does standalone training rank the ranking benchmark's members against itself?

`benchmarks/supernet_study.py rank` compares the supernet with one standalone run per member (4 epochs,
seed 0). That reference is itself noisy — the val split holds 947 images, and a 4-epoch run
depends on its seed — so it caps the Kendall tau any supernet can reach. This retrains the same
members with the same recipe and another seed (`nas train`, each run resumable) and compares the
two standalone rankings: the tau between seeds is the ceiling the supernet is measured against.
With --epochs (and the same seed) it asks instead what a longer recipe changes; whether the
longer runs rank closer to the supernets is `benchmarks/supernet_study.py agreement`'s to say (it reads
these reports: `vs_standalone_reruns`).
The report is rewritten after every member, so a partial run already says something.

Writes benchmarks/results/standalone_noise.json.

    python benchmarks/standalone_noise.py                 # 12 members, seed 1 (about 1 h on 2 cores)
    python benchmarks/standalone_noise.py --members 6     # every other member of the 12
    python benchmarks/standalone_noise.py --seed 0 --epochs 8 --out benchmarks/results/standalone_e8.json
    python benchmarks/standalone_noise.py --seed 0 --epochs 16 --out benchmarks/results/standalone_e16.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine, repo_path  # noqa: E402
from supernet_study import BATCH, SPACE, kendall_tau, pick_archs  # noqa: E402

from nas.arch import save_arch  # noqa: E402
from nas.atomic import atomic_write_text  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root, load_dataset  # noqa: E402
from search_spaces.presets import resolve_space  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--reference", type=Path, default=RESULTS / "supernet_rank.json",
                   help="the ranking report whose standalone runs (seed 0) are compared against")
    p.add_argument("--seed", type=int, default=1, help="the other standalone seed (default 1)")
    p.add_argument("--epochs", type=int, help="standalone epochs (default: the reference's)")
    p.add_argument("--members", type=int, default=12, help="how many of the 12 members, spread evenly")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "standalone_noise")
    p.add_argument("--out", type=Path, default=RESULTS / "standalone_noise.json")
    args = p.parse_args(argv)

    reference = json.loads(args.reference.read_text(encoding="utf-8"))
    recipe = {**reference["standalone_recipe"], "seed": args.seed}
    recipe["epochs"] = args.epochs or recipe["epochs"]
    by_name = {row["name"]: row for row in reference["archs"]}
    data = load_dataset(args.data)
    space = reference.get("supernet", {}).get("space", SPACE)
    archs = pick_archs(resolve_space(space, data.num_classes), len(by_name), 0)
    if {a.name for a in archs} != set(by_name):
        raise SystemExit(f"{args.reference}: its members are not the {space} space's {len(by_name)} ranking members")
    step = len(archs) / max(1, min(args.members, len(archs)))
    chosen = [archs[int(k * step)] for k in range(min(args.members, len(archs)))]

    rows = []
    for arch in chosen:
        path = save_arch(arch, args.runs / "archs" / f"{arch.name}.json")
        out = args.runs / f"seed{args.seed}-e{recipe['epochs']}" / arch.name
        if not (out / "metrics.json").exists():  # written last: the run is finished
            code = nas(["train", str(path), "--epochs", str(recipe["epochs"]), "--out", str(out), "--data", args.data,
                        "--batch-size", str(recipe.get("batch_size", BATCH)), "--seed", str(args.seed), "--quiet"])
            if code:
                return code
        metrics = json.loads((out / "metrics.json").read_text())
        ref = by_name[arch.name]
        rows.append({"name": arch.name, "params": ref["params"],
                     "seed0_val_acc": ref["standalone_val_acc"], "seed0_test_acc": ref["standalone_test_acc"],
                     "other_val_acc": metrics["val_acc"], "other_test_acc": metrics["test_acc"],
                     "train_s": metrics["train_time_s"]})
        print(f"{arch.name}: val {100 * ref['standalone_val_acc']:.1f}% (seed 0) vs {100 * metrics['val_acc']:.1f}% "
              f"(seed {args.seed}, {recipe['epochs']} epochs)", flush=True)
        report(args, recipe, rows)
    return 0


def report(args: argparse.Namespace, recipe: dict, rows: list[dict]) -> None:
    """Rewrite the report from the members done so far."""
    taus = {split: round(kendall_tau([r[f"seed0_{split}_acc"] for r in rows],
                                     [r[f"other_{split}_acc"] for r in rows]), 3)
            if len(rows) > 1 else None for split in ("val", "test")}
    diffs = [abs(r["other_val_acc"] - r["seed0_val_acc"]) for r in rows]
    result = {"reference": repo_path(args.reference), "recipe": recipe, "members": len(rows),
              "kendall_tau_vs_reference": taus,
              "median_abs_val_diff": round(statistics.median(diffs), 4),
              "max_abs_val_diff": round(max(diffs), 4),
              "seed0_val_range": [min(r["seed0_val_acc"] for r in rows), max(r["seed0_val_acc"] for r in rows)],
              "rows": rows, "train_time_s": round(sum(r["train_s"] for r in rows), 1), "machine": machine()}
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
