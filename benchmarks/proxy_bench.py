"""The ground-truth bench: members of a space trained standalone with one recipe, one row per run.

Every accuracy source of the search (parameter count, zero-cost proxies, the supernet, fitted
predictors) is scored against these rows (benchmarks/accuracy_sources.py), and the shipped
accuracy predictor is fitted on them. Members are drawn stratified (predictors/accuracy/bench.py:
every family layout of stages 2-3 in every parameter-count band, then the latency bands; the
space's smallest and largest first); each is trained with `nas train` (default: the headline
recipe, 4 epochs, batch 64, seed 0), a spread subset again with seed 1 (the bench's own
ceiling), rated on val and test, and timed end to end with ONNX Runtime in the same run.

Resumable job by job: a run killed mid-training resumes from its checkpoint, a finished run is
never repeated (its row is on disk, fsynced). `--shard I/N` takes every N-th job of the plan, so
several processes or machines share the work without overlap (each writes its own row file; copy
the row files into one folder to merge). On a 2-core machine run one or two shards, each with
one thread:

    OMP_NUM_THREADS=1 python benchmarks/proxy_bench.py --shard 1/2 &
    OMP_NUM_THREADS=1 python benchmarks/proxy_bench.py --shard 2/2 &
    python benchmarks/proxy_bench.py --plan-only       # write/check the plan, train nothing

Your own data: `--data DIR --space SPACE --out DIR` builds the same bench on it; then
`nas predictor fit --bench DIR` fits the predictor.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas import __version__  # noqa: E402
from nas.arch import ArchConfig, save_arch  # noqa: E402
from nas.builder import build_model  # noqa: E402
from nas.cli.main import error_line  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root, load_dataset  # noqa: E402
from nas.errors import UserError  # noqa: E402
from nas.profile import count_params, profile_arch  # noqa: E402
from predictors.accuracy.bench import (  # noqa: E402
    append_row,
    make_jobs,
    parse_shard,
    read_bench,
    read_plan,
    row_file,
    shard_jobs,
    stratified_members,
    write_plan,
)
from predictors.latency.devices import open_device_table  # noqa: E402
from predictors.latency.measure import RunPolicy, make_session, random_feeds, time_session  # noqa: E402
from predictors.latency.predict import predict  # noqa: E402
from predictors.latency.table import runtime_info  # noqa: E402
from search_spaces.presets import resolve_space, space_to_dict  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "proxy_bench"
LATENCY_PASSES = 3  # fresh sessions per member; the median of their medians is the figure


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--space", default="proxy", help="space preset or JSON description (default proxy)")
    p.add_argument("--members", type=int, default=150)
    p.add_argument("--reruns", type=int, default=30, help="members also trained with seed 1 (default 30)")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--pool", type=int, default=1500, help="random members the strata are drawn from")
    p.add_argument("--plan-seed", type=int, default=0)
    p.add_argument("--shard", default="1/1", help="I/N: this process takes every N-th job (default 1/1)")
    p.add_argument("--limit", type=int, help="stop after this many trainings (default: the shard's jobs)")
    p.add_argument("--plan-only", action="store_true", help="write or check the plan, train nothing")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="bench folder (plan.json, rows-*.jsonl)")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "proxy_bench", help="training run folders")
    args = p.parse_args(argv)
    try:
        shard, shards = parse_shard(args.shard)
        return run(args, shard, shards)
    except UserError as exc:
        print(error_line(exc, p), file=sys.stderr)
        return 2


def run(args: argparse.Namespace, shard: int, shards: int) -> int:
    torch.set_num_threads(1)
    data = load_dataset(args.data)
    space = resolve_space(args.space, data.num_classes)
    recipe = {"epochs": args.epochs, "batch_size": args.batch_size}
    info = {"space": space.name, "space_description": space_to_dict(space), "data": data.describe(),
            "recipe": recipe, "pool": args.pool, "plan_seed": args.plan_seed, "seeds": [0, 1]}
    members, jobs = plan(args, space, info)
    mine = shard_jobs(jobs, shard, shards)
    print(f"plan: {len(members)} members, {len(jobs)} jobs; shard {shard + 1}/{shards}: {len(mine)} jobs", flush=True)
    if args.plan_only:
        return 0
    done = {(r["arch_hash"], int(r["seed"])) for r in _rows_or_none(args.out)}
    out_rows = row_file(args.out, shard, shards)
    trained = 0
    for job in mine:
        arch = members[job.index]
        if (arch.arch_hash(), job.seed) in done:
            continue
        if args.limit is not None and trained >= args.limit:
            break
        row = train_member(args, arch, job.index, job.seed, data.describe())
        append_row(out_rows, row)
        trained += 1
        print(f"[{job.index:3d} s{job.seed}] {arch.name}: val {100 * row['val_acc']:.1f}%  test "
              f"{100 * row['test_acc']:.1f}%  {row['params'] / 1e6:.2f} M  {row['latency_ms']['median']:.3f} ms  "
              f"{row['train_time_s']:.0f} s", flush=True)
    return 0


def _rows_or_none(folder: Path) -> list[dict[str, Any]]:
    return read_bench(folder) if any(folder.glob("rows-*.jsonl")) else []


def plan(args: argparse.Namespace, space, info: dict[str, Any]) -> tuple[list[ArchConfig], list]:
    """The bench's plan: read when it exists (and must match the arguments), else drawn and written."""
    if (args.out / "plan.json").exists():
        members, jobs, stored = read_plan(args.out)
        for key, value in info.items():
            if stored.get(key) != json.loads(json.dumps(value)):
                raise UserError(f"{args.out / 'plan.json'}: planned with {key} {stored.get(key)!r}, asked "
                                f"{value!r}; use another --out for another bench")
        if len(members) != args.members or sum(j.seed != 0 for j in jobs) != args.reruns:
            raise UserError(f"{args.out / 'plan.json'}: planned {len(members)} members / "
                            f"{sum(j.seed != 0 for j in jobs)} reruns, asked {args.members} / {args.reruns}")
        return members, jobs
    table, _ = open_device_table("host")

    def measure(arch: ArchConfig) -> tuple[float, float]:
        return float(count_params(build_model(arch))), predict(arch, table).ms

    members = stratified_members(space, args.members, measure, pool_size=args.pool, seed=args.plan_seed)
    members = [m.model_copy(update={"name": f"bench{k:03d}-{m.arch_hash()[:8]}"}) for k, m in enumerate(members)]
    jobs = make_jobs(len(members), args.reruns)
    write_plan(args.out, members, jobs, {**info, "strata": "family layout of stages 2-3 x 5 parameter-count "
                                                           "bands, then 5 latency bands (host table)"})
    return members, jobs


