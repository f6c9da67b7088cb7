"""The shipped accuracy predictor (predictors/accuracy/supernet.json), from the committed supernet recipe.

  1. the supernet of the committed recipe (benchmarks/supernet_study.py: trained, or resumed, or
     already there);
  2. `nas predictor fit` on --samples (300) random members of its space (inherited weights, BN
     recalibrated on 4 x 128 training images, val split; journaled, so a rerun continues), once
     with the MLP ensemble and once with the ridge baseline on the same samples;
  3. the model with the higher held-out (5-fold) Kendall tau is written to
     predictors/accuracy/supernet.json, its samples beside it (supernet.samples.jsonl);
  4. how fast it rates members (the search's per-trial cost), in members per second.

Writes benchmarks/results/accuracy_predictor.json.

    python benchmarks/accuracy_predictor.py            # about 1 h with the supernet, 15 min without
    python benchmarks/accuracy_predictor.py --tiny --data DIR --samples 20 --runs DIR  # seconds on a small dataset
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sklearn  # noqa: E402
from reporting import machine, repo_path  # noqa: E402
from supernet_study import train_supernet  # noqa: E402

from nas.atomic import atomic_write_text  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root  # noqa: E402
from predictors.accuracy.model import SUPERNET_PREDICTOR, load_predictor  # noqa: E402


def rating_speed(path: Path, count: int = 2000) -> float:
    """Members rated per second through the search's path (Optuna parameters -> accuracy)."""
    predictor = load_predictor(path)
    archs = [predictor.space.sample(i) for i in range(count)]
    params = [predictor.space.encode(a) for a in archs]
    tic = time.perf_counter()
    for a, p in zip(archs, params):
        predictor.predict_one(a, p)
    return count / (time.perf_counter() - tic)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--samples", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=str(ROOT / "runs" / "supernet_rank"), help="where the supernet run lives")
    p.add_argument("--out", help=f"the predictor (default {repo_path(SUPERNET_PREDICTOR)}; with --tiny in --runs)")
    p.add_argument("--report", help="default benchmarks/results/accuracy_predictor.json; with --tiny in --runs")
    p.add_argument("--tiny", action="store_true", help="the tiny space, 1 supernet epoch at batch 32, 200 members "
                                                       "timed: checks the pipeline, measures nothing")
    args = p.parse_args(argv)
    tiny_dir = Path(args.runs) / "tiny"  # a tiny run never replaces the shipped predictor or report
    args.out = args.out or str(tiny_dir / "supernet.json" if args.tiny else SUPERNET_PREDICTOR)
    args.report = args.report or str(tiny_dir / "accuracy_predictor.json" if args.tiny
                                     else ROOT / "benchmarks" / "results" / "accuracy_predictor.json")
    started = time.perf_counter()
    recipe = {"space": "tiny", "epochs": 1, "batch_size": 32} if args.tiny else {}
    sn_dir, sn_metrics = train_supernet(Path(args.runs), Path(args.data), args.seed, **recipe)

    fits, work = {}, Path(args.runs) / "predictor"
    work.mkdir(parents=True, exist_ok=True)
    for kind in ("mlp", "ridge"):
        out = work / f"{kind}.json"
        samples = work / "samples.samples.jsonl"  # one journal (--out samples.json): both models see the same members
        tic = time.perf_counter()
        code = nas(["predictor", "fit", "--supernet", str(sn_dir / "supernet.pt"), "--data", args.data,
                    "--samples", str(args.samples), "--seed", str(args.seed), "--model", kind,
                    "--out", str(work / "samples.json"), "--quiet"])
        if code:
            return code
        shutil.copyfile(work / "samples.json", out)
        fits[kind] = {"holdout": load_predictor(out).info["holdout"], "seconds": round(time.perf_counter() - tic, 1)}
        print(f"{kind}: held-out {fits[kind]['holdout']}")
    chosen = max(fits, key=lambda k: fits[k]["holdout"]["kendall_tau"])
    target = Path(args.out)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(work / f"{chosen}.json", target)
    shutil.copyfile(samples, target.with_name(target.stem + ".samples.jsonl"))
    speed = rating_speed(target, 200 if args.tiny else 2000)
    accs = [json.loads(line)["acc"] for line in samples.read_text().splitlines() if line.strip()]
    report = {
        "predictor": repo_path(target),
        "chosen": chosen, "fits": fits, "samples": len(accs),
        "val_accuracy_range": [min(accs), max(accs)],
        "members_rated_per_s": round(speed),
        "supernet": {k: sn_metrics.get(k) for k in ("train_time_s", "largest_val_acc", "smallest_val_acc",
                                                     "images_per_s", "space")},
        "machine": machine(scikit_learn=sklearn.__version__),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    print(f"{target}: {chosen} (held-out tau {fits[chosen]['holdout']['kendall_tau']:.3f}), "
          f"{speed:.0f} members/s -> {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
