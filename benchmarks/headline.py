"""Searched architectures against the five seed families at equal latency (issue 7's headline).

Recipe (every step resumable: run the same command again after an interruption):

  1. seed models: of each of the five families (MobileViT, EdgeViT, Mobile-Former, LeViT, RepViT)
     the reference-zoo model with the fewest multiply-accumulates, scaled to the dataset by one rule
     for all (search_spaces.reference.load_zoo_scaled): the same network fed 64 px images, with a
     10-way classifier;
  2. their latency measured here end to end (ONNX Runtime, the host table's thread count, batch 1;
     the median of --repeats medians, each of >= 30 runs), nothing else running;
  3. for each, `nas search --device host --budget <its measured latency>` (shipped accuracy
     predictor, 500 TPE trials, seed 0); the winner: the most accurate member of the search's front
     whose latency, measured the same way, is within the budget (the table predicts a member's
     latency within ~10%, so the front is walked down until one is verified; all are reported);
  4. every model (seeds and distinct winners) trained standalone with one recipe
     (`nas train --epochs E --batch-size 64`, AdamW + cosine, label smoothing, random-resized-crop
     and flip, from scratch), for each --seeds seed, and rated on the test split (3,925 images);
  5. per seed model: accuracy mean +/- std over the seeds and measured latency, winner beside it;
     goal: winner >= +1.0 point at <= the seed's latency, or equal accuracy at <= 0.77x its latency.

Writes benchmarks/results/headline.json, headline.md (the README's table) and headline.png; the
results files are rewritten after every finished training, rows still training marked pending.

    python benchmarks/headline.py                 # 1 seed, 4 epochs (training time: headline.json)
    python benchmarks/headline.py --seeds 0,1     # adds a second training seed (resumes the first)
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnxruntime  # noqa: E402
import optuna  # noqa: E402
from reporting import machine, repo_path  # noqa: E402

from nas.arch import ArchConfig, parse_arch, save_arch  # noqa: E402
from nas.atomic import atomic_write, atomic_write_text  # noqa: E402
from nas.builder import build_model  # noqa: E402
from nas.cli.main import main as nas  # noqa: E402
from nas.data import default_data_root  # noqa: E402
from nas.profile import count_flops, count_params  # noqa: E402
from predictors.latency.devices import open_device_table  # noqa: E402
from predictors.latency.predict import predict  # noqa: E402
from predictors.latency.validate import measure_arch  # noqa: E402
from search_spaces.reference import load_zoo, load_zoo_scaled, zoo_names  # noqa: E402

FAMILIES = {"mobilevit": "MobileViT", "lgl": "EdgeViT", "former": "Mobile-Former", "levit": "LeViT",
            "repvit": "RepViT"}
RESOLUTION, NUM_CLASSES = 64, 10
GOAL_POINTS, GOAL_RATIO = 1.0, 0.77
MAX_CANDIDATES = 10  # front members measured per search before giving up


def seed_models() -> list[tuple[str, ArchConfig]]:
    """(family, scaled zoo model): per family, the member of the zoo with the fewest MACs at its
    published resolution (a model's family: its attention family; MobileViT's own stages also hold
    MobileNetV2 blocks)."""
    by_family: dict[str, list[tuple[int, str]]] = {f: [] for f in FAMILIES}
    for name in zoo_names():
        arch = load_zoo(name)
        family = next((f for f in FAMILIES if any(s.block == f for s in arch.stages)), None)
        if family is not None:
            by_family[family].append((count_flops(build_model(arch), arch.resolution), name))
    return [(f, load_zoo_scaled(min(c)[1], RESOLUTION, NUM_CLASSES).model_copy(update={"name": min(c)[1]}))
            for f, c in by_family.items()]


class Journal:
    """A JSON dict on disk, rewritten atomically on every change: what this run has measured."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def get(self, key: str) -> Any:
        return self.data.get(key)

    def put(self, key: str, value: Any) -> Any:
        self.data[key] = value
        atomic_write_text(self.path, json.dumps(self.data, indent=2, sort_keys=True) + "\n")
        return value


def measured_latency(journal: Journal, arch: ArchConfig, threads: int, repeats: int) -> dict[str, Any]:
    """Median of `repeats` end-to-end medians (ms), measured once per arch and kept in the journal."""
    key = f"latency/{arch.arch_hash()}"
    if journal.get(key) is None:
        runs = [measure_arch(arch, threads) for _ in range(repeats)]
        journal.put(key, {"ms": round(statistics.median(r[0] for r in runs), 4),
                          "medians_ms": [round(r[0], 4) for r in runs], "threads": threads})
    return journal.get(key)


