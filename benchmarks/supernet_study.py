"""The supernet study: does the weight-sharing supernet rate architectures as standalone training does?

One script for every question the supernet ranking raised (issue 8; the log of what each answered
is docs/supernet-ranking.md); one sub-command per question, all on the committed recipe below:

  rank       the 12-member ranking benchmark: Kendall tau of inherited against standalone accuracy
             (benchmarks/results/supernet_rank*.json, .png)
  agreement  do the trained supernets agree with each other? reads the committed reports, seconds
             (supernet_agreement.json)
  dims       which elastic choice a trained supernet serves worst (supernet_dims_*.json)
  layouts    early training loss under different per-step family layouts (supernet_layouts*.json, .png)
  fewshot    one-shot and few-shot supernet ratings of the bench members (proxy_bench/ratings-*.json)

    python benchmarks/supernet_study.py rank --smoke --data DIR   # seconds on a small dataset
    python benchmarks/supernet_study.py SUB-COMMAND --help        # what each one does and writes

The committed supernet recipe (shared with benchmarks/accuracy_predictor.py, which fits the
default accuracy predictor on it): `nas supernet train --space proxy --epochs 10 --batch-size 64
--num-random 1 --seed 0 --keep-epochs` on the shared proxy dataset (imagenette2-64, 64 px):
sandwich rule, in-place distillation, AdamW + cosine, label smoothing 0.1 (the command's
defaults); each epoch's weights are kept for `rank --trajectory`. It fits in under an hour on a
2-core machine; running it again resumes (or does nothing once done).
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine, repo_path  # noqa: E402

from nas.arch import parse_arch, save_arch  # noqa: E402
from nas.arch.schema import ArchConfig  # noqa: E402
from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.builder import build_model  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root, load_dataset, mix_seed  # noqa: E402
from nas.profile import count_params  # noqa: E402
from nas.supernet import Supernet  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator, epoch_snapshot, load_supernet  # noqa: E402
from nas.supernet.trainer import Sandwich, SupernetTrainer  # noqa: E402
from nas.train import make_recipe  # noqa: E402
from predictors.accuracy.bench import bench_space, read_bench  # noqa: E402
from search_spaces.hybrid import ExtremeTrial, HybridSpace  # noqa: E402
from search_spaces.presets import resolve_space, space_to_dict  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

# ------------------------------------------------------------------ the committed recipe

SPACE, EPOCHS, BATCH, NUM_RANDOM = "proxy", 10, 64, 1


def supernet_run(out: Path, data_root: str | Path, space: str | Path = SPACE, epochs: int = EPOCHS,
                 options: tuple[str, ...] | list[str] = (), seed: int = 0, batch_size: int = BATCH,
                 num_random: int = NUM_RANDOM) -> Path:
    """`out` after a `nas supernet train` run into it with the recipe's settings and further
    `options` (resumed if interrupted; left alone once its metrics.json, written last, is there);
    raises SystemExit on failure."""
    if not (out / "metrics.json").exists():
        code = nas(["supernet", "train", "--space", str(space), "--epochs", str(epochs), "--out", str(out),
                    "--num-random", str(num_random), "--checkpoint-every", "50", "--data", str(data_root),
                    "--batch-size", str(batch_size), "--seed", str(seed), "--quiet", *options])
        if code:
            raise SystemExit(code)
    return out


def train_supernet(runs: Path, data_root: Path, seed: int = 0, space: str = SPACE, epochs: int = EPOCHS,
                   batch_size: int = BATCH, num_random: int = NUM_RANDOM,
                   variant: dict[str, str] | None = None) -> tuple[Path, dict]:
    """(run folder, its metrics.json) of the recipe's supernet, trained, resumed or already there;
    each epoch's weights kept. Another epoch count (the cosine schedule spans the whole run) or
    number of random members is another run: its own folder.
    `variant`: further `nas supernet train` options ({"kd-weight": "0"}), named in the folder."""
    variant = variant or {}
    name = f"supernet-{space}" + ("" if epochs == EPOCHS else f"-e{epochs}") + \
        ("" if num_random == NUM_RANDOM else f"-r{num_random}") + \
        "".join(f"-{key}{value}" for key, value in sorted(variant.items()))
    options = ["--keep-epochs", *(arg for key, value in sorted(variant.items()) for arg in (f"--{key}", value))]
    out = supernet_run(runs / name, data_root, space, epochs, options, seed, batch_size, num_random)
    return out, json.loads((out / "metrics.json").read_text())


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def pick_archs(space, count: int, seed: int = 0, layout: list[str] | None = None) -> list:
    """`count` members at evenly spaced parameter-count quantiles, alternating families (or all of
    one family `layout`): the ranking benchmark's members."""
    pool = [space.sample(seed * 100_000 + i, families=layout) for i in range(120)]
    sized = sorted(pool, key=lambda a: count_params(build_model(a)))
    families = [f for f in space.stages[2].families]
    picked, used = [], set()
    for k in range(count):
        target = round(k * (len(sized) - 1) / max(1, count - 1))
        want = families[k % len(families)]
        # nearest member to the quantile whose stage-2 family is the wanted one (else the quantile's)
        order = sorted(range(len(sized)), key=lambda j: abs(j - target))
        j = next((j for j in order if sized[j].stages[2].block == want and j not in used), target)
        while j in used:
            j = next(i for i in order if i not in used)
        used.add(j)
        picked.append(sized[j].model_copy(update={"name": f"rank{k:02d}-{sized[j].arch_hash()[:8]}"}))
    return picked


