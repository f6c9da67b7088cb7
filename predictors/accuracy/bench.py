"""A ground-truth bench: members of a space trained standalone, one JSON line per training run.

The accuracy signal of the search is only as good as what it is scored on. A bench is that
yardstick: members drawn stratified over the space (parameter count, latency, and the family
layout of the attention stages), each trained with one fixed recipe and rated on the val and test
splits. Rows are plain JSON (never pickles); every source of accuracy (parameter count,
zero-cost proxies, the supernet, fitted predictors) is scored against them, and
`nas predictor fit --bench DIR` fits the shipped predictor's model on them.

Layout of a bench folder:
  plan.json             the members and the (member, seed) jobs in training order; every shard
                        and every resumed run reads the same plan, so no job is done twice
  rows-<I>of<N>.jsonl   the finished runs of shard I of N (one writer per file, appended and
                        fsynced after each run); a bench is the union of its row files
"""
from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nas.arch.schema import ArchConfig, parse_arch
from nas.atomic import append_json_line, atomic_write_text
from nas.errors import ParameterError, UserError, read_json
from search_spaces.hybrid import HybridSpace
from search_spaces.presets import space_from_dict

ROW_FORMAT = "hybrid-nas/bench-row/v1"
PLAN_FORMAT = "hybrid-nas/bench-plan/v1"
PLAN_FILE = "plan.json"
ROW_FIELDS = ("arch_hash", "arch", "seed", "index", "params", "macs", "val_acc", "test_acc", "val_loss",
              "test_loss", "epochs", "train_time_s")


@dataclass(frozen=True)
class Job:
    """One training run of the bench: member `index` of the plan, trained with `seed`."""

    index: int
    seed: int


def layout(arch: ArchConfig, stages: Sequence[int] = (2, 3)) -> str:
    """The family layout of the attention-capable stages, e.g. 'lgl+former': a stratum of the bench."""
    return "+".join(arch.stages[i].block for i in stages)


def stratified_members(space: HybridSpace, count: int, measure: Callable[[ArchConfig], tuple[float, float]],
                       pool_size: int = 1500, bands: int = 5, seed: int = 0) -> list[ArchConfig]:
    """`count` distinct members spread over the space: the smallest and the largest, then one
    random member of every (family layout of stages 2-3, parameter-count band) cell of a random
    pool, then members filling the latency bands evenly until `count` are chosen.

    `measure(arch)` gives (parameter count, latency) of a member; bands are quantiles of the pool.
    The draw is a function of `seed` alone, so a plan can always be rebuilt and checked."""
    rng = random.Random(seed)
    pool = _distinct([space.smallest(), space.largest()] + [space.sample(rng) for _ in range(pool_size)])
    sizes = [measure(a) for a in pool]
    param_band = _bands([s[0] for s in sizes], bands)
    latency_band = _bands([s[1] for s in sizes], bands)
    chosen: list[int] = [0, 1]
    cells: dict[tuple[str, int], list[int]] = {}
    for i in range(2, len(pool)):
        cells.setdefault((layout(pool[i]), param_band[i]), []).append(i)
    picks = {key: rng.choice(cells[key]) for key in sorted(cells)}
    # Fewer places than cells: the first of each layout at staggered bands, then the second, ...
    layouts = sorted({key[0] for key in picks})
    spread = sorted(picks, key=lambda k: ((k[1] - layouts.index(k[0])) % bands, layouts.index(k[0])))
    keep = set(spread[:max(0, count - len(chosen))])
    chosen += [picks[key] for key in sorted(picks) if key in keep]
    taken = set(chosen)
    by_latency = [[i for i in range(len(pool)) if latency_band[i] == b and i not in taken] for b in range(bands)]
    band = 0
    while len(chosen) < count and any(by_latency):
        if by_latency[band]:
            pick = by_latency[band].pop(rng.randrange(len(by_latency[band])))
            chosen.append(pick)
        band = (band + 1) % bands
    if len(chosen) < count:
        raise ValueError(f"count: the pool of {pool_size} holds only {len(chosen)} distinct members")
    first, rest = chosen[:2], chosen[2:]
    rng.shuffle(rest)  # any prefix of the training order is itself spread over the space
    return [pool[i] for i in first + rest]