def search_winner(runs: Path, name: str, budget_ms: float, trials: int) -> list[dict[str, Any]]:
    """The study's accuracy/latency front within `budget_ms` on the host table, most accurate
    first ([] if no member fits the budget)."""
    out = runs / "search"
    study = f"host-{name}"
    if not (out / study / "pareto.json").exists():
        code = nas(["search", "--device", "host", "--budget", f"{budget_ms}ms", "--trials", str(trials),
                    "--seed", "0", "--out", str(out), "--study", study, "--quiet"])
        if code:
            return []
    front = json.loads((out / study / "pareto.json").read_text())
    return sorted((r for r in front if r["latency_ms"] <= budget_ms), key=lambda r: -r["accuracy"])


def verified_winner(journal: Journal, front: list[dict[str, Any]], budget_ms: float, threads: int, repeats: int,
                    name: str) -> tuple[ArchConfig | None, list[dict[str, Any]]]:
    """Walk the front from its most accurate member down and keep the first whose measured latency
    is within the budget (the table's prediction can be off by a few per cent either way); also
    returns every candidate measured on the way (predicted vs measured)."""
    tried = []
    for row in front[:MAX_CANDIDATES]:
        arch = parse_arch({**row["arch"], "name": f"win-{name}"})
        lat = measured_latency(journal, arch, threads, repeats)
        tried.append({"arch_hash": arch.arch_hash(), "predicted_acc": round(row["accuracy"], 5),
                      "lut_ms": round(row["latency_ms"], 4), "measured_ms": lat["ms"]})
        if lat["ms"] <= budget_ms:
            return arch, tried
    return None, tried


def train(runs: Path, arch: ArchConfig, data: Path, epochs: int, seed: int) -> dict[str, Any]:
    """Train (or resume, or read back) one standalone run; its metrics.json."""
    out = runs / "train" / f"{arch.name}-s{seed}"
    path = save_arch(arch, runs / "archs" / f"{arch.name}.json")
    if not (out / "metrics.json").exists():
        code = nas(["train", str(path), "--data", str(data), "--epochs", str(epochs), "--batch-size", "64",
                    "--seed", str(seed), "--out", str(out), "--quiet"])
        if code:
            raise SystemExit(code)
    return json.loads((out / "metrics.json").read_text())


def accuracy(results: dict[str, list[float]], arch: ArchConfig) -> dict[str, Any]:
    accs = results.get(arch.arch_hash(), [])
    return {"test_acc_mean": round(statistics.mean(accs), 5) if accs else None,
            "test_acc_std": round(statistics.stdev(accs), 5) if len(accs) > 1 else None,
            "test_accs": accs}


def verdict(row: dict[str, Any]) -> str | None:
    """Whether the winner meets the goal against its seed model (None while pending)."""
    seed, win = row["zoo"], row["winner"]
    if win is None:
        return "no searched member measured within the budget"
    if seed["test_acc_mean"] is None or win["test_acc_mean"] is None:
        return None
    gain = 100 * (win["test_acc_mean"] - seed["test_acc_mean"])
    ratio = win["measured_ms"] / seed["measured_ms"]
    if ratio <= 1 and gain >= GOAL_POINTS:
        return f"met: {gain:+.1f} points at {ratio:.2f}x latency"
    if ratio <= GOAL_RATIO and gain >= 0:
        return f"met: {gain:+.1f} points at {ratio:.2f}x (<= {GOAL_RATIO}x) latency"
    return f"missed: {gain:+.1f} points at {ratio:.2f}x latency"


def model_row(arch: ArchConfig, lat: dict[str, Any], host, results: dict[str, list[float]]) -> dict[str, Any]:
    model = build_model(arch)
    return {"name": arch.name, "arch_hash": arch.arch_hash(), "families": sorted({s.block for s in arch.stages}),
            "params": count_params(model), "macs": count_flops(model, arch.resolution),
            "measured_ms": lat["ms"], "lut_ms": round(predict(arch, host).ms, 4), **accuracy(results, arch)}


def write_outputs(report: dict[str, Any], out: Path) -> None:
    atomic_write_text(out, json.dumps(report, indent=2) + "\n")
    atomic_write_text(out.with_suffix(".md"), markdown(report))
    _plot(report, out.with_suffix(".png"))


def markdown(report: dict[str, Any]) -> str:
    def acc(m: dict[str, Any]) -> str:
        if m["test_acc_mean"] is None:
            return "pending"
        std = f" ± {100 * m['test_acc_std']:.1f}" if m["test_acc_std"] is not None else ""
        return f"{100 * m['test_acc_mean']:.1f}{std} (n={len(m['test_accs'])})"

    r = report["recipe"]
    lines = [f"Test top-1 (%) on {report['data']} ({r['resolution']} px, {r['num_classes']} classes), "
             f"{r['epochs']} epochs from scratch, same recipe for all; latency measured on this machine "
             f"(ONNX Runtime, {report['threads']} thread, batch 1, median).", "",
             "| family | seed model | ms | top-1 | searched winner | ms | top-1 | verdict |",
             "|---|---|---:|---:|---|---:|---:|---|"]
    for row in report["rows"]:
        s, w = row["zoo"], row["winner"]
        win = (f"`{w['name']}` ({w['params'] / 1e6:.2f} M) | {w['measured_ms']:.2f} | {acc(w)}"
               if w else "none verified | | ")
        lines.append(f"| {row['family']} | `{s['name']}` ({s['params'] / 1e6:.2f} M) | {s['measured_ms']:.2f} | "
                     f"{acc(s)} | {win} | {row['verdict'] or 'pending'} |")
    return "\n".join(lines) + "\n"