def save_figure(fig, path: Path, dpi: int = 100) -> None:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"))


# ------------------------------------------------------------------ rank

RANK = """Does the supernet rank architectures as standalone training does? (issue 8's acceptance check)

Recipe (every step resumable: re-run the same command after an interruption):

  1. train the supernet with the committed recipe (the `proxy` space on the shared proxy dataset,
     10 epochs; budget <= 2 h on 2 CPU cores);
  2. pick --archs members spread over the space: 120 seeded samples, sorted by parameter count,
     taken at evenly spaced quantiles, stage 2/3 families alternating so that every family appears;
  3. rate each with inherited weights (BN recalibrated on 4 x 128 training images) on the val split;
  4. train each standalone from scratch with one short identical recipe (`nas train --epochs
     --standalone-epochs --batch-size 64`, same seed) and read its val accuracy. Run folders do not
     outlive a machine, so a member whose standalone result is already in --standalone-from (by
     default the committed report) under the same recipe, data and arch hash is taken from there
     (each row says where its figures came from); --standalone-from '' retrains them all;
  5. Kendall tau between the two rankings on the val split (target >= 0.6, the split the search
     rates members on), and the same on the 4x larger test split, where both rankings are less
     noisy (a report only: nothing is selected with it); plus the training throughput (images/s,
     forward + backward + AdamW step at batch 64) of the largest and smallest members, both through
     the supernet and as extracted standalone networks; and, as the yardstick any ranking should
     beat, the Kendall tau of plain parameter count;
  6. with --trajectory K: the same taus with the weights kept at every K-th epoch end (the supernet
     is trained with --keep-epochs), i.e. whether longer training would rank better.

With --layout F0,F1,F2,F3 the members are drawn within that one family layout (widths, depths,
kernels, ... vary; the families do not): whether the supernet ranks members of one family
layout better than members across layouts locates where its ranking fails.

Writes benchmarks/results/supernet_rank.json and supernet_rank.png.

    python benchmarks/supernet_study.py rank                  # the full recipe (hours)
    python benchmarks/supernet_study.py rank --smoke --data DIR   # proves the pipeline end to end
"""

STANDALONE_FIELDS = ("standalone_val_acc", "standalone_test_acc", "standalone_train_s")
SPLITS = ("val", "test")


def throughput(model: torch.nn.Module, resolution: int, batch: int, steps: int, classes: int = 10) -> float:
    """Training images/s: forward, backward, AdamW step (after one warm-up step)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, classes, (batch,))
    for i in range(steps + 1):
        if i == 1:
            tic = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch / (time.perf_counter() - tic)


def standalone_cache(path: str, recipe: dict) -> dict[str, dict]:
    """arch hash -> standalone figures from an earlier report measured under the same `recipe`."""
    if not path or not Path(path).exists():
        return {}
    report = json.loads(Path(path).read_text())
    if report.get("standalone_recipe") != recipe or report.get("smoke"):
        return {}
    return {r["arch_hash"]: {k: r[k] for k in STANDALONE_FIELDS} for r in report["archs"]}


def split_taus(scores: dict[str, list[float]], rows: list[dict]) -> dict[str, float]:
    """Per split: Kendall tau of `scores[split]` (one per row) against the rows' standalone accuracy."""
    return {split: kendall_tau(values, [r[f"standalone_{split}_acc"] for r in rows])
            for split, values in scores.items()}


def split_evaluators(supernet: Supernet, data) -> dict[str, SubnetEvaluator]:
    """Inherited-weight evaluators of `supernet` on each split (BN recalibrated on 4 x 128 images)."""
    return {split: SubnetEvaluator(supernet, data, split, calib_batches=4, batch_size=128) for split in SPLITS}


def rank_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--space", default=SPACE)
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"supernet epochs (default {EPOCHS})")
    p.add_argument("--standalone-epochs", type=int, default=4, help="standalone epochs per arch (default 4)")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--num-random", type=int, default=NUM_RANDOM)
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=str(ROOT / "runs" / "supernet_rank"))
    p.add_argument("--out", help="report path (default benchmarks/results/supernet_rank.json; "
                                 "with --smoke RUNS/smoke.json)")
    p.add_argument("--standalone-from", default=str(RESULTS / "supernet_rank.json"),
                   help="report whose standalone results to reuse when the recipe matches ('' for none)")
    p.add_argument("--variant", nargs="+", default=[], metavar="OPTION=VALUE",
                   help="a supernet recipe variant: further `nas supernet train` options, e.g. kd-weight=0 lr=1e-3 "
                        "(trained into its own folder)")
    p.add_argument("--layout", type=lambda text: text.split(","), metavar="F0,F1,...",
                   help="draw every member within this family layout (one family per stage)")
    p.add_argument("--supernet", type=Path, metavar="RUN_DIR",
                   help="rate this finished `nas supernet train` run instead of training one (its epochs, "
                        "number of random members and sandwich settings are read from its run.json)")
    p.add_argument("--trajectory", type=int, default=0, metavar="K",
                   help="also rank with the weights of every K-th epoch end (default 0: off)")
    p.add_argument("--smoke", action="store_true", help="tiny space, 1 epoch each, 4 archs, batch 32: checks the "
                                                        "pipeline, measures nothing (give a small --data)")