def _distinct(archs: Iterable[ArchConfig]) -> list[ArchConfig]:
    seen: dict[str, ArchConfig] = {}
    for arch in archs:
        seen.setdefault(arch.arch_hash(), arch)
    return list(seen.values())


def _bands(values: Sequence[float], bands: int) -> list[int]:
    """Each value's quantile band, 0..bands-1 (ties broken by position)."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    band = [0] * len(values)
    for rank, i in enumerate(order):
        band[i] = min(bands - 1, rank * bands // len(values))
    return band


def make_jobs(members: int, reruns: int, seeds: tuple[int, int] = (0, 1)) -> list[Job]:
    """Every member with the first seed, and `reruns` members spread over the plan with the second,
    interleaved (after each `members // reruns` first-seed runs, one rerun) so that a partial
    bench already holds its own ceiling."""
    if not 0 <= reruns <= members:
        raise ValueError(f"reruns: {reruns} must lie in 0..{members}")
    every = members // reruns if reruns else members + 1
    jobs: list[Job] = []
    for i in range(members):
        jobs.append(Job(i, seeds[0]))
        if reruns and (i + 1) % every == 0 and (i + 1) // every <= reruns:
            jobs.append(Job(i + 1 - every, seeds[1]))
    return jobs


def shard_jobs(jobs: Sequence[Job], shard: int, shards: int) -> list[Job]:
    """The jobs of shard `shard` (0-based) of `shards`: every shards-th job, so that each shard's
    work is spread over the plan as evenly as the plan itself."""
    if shards < 1 or not 0 <= shard < shards:
        raise ValueError(f"shard: {shard} of {shards} (expected 0 <= shard < shards)")
    return list(jobs[shard::shards])


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' (1-based, as users count) -> (I-1, N)."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ParameterError("shard", f" {text!r}: expected I/N, e.g. 1/2") from None
    if n < 1 or not 1 <= i <= n:
        raise ParameterError("shard", f" {text!r}: expected 1 <= I <= N")
    return i - 1, n


# --------------------------------------------------------------------------- plan file

def write_plan(folder: Path, members: Sequence[ArchConfig], jobs: Sequence[Job], info: dict[str, Any]) -> Path:
    plan = {"format": PLAN_FORMAT, **info, "members": [m.to_dict() for m in members],
            "jobs": [[j.index, j.seed] for j in jobs]}
    folder.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(folder / PLAN_FILE, json.dumps(plan, indent=1) + "\n")


def bench_space(folder: str | os.PathLike[str]) -> HybridSpace:
    """The space a bench's members were drawn from, as its plan records it."""
    _, _, info = read_plan(Path(folder))
    if "space_description" not in info:
        raise UserError(f"{Path(folder) / PLAN_FILE}: no space_description (expected the space the plan drew from)")
    return space_from_dict(info["space_description"], f"{Path(folder) / PLAN_FILE}: space_description")


def read_plan(folder: Path) -> tuple[list[ArchConfig], list[Job], dict[str, Any]]:
    path = folder / PLAN_FILE
    data = read_json(path, "bench plan")
    if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
        raise UserError(f"{path}: not a bench plan (expected format {PLAN_FORMAT!r})")
    members = [parse_arch(m, source=f"{path}: members[{k}]") for k, m in enumerate(data["members"])]
    jobs = [Job(int(i), int(s)) for i, s in data["jobs"]]
    info = {k: v for k, v in data.items() if k not in ("members", "jobs", "format")}
    return members, jobs, info


# --------------------------------------------------------------------------- rows

def row_file(folder: Path, shard: int, shards: int) -> Path:
    return folder / f"rows-{shard + 1}of{shards}.jsonl"


