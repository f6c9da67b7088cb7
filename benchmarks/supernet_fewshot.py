"""Weight-sharing ratings of the bench members: the one-shot supernet, and few-shot sub-supernets.

Few-shot NAS (Zhao et al., ICML 2021) splits the space into sub-spaces, one sub-supernet each,
warm-started from the one-shot supernet, so that members which share weights also share more of
their structure (fewer conflicting gradients). The split here is by stage 2's family (the
proxy space's five), each sub-supernet trained `--split-epochs` more epochs; a member is rated by
its own sub-supernet (inherited weights, BN recalibrated, val split), the same way as the
one-shot supernet rates it.

Writes `ratings-<name>.json` into the bench folder ({"label", "ratings": {arch_hash: val top-1},
how they were made}); benchmarks/accuracy_sources.py scores every ratings file it finds there, and
what it adds to the fitted predictor as a feature.

    python benchmarks/supernet_fewshot.py --one-shot runs/supernet-proxy          # rate the one-shot only
    python benchmarks/supernet_fewshot.py --one-shot runs/supernet-proxy --split-epochs 2
    python benchmarks/supernet_fewshot.py --train-one-shot --epochs 10 --sampling complexity --name oneshot-cas
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine, repo_path  # noqa: E402

from nas.arch import parse_arch  # noqa: E402
from nas.atomic import atomic_write_text  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root, load_dataset  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator, load_supernet  # noqa: E402
from predictors.accuracy.bench import bench_space, read_bench  # noqa: E402
from search_spaces.presets import space_to_dict  # noqa: E402

BENCH = ROOT / "benchmarks" / "results" / "proxy_bench"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", type=Path, default=BENCH)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--one-shot", type=Path, help="a finished `nas supernet train` run folder")
    p.add_argument("--train-one-shot", action="store_true", help="train the one-shot supernet first (resumable)")
    p.add_argument("--epochs", type=int, default=10, help="one-shot epochs when training it (default 10)")
    p.add_argument("--sampling", default="uniform", help="one-shot --sampling when training it")
    p.add_argument("--split-epochs", type=int, default=0, help="epochs per few-shot sub-supernet (0: none)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "fewshot")
    p.add_argument("--name", help="ratings file name (default: oneshot, or fewshot-s2-eE)")
    args = p.parse_args(argv)
    if (args.one_shot is None) == (not args.train_one_shot):
        p.error("give --one-shot RUN or --train-one-shot")
    torch.set_num_threads(1)
    one_shot = args.one_shot or train(args.runs / f"oneshot-e{args.epochs}-{args.sampling}", "proxy", args.data,
                                      args.epochs, ["--sampling", args.sampling])
    space = bench_space(args.bench)
    rows = read_bench(args.bench)
    members = {r["arch_hash"]: parse_arch(r["arch"]) for r in rows}
    data = load_dataset(args.data)
    tic = time.perf_counter()
    if args.split_epochs:
        name = args.name or f"fewshot-s2-e{args.split_epochs}"
        supernets = {fam: train(args.runs / f"{name}-{fam}", _sub_space_file(args.runs, space, fam), args.data,
                                args.split_epochs, ["--init-from", str(one_shot)]) for fam in space.stages[2].families}
        label = f"few-shot supernets (stage 2 split, {args.split_epochs} epochs each)"
    else:
        name = args.name or "oneshot"
        supernets = {None: one_shot}
        label = f"supernet inherited val top-1 ({one_shot.name})"
    evaluators = {fam: SubnetEvaluator(load_supernet(path), data, "val") for fam, path in supernets.items()}
    ratings = {h: evaluators[a.stages[2].block if args.split_epochs else None].evaluate(a)["acc"]
               for h, a in members.items()}
    report = {"label": label, "ratings": ratings, "supernets": {str(k): repo_path(v) for k, v in supernets.items()},
              "train_time_s": sum(_train_time(v) for v in supernets.values()) + (_train_time(one_shot)
                                                                                  if args.split_epochs else 0),
              "rating_s": round(time.perf_counter() - tic, 1), "machine": machine()}
    path = atomic_write_text(args.bench / f"ratings-{name}.json", json.dumps(report, indent=1) + "\n")
    print(f"{path}: {len(ratings)} members rated ({label})")
    return 0


def _sub_space_file(runs: Path, space: Any, family: str) -> Path:
    stages = list(space.stages)
    stages[2] = dataclasses.replace(stages[2], families=(family,))
    sub = dataclasses.replace(space, stages=tuple(stages), name=f"{space.name}-s2-{family}")
    runs.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(runs / f"space-s2-{family}.json", json.dumps(space_to_dict(sub), indent=1) + "\n")


def train(out: Path, space: str | Path, data: str, epochs: int, options: list[str]) -> Path:
    """A `nas supernet train` run (resumed if it exists), with the committed recipe's settings."""
    if not (out / "supernet.pt").exists():
        code = nas(["supernet", "train", "--space", str(space), "--epochs", str(epochs), "--out", str(out),
                    "--num-random", "1", "--batch-size", "64", "--checkpoint-every", "50", "--data", data,
                    "--quiet", *options])
        if code:
            raise SystemExit(code)
    return out


def _train_time(run: Path) -> float:
    try:
        return float(json.loads((run / "metrics.json").read_text())["train_time_s"])
    except (OSError, KeyError, ValueError):
        return 0.0


if __name__ == "__main__":
    raise SystemExit(main())