def rank(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    runs = Path(args.runs)
    data_root = Path(args.data)
    if args.smoke:
        args.space, args.epochs, args.standalone_epochs, args.archs = "tiny", 1, 1, 4
        args.batch_size = 32
    args.out = args.out or str(runs / "smoke.json" if args.smoke else RESULTS / "supernet_rank.json")
    started = time.perf_counter()
    common = ["--data", str(data_root), "--batch-size", str(args.batch_size), "--seed", str(args.seed), "--quiet"]

    # 1. supernet (resumes if interrupted)
    tic = time.perf_counter()
    variant = dict(option.split("=", 1) for option in args.variant if "=" in option)
    if len(variant) != len(args.variant):
        p.error(f"--variant: expected OPTION=VALUE items, got {args.variant}")
    rated_run = None  # the supernet was trained here, with the recipe and `variant`
    if args.supernet is not None:
        sn_dir = args.supernet
        missing = [name for name in ("metrics.json", "run.json", "supernet.pt") if not (sn_dir / name).is_file()]
        if missing:
            p.error(f"--supernet {sn_dir}: no {missing[0]}; expected a finished `nas supernet train` folder")
        supernet_metrics, run = (json.loads((sn_dir / name).read_text()) for name in ("metrics.json", "run.json"))
        args.epochs, args.num_random = run["recipe"]["epochs"], run["sandwich"]["num_random"]
        rated_run = {"folder": repo_path(sn_dir), "sandwich": run["sandwich"], "recipe": run["recipe"]}
    else:
        sn_dir, supernet_metrics = train_supernet(runs, data_root, args.seed, args.space, args.epochs,
                                                  args.batch_size, args.num_random, variant)
    print(f"supernet: {supernet_metrics['train_time_s'] / 3600:.2f} h of training "
          f"({time.perf_counter() - tic:.0f} s this session)")

    # 2-3. members and their inherited-weight accuracy
    data = load_dataset(data_root)
    supernet = load_supernet(sn_dir / "supernet.pt")
    space = supernet.space
    if args.layout is not None and (len(args.layout) != len(space.stages) or any(
            f not in st.families for f, st in zip(args.layout, space.stages))):
        p.error(f"--layout {','.join(args.layout)}: expected one family per stage, from "
                + " / ".join("|".join(st.families) for st in space.stages))
    archs = pick_archs(space, args.archs, args.seed, args.layout)
    evaluators = split_evaluators(supernet, data)
    rows = []
    for arch in archs:
        tic = time.perf_counter()
        inherited = evaluators["val"].evaluate(arch)
        rows.append({"name": arch.name, "arch_hash": arch.arch_hash(), "params": count_params(build_model(arch)),
                     "families": [s.block for s in arch.stages], "supernet_val_acc": inherited["acc"],
                     "supernet_eval_s": round(time.perf_counter() - tic, 2),
                     "supernet_test_acc": evaluators["test"].evaluate(arch)["acc"]})
        print(f"{arch.name}: inherited val acc {100 * inherited['acc']:.2f}%")

    # 4. standalone training, one short identical recipe (each run resumes if interrupted)
    recipe = {"epochs": args.standalone_epochs, "batch_size": args.batch_size, "seed": args.seed,
              "data": {k: v for k, v in data.describe().items() if k != "root"}}  # the same data anywhere
    cache = standalone_cache(args.standalone_from, recipe)
    arch_dir = runs / "archs"
    for arch, row in zip(archs, rows):
        if row["arch_hash"] in cache:
            row.update(cache[row["arch_hash"]], standalone_source=repo_path(args.standalone_from))
            continue
        path = save_arch(arch, arch_dir / f"{arch.name}.json")
        out = runs / "standalone" / arch.name
        code = nas(["train", str(path), "--epochs", str(args.standalone_epochs), "--out", str(out), *common])
        if code:
            return code
        metrics = json.loads((out / "metrics.json").read_text())
        row.update(standalone_val_acc=metrics["val_acc"], standalone_test_acc=metrics["test_acc"],
                   standalone_train_s=metrics["train_time_s"], standalone_source=repo_path(out))
        print(f"{arch.name}: standalone val acc {100 * metrics['val_acc']:.2f}%")

    taus = split_taus({split: [r[f"supernet_{split}_acc"] for r in rows] for split in SPLITS}, rows)
    # The zero-cost yardstick: a ranking by parameter count, which any predictor should beat.
    params_taus = split_taus({split: [r["params"] for r in rows] for split in SPLITS}, rows)

    # 6. how the ranking evolved with training
    trajectory = []
    for epoch in range(args.trajectory, args.epochs + 1, args.trajectory) if args.trajectory else ():
        if epoch == args.epochs:  # the final weights: ranked above already
            trajectory.append({"epoch": epoch, "kendall_tau": taus["val"], "kendall_tau_test": taus["test"]})
            continue
        snapshot = epoch_snapshot(sn_dir, epoch)
        if not snapshot.exists():
            print(f"{snapshot}: not kept (train with --keep-epochs); trajectory skips epoch {epoch}")
            continue
        kept = split_evaluators(load_supernet(snapshot), data)
        accs = {split: [ev.evaluate(a)["acc"] for a in archs] for split, ev in kept.items()}
        per_split = split_taus(accs, rows)
        trajectory.append({"epoch": epoch, "kendall_tau": per_split["val"], "kendall_tau_test": per_split["test"],
                           "supernet_val_acc": dict(zip((a.name for a in archs), accs["val"]))})
        print(f"epoch {epoch}: Kendall tau {per_split['val']:.3f} (test {per_split['test']:.3f})")

    # 5. throughput of the extremes
    res = max(space.resolutions)
    speed = {}
    load = os.getloadavg()[0]  # other work on the machine slows these figures down; say how busy it was
    for which, arch in (("largest", space.largest()), ("smallest", space.smallest())):
        fresh = Supernet(space)
        fresh.set_active(arch)
        speed[which] = {"supernet_images_per_s": round(throughput(fresh, res, args.batch_size, 3, data.num_classes), 1),
                        "standalone_images_per_s": round(throughput(build_model(arch), res, args.batch_size, 3,
                                                                     data.num_classes), 1),
                        "params": count_params(build_model(arch))}
        print(f"{which}: {speed[which]}")

    tau = taus["val"]
    report = {
        "kendall_tau": tau, "target": 0.6, "passed": tau >= 0.6, "smoke": args.smoke,
        "params_kendall_tau": params_taus["val"], "kendall_tau_test": taus["test"],
        "params_kendall_tau_test": params_taus["test"], "trajectory": trajectory, "archs": rows,
        "throughput_batch": args.batch_size, "throughput": speed, "throughput_load_average": round(load, 2),
        "layout": args.layout,
        "supernet": {"space": args.space, "epochs": args.epochs, "num_random": args.num_random, "variant": variant,
                     "run": rated_run,
                     "train_time_s": supernet_metrics["train_time_s"],
                     "images_per_s": supernet_metrics["images_per_s"],
                     "largest_val_acc": supernet_metrics["largest_val_acc"],
                     "smallest_val_acc": supernet_metrics["smallest_val_acc"]},
        "standalone_epochs": args.standalone_epochs, "standalone_recipe": recipe, "data": data.describe(),
        "machine": machine(),
        "wall_time_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    _plot_rank(rows, tau, params_taus["val"], out.with_suffix(".png"))
    print(f"Kendall tau {tau:.3f} over {len(rows)} archs (parameter count: {params_taus['val']:.3f}; on the test "
          f"split {taus['test']:.3f} / {params_taus['test']:.3f}) -> {out}")
    return 0


def _plot_rank(rows: list[dict], tau: float, params_tau: float, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter([100 * r["standalone_val_acc"] for r in rows], [100 * r["supernet_val_acc"] for r in rows])
    for r in rows:
        ax.annotate(r["name"][:6], (100 * r["standalone_val_acc"], 100 * r["supernet_val_acc"]), fontsize=7)
    ax.set(xlabel="standalone val top-1 (%)", ylabel="supernet-inherited val top-1 (%)",
           title=f"Kendall tau = {tau:.2f} (parameter count: {params_tau:.2f})")
    ax.grid(alpha=0.3)
    save_figure(fig, path)


# ------------------------------------------------------------------ agreement

AGREEMENT = """Do the trained supernets agree with each other, where they disagree with standalone training?

Every supernet recipe in benchmarks/results/supernet_rank*.json (but the `--layout` ones, which
rank members of one family layout) ranks the same 12 members near tau 0 against standalone
training. That is either noise (then two supernets would not agree with each other either) or a
consistent ranking of their own that differs from standalone training's (then they agree with
each other). This reads the committed reports, no training or measuring:

  - Kendall tau of every pair of supernets' inherited val accuracies;
  - each supernet's, and their mean's, tau against standalone val accuracy;
  - the members in the supernets' consensus order (mean inherited val accuracy) beside their
    standalone accuracy, with their families: what the shared weights favour;
  - each supernet's, their mean's, and parameter count's tau (val and test) against every longer
    or reseeded standalone rerun (benchmarks/standalone_noise.py): whether the supernets agree
    better with a longer-trained reference than with the 4-epoch one;
  - each ranking's split consistency: the Kendall tau between its val and its test accuracies
    (same weights, other images). A ranking that disagrees with itself across splits cannot agree
    with another ranking better than that noise allows;
  - the Kendall tau of each member's total depth (stem + stage depths) with its accuracy, for every
    supernet (and its kept snapshots, where the report has their accuracies), every standalone
    recipe (the seed-1, 8- and 16-epoch reruns of standalone_noise.py), and within one family layout
    (reports of `rank --layout`): whether depth is what the two methods disagree on.
    The members are rebuilt from the space and the report's layout by pick_archs (as `rank` picks
    them), and checked against the reports' arch hashes.

Writes benchmarks/results/supernet_agreement.json.

    python benchmarks/supernet_study.py agreement       # seconds
"""


def load_reports(paths: list[Path]) -> dict[str, dict]:
    """{report name: report} of the full (not smoke) ranking reports."""
    reports = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in paths}
    return {name: report for name, report in reports.items() if not report.get("smoke")}


def total_depth(arch: ArchConfig) -> int:
    """Layers the stem and the stages stack (each stage's depth as its family counts it)."""
    return arch.stem.depth + sum(stage.depth for stage in arch.stages)


def member_depths(report: dict) -> dict[str, int]:
    """{member name: total depth} of a ranking report's members, rebuilt as `rank` picked them."""
    space = resolve_space(report["supernet"]["space"], report["data"]["classes"])
    archs = {a.name: a for a in pick_archs(space, len(report["archs"]), report["standalone_recipe"]["seed"],
                                           report.get("layout"))}
    for row in report["archs"]:
        if row["name"] not in archs or archs[row["name"]].arch_hash() != row["arch_hash"]:
            raise SystemExit(f"{row['name']}: not the member `rank` picks now; cannot tell its depth")
    return {name: total_depth(arch) for name, arch in archs.items()}


def load_reruns(paths: list[Path], members: int) -> dict[str, dict[str, dict]]:
    """{label: {member name: row}} of the standalone reruns that cover all `members` (partial ones
    are left out: a tau over a different member set would not compare)."""
    reruns = {}
    for path in paths:
        rerun = json.loads(path.read_text(encoding="utf-8"))
        if len(rerun["rows"]) == members:
            label = f"{rerun['recipe']['epochs']} epochs, seed {rerun['recipe']['seed']} ({path.name})"
            reruns[label] = {r["name"]: r for r in rerun["rows"]}
    return reruns


def rated(reports: dict[str, dict[str, dict]], names: list[str], split: str) -> dict[str, list[float]]:
    """{report: its inherited `split` accuracies in `names` order}, for the reports that rated
    `split` (the oldest report has no test accuracies)."""
    return {report: [rows[n][f"supernet_{split}_acc"] for n in names] for report, rows in reports.items()
            if f"supernet_{split}_acc" in rows[names[0]]}


def mean_rating(inherited: dict[str, list[float]]) -> list[float]:
    """The supernets' consensus: each member's mean inherited accuracy."""
    return [statistics.mean(member) for member in zip(*inherited.values())]


def vs_reruns(reports: dict[str, dict[str, dict]], names: list[str],
              reruns: dict[str, dict[str, dict]]) -> dict[str, dict]:
    """Per standalone rerun and split: each supernet's, the consensus's and parameter count's Kendall
    tau against the rerun's accuracies."""
    inherited = {split: rated(reports, names, split) for split in ("val", "test")}
    consensus = {split: mean_rating(accs) for split, accs in inherited.items()}
    out = {}
    for label, rows in reruns.items():
        out[label] = {}
        for split, accs in inherited.items():
            truth = [rows[n][f"other_{split}_acc"] for n in names]
            out[label][split] = {
                "supernets": {report: round(kendall_tau(acc, truth), 3) for report, acc in accs.items()},
                "consensus": round(kendall_tau(consensus[split], truth), 3),
                "params": round(kendall_tau([rows[n]["params"] for n in names], truth), 3)}
    return out


def split_consistency(reports: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Per report that rated both splits: tau between val and test accuracies of its supernet
    ratings and of its standalone runs."""
    return {name: {kind: round(kendall_tau([r[f"{kind}_val_acc"] for r in report["archs"]],
                                           [r[f"{kind}_test_acc"] for r in report["archs"]]), 3)
                   for kind in ("supernet", "standalone")}
            for name, report in reports.items() if "supernet_test_acc" in report["archs"][0]}


def depth_taus(reports: dict[str, dict], reruns: dict[str, dict[str, dict]]) -> dict[str, object]:
    """Kendall tau of total depth with accuracy: per supernet (inherited val), per standalone recipe
    (val), and per layout-restricted report (both)."""
    cross = {name: r for name, r in reports.items() if not r.get("layout")}
    reference = next(iter(cross.values()))
    depth = member_depths(reference)
    names = sorted(depth)
    depths = [depth[n] for n in names]

    def tau(rows: dict[str, dict], key: str) -> float:
        return round(kendall_tau(depths, [rows[n][key] for n in names]), 3)

    standalone = {"4 epochs, seed 0 (the reference)": tau({r["name"]: r for r in reference["archs"]},
                                                           "standalone_val_acc")}
    for label, rows in reruns.items():
        standalone[label] = tau(rows, "other_val_acc")
    within = {}
    for name, report in reports.items():
        if report.get("layout"):
            layout_depth = member_depths(report)
            rows = report["archs"]
            d = [layout_depth[r["name"]] for r in rows]
            within[name] = {"layout": report["layout"],
                            "standalone": round(kendall_tau(d, [r["standalone_val_acc"] for r in rows]), 3),
                            "supernet": round(kendall_tau(d, [r["supernet_val_acc"] for r in rows]), 3),
                            "supernet_vs_standalone": round(report["kendall_tau"], 3)}
    # reports that kept each snapshot's member accuracies: how the preference grew with training
    during = {name: {str(t["epoch"]): round(kendall_tau(depths, [t["supernet_val_acc"][n] for n in names]), 3)
                     for t in report.get("trajectory", []) if "supernet_val_acc" in t}
              for name, report in cross.items()}
    return {"depth_range": [min(depths), max(depths)], "standalone_val": standalone,
            "supernets_val": {name: tau({r["name"]: r for r in report["archs"]}, "supernet_val_acc")
                              for name, report in cross.items()},
            "supernets_val_by_epoch": {name: taus for name, taus in during.items() if taus},
            "within_one_layout": within}


def agreement_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", nargs="+", type=Path, default=sorted(RESULTS.glob("supernet_rank*.json")))
    p.add_argument("--standalone", nargs="*", type=Path,
                   default=[RESULTS / f for f in ("standalone_noise.json", "standalone_e8.json", "standalone_e16.json")
                            if (RESULTS / f).exists()],
                   help="standalone reruns (benchmarks/standalone_noise.py) to compare with (partial ones are skipped)")
    p.add_argument("--out", type=Path, default=RESULTS / "supernet_agreement.json")


def agreement(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    missing = next((path for path in [*args.reports, *args.standalone] if not path.is_file()), None)
    if missing is not None:
        p.error(f"{missing}: no such report; expected a `rank` or standalone_noise.py JSON")

    everything = load_reports(args.reports)
    # the agreement needs one member set: that of the reports not restricted to one layout
    reports = {name: {row["name"]: row for row in r["archs"]} for name, r in everything.items() if not r.get("layout")}
    if len({frozenset(rows) for rows in reports.values()}) != 1:
        raise SystemExit("the reports rank different members: nothing to compare")
    names = sorted(next(iter(reports.values())))
    inherited = rated(reports, names, "val")
    reference = next(iter(reports.values()))
    standalone = [reference[n]["standalone_val_acc"] for n in names]
    reruns = load_reruns(args.standalone, len(names))

    pairs = [{"a": a, "b": b, "kendall_tau": round(kendall_tau(inherited[a], inherited[b]), 3)}
             for a, b in itertools.combinations(inherited, 2)]
    vs_standalone = {report: round(kendall_tau(acc, standalone), 3) for report, acc in inherited.items()}
    consensus = mean_rating(inherited)
    order = sorted(range(len(names)), key=lambda i: -consensus[i])
    result = {
        "reports": list(inherited), "members": len(names),
        "pairwise_median_tau": round(statistics.median(p["kendall_tau"] for p in pairs), 3),
        "pairwise": pairs, "vs_standalone_val": vs_standalone,
        "consensus_vs_standalone_val": round(kendall_tau(consensus, standalone), 3),
        "consensus_order": [{"name": names[i], "families": reference[names[i]]["families"],
                             "mean_inherited_val_acc": round(consensus[i], 4),
                             "standalone_val_acc": round(standalone[i], 4),
                             "standalone_rank": sorted(standalone, reverse=True).index(standalone[i]) + 1}
                            for i in order],
        "vs_standalone_reruns": vs_reruns(reports, names, reruns),
        "val_test_consistency": split_consistency(everything),
        "depth_vs_accuracy": depth_taus(everything, reruns),
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{len(inherited)} supernets: pairwise tau median {result['pairwise_median_tau']:.2f} "
          f"(range {min(p['kendall_tau'] for p in pairs):.2f}..{max(p['kendall_tau'] for p in pairs):.2f}); "
          f"against standalone {min(vs_standalone.values()):.2f}..{max(vs_standalone.values()):.2f}, "
          f"their mean {result['consensus_vs_standalone_val']:.2f} -> {args.out}")
    for label, splits in result["vs_standalone_reruns"].items():
        print(f"against {label}: " + "; ".join(
            f"{split} supernets {min(t['supernets'].values()):.2f}..{max(t['supernets'].values()):.2f}, "
            f"consensus {t['consensus']:.2f}, params {t['params']:.2f}" for split, t in splits.items()))
    consistency = result["val_test_consistency"]
    print("val~test tau: supernets " + ", ".join(f"{c['supernet']:.2f}" for c in consistency.values()) +
          "; standalone " + ", ".join(sorted({f"{c['standalone']:.2f}" for c in consistency.values()})))
    depth = result["depth_vs_accuracy"]
    print(f"depth vs accuracy (tau): standalone {depth['standalone_val']}; supernets {depth['supernets_val']}; "
          f"within one layout {depth['within_one_layout']}")
    for row in result["consensus_order"]:
        print(f"  {row['name']}  {100 * row['mean_inherited_val_acc']:.1f}%  standalone #{row['standalone_rank']} "
              f"{100 * row['standalone_val_acc']:.1f}%  {' '.join(row['families'])}")
    return 0


# ------------------------------------------------------------------ dims

DIMS = """Which elastic dimension does a trained supernet serve worst? One change at a time from the largest.

A supernet rates members well only if every choice it shares weights across keeps working. This
starts from the space's largest member (the one the sandwich trains hardest) and changes one
choice at a time to each of its other values — a stage's depth, width, family, the stem's depth,
the SE placement, ... — rating each with inherited weights and BN recalibration, as the search
does. A choice whose change costs far more accuracy than its lost capacity explains is one the
shared weights do not serve: its members are rated by how much of that choice's training they got.

    python benchmarks/supernet_study.py dims --supernet runs/supernet_rank/supernet-proxy-teacherfixed/supernet.pt

Writes benchmarks/results/supernet_dims.json (every change, its accuracy and the drop from the
largest member).
"""


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


def dims_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--supernet", required=True, help="supernet.pt (or a run folder) of a trained supernet")
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--out", default=str(RESULTS / "supernet_dims.json"))


def dims(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
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


# ------------------------------------------------------------------ layouts

LAYOUTS = """Why the multi-family supernet learns slowly: early training loss under different per-step layouts.

The supernet trainer draws a family layout (one family per stage) for every step. This measures
what that costs: the same proxy supernet, recipe and data order as the committed recipe (its
first --steps steps, warm-up included), but each step trains only the largest member of a
layout chosen by one rule, and the mean training loss (label-smoothed cross-entropy; chance is
ln 10 = 2.303) is recorded per window of 20 steps:

  fixed            always the space's largest member (all-RepViT);
  fixed-<family>   always the largest member with <family> in both attention stages;
  switch-stages01  a layout drawn per step in stages 0-1 only (2 x 2 layouts), RepViT after;
  switch-stage3    a layout drawn per step in the last stage only (5 layouts);
  switch-all       a layout drawn per step in every stage (100 layouts): the trainer's rule;
  switch-all-ref   as switch-all, but the member learns by distillation from the fixed largest
                   member, trained on the labels in the same step (the trainer's --teacher fixed);
                   the member's own label loss is recorded.

Writes benchmarks/results/supernet_layouts.json and .png.

    python benchmarks/supernet_study.py layouts             # about 10 min on 2 cores
    python benchmarks/supernet_study.py layouts --steps 20 --rules fixed switch-all   # a quick look
"""

WINDOW = 20


def layout_rule(name: str, space: HybridSpace):
    """step -> the one member trained at that step, under rule `name`."""
    stages = space.stages
    if name == "fixed":
        return lambda step: space.largest()
    if name.startswith("fixed-"):
        family = name.removeprefix("fixed-")
        layout = [family if family in st.families else "repvit" for st in stages]
        return lambda step: space.largest(layout)
    name = name.removesuffix("-ref")
    switched = {"switch-stages01": {0, 1}, "switch-stage3": {len(stages) - 1},
                "switch-all": set(range(len(stages)))}[name]

    def member(step: int) -> ArchConfig:
        rng = random.Random(mix_seed(0, step, 0x1A7))
        return space.largest([rng.choice(st.families) if i in switched else "repvit" for i, st in enumerate(stages)])
    return member


RULES = ("fixed", "fixed-mobilevit", "fixed-lgl", "fixed-levit", "fixed-former", "switch-stages01",
         "switch-stage3", "switch-all", "switch-all-ref")


class _Done(Exception):
    pass


class LayoutProbe(SupernetTrainer):
    """The supernet trainer's engine and losses, one member per step chosen by `rule` (after the
    fixed reference member when `referenced`), stopping after `steps` steps; records the rule's
    member's label loss."""

    def __init__(self, *args, rule, steps: int, referenced: bool, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rule, self.steps, self.referenced, self.losses = rule, steps, referenced, []

    def step_members(self, step: int) -> list[ArchConfig]:
        if step >= self.steps:
            raise _Done
        return ([self.supernet.space.largest()] if self.referenced else []) + [self.rule(step)]

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = super().training_step(images, labels)
        self.losses.append(float(self.step_ce[-1]))
        return loss


def probe(rule: str, space: HybridSpace, data, steps: int, seed: int) -> list[float]:
    """Mean loss per WINDOW steps of the first `steps` steps under `rule`."""
    recipe = make_recipe(epochs=EPOCHS, resolution=max(space.resolutions), batch_size=BATCH, seed=seed)
    trainer = LayoutProbe(Supernet(space, seed=seed), data, recipe, None, sandwich=Sandwich(num_random=0),
                          rule=layout_rule(rule, space), steps=steps, referenced=rule.endswith("-ref"),
                          verbose=False)
    try:
        trainer.fit()
    except _Done:
        pass
    losses = trainer.losses
    return [round(sum(losses[i:i + WINDOW]) / len(losses[i:i + WINDOW]), 4) for i in range(0, len(losses), WINDOW)]


def layouts_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--space", default=SPACE, help=f"space preset (default {SPACE}; tiny for a smoke test)")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rules", nargs="+", default=list(RULES), choices=RULES)
    p.add_argument("--out", default=str(RESULTS / "supernet_layouts.json"))


def layouts(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    data = load_dataset(args.data)
    space = resolve_space(args.space, data.num_classes)
    chance = math.log(data.num_classes)  # cross-entropy of a uniform guess
    curves, seconds = {}, {}
    for rule in args.rules:
        tic = time.perf_counter()
        curves[rule] = probe(rule, space, data, args.steps, args.seed)
        seconds[rule] = round(time.perf_counter() - tic, 1)
        print(f"{rule:16s} loss per {WINDOW} steps: {curves[rule]}  ({seconds[rule]:.0f} s)")
    report = {"steps": args.steps, "window": WINDOW, "chance_loss": round(chance, 4),
              "space": args.space, "batch_size": BATCH, "schedule_epochs": EPOCHS, "seed": args.seed,
              "final_window_loss": {r: c[-1] for r, c in curves.items()}, "curves": curves, "seconds": seconds,
              "data": data.describe(),
              "machine": machine()}
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    _plot_layouts(curves, chance, out.with_suffix(".png"))
    print(f"-> {out}")
    return 0


def _plot_layouts(curves: dict[str, list[float]], chance: float, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    for rule, curve in curves.items():
        ax.plot([WINDOW * (i + 1) for i in range(len(curve))], curve, marker="o", label=rule,
                linestyle="-" if rule.startswith("switch") else "--")
    ax.axhline(chance, color="grey", linewidth=0.8)
    ax.set(xlabel="step", ylabel=f"mean training loss (per {WINDOW} steps)",
           title="largest member's loss: fixed vs per-step family layouts")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    save_figure(fig, path)


# ------------------------------------------------------------------ fewshot

FEWSHOT = """Weight-sharing ratings of the bench members: the one-shot supernet, and few-shot sub-supernets.

Few-shot NAS (Zhao et al., ICML 2021) splits the space into sub-spaces, one sub-supernet each,
warm-started from the one-shot supernet, so that members which share weights also share more of
their structure (fewer conflicting gradients). The split here is by stage 2's family (the
proxy space's five), each sub-supernet trained `--split-epochs` more epochs; a member is rated by
its own sub-supernet (inherited weights, BN recalibrated, val split), the same way as the
one-shot supernet rates it.

Writes `ratings-<name>.json` into the bench folder ({"label", "ratings": {arch_hash: val top-1},
how they were made}); benchmarks/accuracy_sources.py scores every ratings file it finds there, and
what it adds to the fitted predictor as a feature.

    python benchmarks/supernet_study.py fewshot --one-shot runs/supernet-proxy          # rate the one-shot only
    python benchmarks/supernet_study.py fewshot --one-shot runs/supernet-proxy --split-epochs 2
    python benchmarks/supernet_study.py fewshot --train-one-shot --epochs 10 --sampling complexity --name oneshot-cas
"""


def fewshot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bench", type=Path, default=RESULTS / "proxy_bench")
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--one-shot", type=Path, help="a finished `nas supernet train` run folder")
    p.add_argument("--train-one-shot", action="store_true", help="train the one-shot supernet first (resumable)")
    p.add_argument("--epochs", type=int, default=10, help="one-shot epochs when training it (default 10)")
    p.add_argument("--sampling", default="uniform", help="one-shot --sampling when training it")
    p.add_argument("--split-epochs", type=int, default=0, help="epochs per few-shot sub-supernet (0: none)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "fewshot")
    p.add_argument("--name", help="ratings file name (default: oneshot, or fewshot-s2-eE)")


def fewshot(args: argparse.Namespace, p: argparse.ArgumentParser) -> int:
    if (args.one_shot is None) == (not args.train_one_shot):
        p.error("give --one-shot RUN or --train-one-shot")
    torch.set_num_threads(1)
    one_shot = args.one_shot or supernet_run(args.runs / f"oneshot-e{args.epochs}-{args.sampling}", args.data,
                                             "proxy", args.epochs, ["--sampling", args.sampling])
    space = bench_space(args.bench)
    rows = read_bench(args.bench)
    members = {r["arch_hash"]: parse_arch(r["arch"]) for r in rows}
    data = load_dataset(args.data)
    tic = time.perf_counter()
    if args.split_epochs:
        name = args.name or f"fewshot-s2-e{args.split_epochs}"
        supernets = {fam: supernet_run(args.runs / f"{name}-{fam}", args.data, _sub_space_file(args.runs, space, fam),
                                       args.split_epochs, ["--init-from", str(one_shot)])
                     for fam in space.stages[2].families}
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


def _train_time(run: Path) -> float:
    try:
        return float(json.loads((run / "metrics.json").read_text())["train_time_s"])
    except (OSError, KeyError, ValueError):
        return 0.0


# ------------------------------------------------------------------ the command line

COMMANDS = {"rank": (RANK, rank_args, rank), "agreement": (AGREEMENT, agreement_args, agreement),
            "dims": (DIMS, dims_args, dims), "layouts": (LAYOUTS, layouts_args, layouts),
            "fewshot": (FEWSHOT, fewshot_args, fewshot)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="SUB-COMMAND")
    subparsers = {}
    for name, (doc, add_args, _) in COMMANDS.items():
        subparsers[name] = commands.add_parser(name, help=doc.splitlines()[0], description=doc,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
        add_args(subparsers[name])
    args = parser.parse_args(argv)
    return COMMANDS[args.command][2](args, subparsers[args.command])


if __name__ == "__main__":
    sys.exit(main())
