"""Does the supernet rank architectures as standalone training does? (issue 8's acceptance check)

Recipe (every step resumable: re-run the same command after an interruption):

  1. train the supernet with the committed recipe (benchmarks/supernet_recipe.py: the `proxy` space
     on the shared proxy dataset, 10 epochs; budget <= 2 h on 2 CPU cores);
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

    python benchmarks/supernet_rank.py                  # the full recipe (hours; see --help)
    python benchmarks/supernet_rank.py --smoke          # minutes: proves the pipeline end to end
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reporting import machine, repo_path  # noqa: E402
from supernet_recipe import BATCH, EPOCHS, NUM_RANDOM, SPACE, train_supernet  # noqa: E402

from nas.arch import save_arch  # noqa: E402
from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.builder import build_model  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root, load_dataset  # noqa: E402
from nas.profile import count_params  # noqa: E402
from nas.supernet import Supernet  # noqa: E402
from nas.supernet.evaluate import SubnetEvaluator, epoch_snapshot, load_supernet  # noqa: E402


def pick_archs(space, count: int, seed: int = 0, layout: list[str] | None = None) -> list:
    """`count` members at evenly spaced parameter-count quantiles, alternating families (or all of
    one family `layout`)."""
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


def throughput(model: torch.nn.Module, resolution: int, batch: int, steps: int) -> float:
    """Training images/s: forward, backward, AdamW step (after one warm-up step)."""
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 10, (batch,))
    for i in range(steps + 1):
        if i == 1:
            tic = time.perf_counter()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch / (time.perf_counter() - tic)


def kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


STANDALONE_FIELDS = ("standalone_val_acc", "standalone_test_acc", "standalone_train_s")
SPLITS = ("val", "test")


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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--space", default=SPACE)
    p.add_argument("--epochs", type=int, default=EPOCHS, help=f"supernet epochs (default {EPOCHS})")
    p.add_argument("--standalone-epochs", type=int, default=4, help="standalone epochs per arch (default 4)")
    p.add_argument("--batch-size", type=int, default=BATCH)
    p.add_argument("--num-random", type=int, default=NUM_RANDOM)
    p.add_argument("--archs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--runs", default=str(ROOT / "runs" / "supernet_rank"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "supernet_rank.json"))
    p.add_argument("--standalone-from", default=str(ROOT / "benchmarks" / "results" / "supernet_rank.json"),
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
    p.add_argument("--smoke", action="store_true", help="tiny space, 1 epoch each, 4 archs, a 300-image "
                                                        "subset: checks the pipeline, measures nothing")
    args = p.parse_args()
    runs = Path(args.runs)
    data_root = Path(args.data)
    if args.smoke:
        sys.path.insert(0, str(ROOT / "tests"))
        from test_data import write_subset

        data_root = write_subset(runs / "smoke-data") if not (runs / "smoke-data" / "classes.json").exists() \
            else runs / "smoke-data"
        args.space, args.epochs, args.standalone_epochs, args.archs = "tiny", 1, 1, 4
        args.batch_size = 32
        args.out = str(runs / "smoke.json")
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
        speed[which] = {"supernet_images_per_s": round(throughput(fresh, res, args.batch_size, 3), 1),
                        "standalone_images_per_s": round(throughput(build_model(arch), res, args.batch_size, 3), 1),
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
    _plot(rows, tau, params_taus["val"], out.with_suffix(".png"))
    print(f"Kendall tau {tau:.3f} over {len(rows)} archs (parameter count: {params_taus['val']:.3f}; on the test "
          f"split {taus['test']:.3f} / {params_taus['test']:.3f}) -> {out}")
    return 0


def _plot(rows: list[dict], tau: float, params_tau: float, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter([100 * r["standalone_val_acc"] for r in rows], [100 * r["supernet_val_acc"] for r in rows])
    for r in rows:
        ax.annotate(r["name"][:6], (100 * r["standalone_val_acc"], 100 * r["supernet_val_acc"]), fontsize=7)
    ax.set(xlabel="standalone val top-1 (%)", ylabel="supernet-inherited val top-1 (%)",
           title=f"Kendall tau = {tau:.2f} (parameter count: {params_tau:.2f})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))


if __name__ == "__main__":
    sys.exit(main())