def _plot(report: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.5, 4.2))
    ax = fig.subplots()
    for row in report["rows"]:
        s, w = row["zoo"], row["winner"]
        if s["test_acc_mean"] is None:
            continue
        ax.scatter(s["measured_ms"], 100 * s["test_acc_mean"], marker="s", color="tab:gray")
        ax.annotate(s["name"], (s["measured_ms"], 100 * s["test_acc_mean"]), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
        if w and w["test_acc_mean"] is not None:
            ax.scatter(w["measured_ms"], 100 * w["test_acc_mean"], marker="*", s=90, color="tab:red")
            ax.annotate("", (w["measured_ms"], 100 * w["test_acc_mean"]),
                        (s["measured_ms"], 100 * s["test_acc_mean"]),
                        arrowprops={"arrowstyle": "->", "color": "tab:red", "alpha": 0.5})
    ax.scatter([], [], marker="s", color="tab:gray", label="seed model (zoo, scaled)")
    ax.scatter([], [], marker="*", s=90, color="tab:red", label="searched winner at its latency")
    ax.set(xlabel="measured host latency (ms, ONNX Runtime, batch 1)", ylabel="test top-1 (%)",
           title=f"{report['recipe']['epochs']} epochs, same recipe for all")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(default_data_root()))
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--seeds", default="0", help="training seeds, comma-separated (default 0)")
    p.add_argument("--trials", type=int, default=500)
    p.add_argument("--repeats", type=int, default=5, help="latency repeats per model (default 5)")
    p.add_argument("--runs", default=str(ROOT / "runs" / "headline"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "headline.json"))
    args = p.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    runs, out, data = Path(args.runs), Path(args.out), Path(args.data)
    seeds = [int(s) for s in args.seeds.split(",")]
    journal = Journal(runs / "journal.json")
    host, host_path = open_device_table("host")

    # 1-3: seed models, their latency, the winners at that latency, the winners' latency
    pairs = []
    for family, seed_arch in seed_models():
        lat = measured_latency(journal, seed_arch, host.threads, args.repeats)
        front = search_winner(runs, seed_arch.name, lat["ms"], args.trials)
        winner, tried = verified_winner(journal, front, lat["ms"], host.threads, args.repeats, seed_arch.name)
        pairs.append((family, seed_arch, winner, tried))
        print(f"{seed_arch.name}: {lat['ms']:.3f} ms measured; winner "
              f"{'none verified' if winner is None else winner.arch_hash()} after {len(tried)} candidate(s)")

    # 4-5: train, rewriting the results after each run
    results: dict[str, list[float]] = {}
    train_seconds: list[float] = []

    def report() -> dict[str, Any]:
        rows = []
        for family, s, w, tried in pairs:
            row = {"family": FAMILIES[family], "zoo": model_row(s, journal.get(f"latency/{s.arch_hash()}"), host,
                                                                  results),
                   "winner": model_row(w, journal.get(f"latency/{w.arch_hash()}"), host, results) if w else None}
            row["candidates_measured"] = tried
            row["verdict"] = verdict(row)
            rows.append(row)
        return {"rows": rows, "goal": {"points": GOAL_POINTS, "latency_ratio": GOAL_RATIO},
                "recipe": {"epochs": args.epochs, "batch_size": 64, "seeds": seeds, "resolution": RESOLUTION,
                           "num_classes": NUM_CLASSES, "search_trials": args.trials, "latency_repeats": args.repeats},
                "data": data.name, "threads": host.threads, "host_table": repo_path(host_path),
                "machine": machine(numpy=np.__version__, onnxruntime=onnxruntime.__version__,
                                   optuna=optuna.__version__),
                "training_wall_time_s": round(sum(train_seconds), 1),  # all sessions, every finished run
                "wall_time_s_this_session": round(time.perf_counter() - started, 1)}

    models = [m for _, s, w, _ in pairs for m in (s, w) if m is not None]
    distinct = list({m.arch_hash(): m for m in models}.values())
    for seed in seeds:
        for arch in distinct:
            metrics = train(runs, arch, data, args.epochs, seed)
            results.setdefault(arch.arch_hash(), []).append(metrics["test_acc"])
            train_seconds.append(metrics["wall_time_s"])
            print(f"{arch.name} seed {seed}: test acc {100 * metrics['test_acc']:.2f}%")
            write_outputs(report(), out)
    print(f"-> {out}, {out.with_suffix('.md').name}, {out.with_suffix('.png').name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