def check_row(row: Any, where: str) -> dict[str, Any]:
    """A row as read, or a UserError naming `where` (file:line) and the first thing wrong."""
    if not isinstance(row, dict):
        raise UserError(f"{where}: expected a JSON object (a bench row)")
    if row.get("format") != ROW_FORMAT:
        raise UserError(f"{where}: format {row.get('format')!r}, expected {ROW_FORMAT!r}")
    missing = [k for k in ROW_FIELDS if k not in row]
    if missing:
        raise UserError(f"{where}: missing field {missing[0]!r}")
    for key in ("val_acc", "test_acc"):
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise UserError(f"{where}: {key} {value!r} is not an accuracy in [0, 1]")
    arch = parse_arch(row["arch"], source=f"{where}: arch")
    if arch.arch_hash() != row["arch_hash"]:
        raise UserError(f"{where}: arch_hash {row['arch_hash']!r} does not match its arch ({arch.arch_hash()})")
    return row


def read_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of one row file. A last line without its newline is a run whose row was being
    written when the process died: it is dropped (the run is redone). Any other bad line is a
    UserError naming the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: not a readable bench row file ({exc})") from None
    lines = text.split("\n")
    torn = lines[-1]  # '' when the file ends with a newline
    rows = []
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path}:{number}: not a JSON bench row ({exc.msg})") from None
        rows.append(check_row(row, f"{path}:{number}"))
    if torn.strip():
        try:
            rows.append(check_row(json.loads(torn), f"{path}:{len(lines)}"))
        except (json.JSONDecodeError, UserError):
            pass  # a row cut short by a kill: repaired by the next append
    return rows


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append one row and fsync it; first cut off a torn last line a kill may have left."""
    append_json_line(path, {"format": ROW_FORMAT, **row})


def read_bench(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every row of a bench folder (all shards' row files), one per (arch_hash, seed)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a bench folder (expected a directory of rows-*.jsonl files)")
    files = sorted(folder.glob("rows-*.jsonl"))
    if not files:
        raise UserError(f"{folder}: no bench rows (expected rows-*.jsonl files)")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for path in files:
        for row in read_rows(path):
            rows.setdefault((row["arch_hash"], int(row["seed"])), row)
    return list(rows.values())


def by_member(rows: Sequence[dict[str, Any]]) -> dict[str, dict[int, dict[str, Any]]]:
    """arch_hash -> seed -> row."""
    members: dict[str, dict[int, dict[str, Any]]] = {}
    for row in rows:
        members.setdefault(row["arch_hash"], {})[int(row["seed"])] = row
    return members


def mean_accuracy(runs: dict[int, dict[str, Any]], split: str = "test") -> float:
    """A member's accuracy on `split`: the mean over its seeds."""
    values = [r[f"{split}_acc"] for r in runs.values()]
    return math.fsum(values) / len(values)


@dataclass(frozen=True)
class BenchMembers:
    """A bench read as a ground-truth set: one entry per member, in plan order (the order rows were
    planned in, whatever shard or seed finished first), so every consumer folds the same members
    together and an out-of-fold figure means the same thing in the fitted file and in the report."""

    rows: list[dict[str, Any]]
    hashes: list[str]
    runs: list[dict[int, dict[str, Any]]]  # per member: seed -> row
    archs: list[ArchConfig]
    truth: list[float]  # test top-1, mean over the member's seeds


def bench_members(folder: str | os.PathLike[str]) -> BenchMembers:
    """The members of a bench folder with their ArchConfigs and test accuracy."""
    rows = read_bench(folder)
    members = by_member(rows)
    hashes = sorted(members, key=lambda h: min(int(r["index"]) for r in members[h].values()))
    runs = [members[h] for h in hashes]
    archs = [parse_arch(next(iter(m.values()))["arch"], source=f"{folder}: {h}") for h, m in zip(hashes, runs)]
    return BenchMembers(rows, hashes, runs, archs, [mean_accuracy(m) for m in runs])