def train_member(args: argparse.Namespace, arch: ArchConfig, index: int, seed: int,
                 data: dict[str, Any]) -> dict[str, Any]:
    """Train one member with `nas train` (resumable), time its ONNX model, and return its row."""
    started = time.perf_counter()
    run_dir = args.runs / f"{arch.name}-s{seed}"
    path = save_arch(arch, args.runs / "archs" / f"{arch.name}.json")
    if not (run_dir / "metrics.json").exists():  # written last: the run is finished
        code = nas(["train", str(path), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                    "--seed", str(seed), "--data", args.data, "--out", str(run_dir), "--quiet"])
        if code:
            raise UserError(f"training {arch.name} (seed {seed}) failed with exit code {code}")
    metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    epochs = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "val_acc": r.get("val_acc"),
               "val_loss": r.get("val_loss")}
              for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
              if r.get("kind") == "epoch"]
    counts = profile_arch(arch)
    latency = time_onnx((run_dir / "model.onnx").read_bytes())
    (run_dir / "checkpoint.pt").unlink(missing_ok=True)  # the row and model.pt are what stays
    return {"arch_hash": arch.arch_hash(), "arch": arch.to_dict(), "index": index, "seed": seed,
            "params": counts["params"], "macs": counts["flops"], "latency_ms": latency,
            "val_acc": metrics["val_acc"], "val_loss": metrics["val_loss"],
            "test_acc": metrics["test_acc"], "test_loss": metrics["test_loss"], "epochs": epochs,
            "recipe": metrics["recipe"], "data": data, "train_time_s": metrics["train_time_s"],
            "wall_time_s": round(metrics["wall_time_s"] + time.perf_counter() - started, 1),
            "versions": {"hybrid_nas": __version__, "torch": torch.__version__, "onnxruntime": ort.__version__,
                         "numpy": np.__version__, "python": platform.python_version()}}


def time_onnx(model: bytes, threads: int = 1) -> dict[str, Any]:
    """End-to-end ONNX Runtime latency: median of LATENCY_PASSES fresh-session medians."""
    policy = RunPolicy(warmup=10, min_runs=50, min_seconds=0.2)
    medians = []
    for _ in range(LATENCY_PASSES):
        session = make_session(model, threads)
        medians.append(time_session(session, random_feeds(session), policy).median_us / 1000)
    runtime = runtime_info(threads)
    return {"median": round(statistics.median(medians), 4), "passes": [round(m, 4) for m in medians],
            "threads": threads, "runtime": "onnxruntime", "cpu": runtime.get("cpu")}


if __name__ == "__main__":
    raise SystemExit(main())
