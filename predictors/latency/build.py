"""`nas latency build`: measure every unit a table must cover, resumably.

What is needed: every unit the hybrid space can produce at each requested resolution, plus every
unit of the reference-zoo models whose resolution is requested. Units already in the table (or
in the journal an interrupted build left) are skipped, so running the same command again after a
kill continues where it stopped.

Exporting a unit to ONNX (tracing, ~50-80 ms) runs in a helper process one step ahead of the
measurement, so that the two cores of a small machine each do one job; measurement itself is
single-threaded by default (`--threads 1`), like the end-to-end runs it must predict.
"""
from __future__ import annotations

import multiprocessing as mp
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from nas.arch.schema import ArchConfig
from nas.blocks.units import Unit, arch_units
from nas.errors import ParameterError, UserError
from nas.export import ConversionError
from predictors.latency import litert
from predictors.latency.machine import here, static_fingerprint
from predictors.latency.measure import RunPolicy, call_overhead_us, make_session, random_feeds, time_session
from predictors.latency.pixel6 import ANCHORS
from predictors.latency.table import (
    RUNTIME_NAMES,
    Entry,
    LatencyTable,
    Runtime,
    append_journal,
    journal_path,
    load_table,
    new_table,
    save_table,
)
from predictors.latency.unit_export import SPATIALLY_GENERIC_OPS, export_group, export_key, with_shapes
from predictors.latency.weights import fill_weight_bytes, unit_weight_bytes
from search_spaces.hybrid import HybridSpace, default_space
from search_spaces.presets import PRESETS, PROXY_NUM_CLASSES
from search_spaces.reference import load_zoo, load_zoo_scaled, zoo_names

NOISY_SPREAD = 1.3  # p90/p10 above this: something else ran during the timing; time it again
FOLD_EVERY = 500  # journal entries between atomic rewrites of the table file
LOOKAHEAD = 4  # units exported ahead of the one being measured
DEFAULT_POLICY = RunPolicy()  # build_table's default timing policy


def space_resolutions() -> list[int]:
    return list(default_space().resolutions)


def default_resolutions() -> list[int]:
    """Every resolution the hybrid space and the reference zoo use."""
    return sorted(set(space_resolutions()) | {load_zoo(n).resolution for n in zoo_names()})


def zoo_models(resolutions: Iterable[int]) -> Iterator[ArchConfig]:
    """The zoo models a table over `resolutions` prices: each at its own resolution if it is one of
    them, and scaled to the proxy dataset at the proxy resolutions among them."""
    resolutions = set(resolutions)
    proxy = PRESETS["proxy"](PROXY_NUM_CLASSES)
    for name in zoo_names():
        arch = load_zoo(name)
        if arch.resolution in resolutions:
            yield arch
        for r in sorted(resolutions & set(proxy.resolutions)):
            yield load_zoo_scaled(name, r, PROXY_NUM_CLASSES)


def needed_units(resolutions: Iterable[int], num_classes: int = 1000) -> dict[str, Unit]:
    """Key -> unit for the space at `resolutions` (with `num_classes` outputs), the zoo models at
    their own resolution if it is one of them, and - when the proxy resolution is - what searches
    on the proxy dataset need: the proxy subspace (the default accuracy predictor's) and the zoo
    scaled to that dataset (their reference points). Sorted by key."""
    resolutions = set(resolutions)
    units: dict[str, Unit] = {}
    proxy = PRESETS["proxy"](PROXY_NUM_CLASSES)
    for space in (HybridSpace(num_classes=num_classes), proxy):
        for r in sorted(resolutions & set(space.resolutions)):
            units.update((u.key, u) for u in space.units(r))
    for arch in zoo_models(resolutions):
        units.update((u.key, u) for u in arch_units(arch))
    for anchor in ANCHORS:  # device calibration models at their published size
        if anchor.resolution in resolutions:
            arch = load_zoo(anchor.zoo).model_copy(update={"resolution": anchor.resolution})
            units.update((u.key, u) for u in arch_units(arch))
    return dict(sorted(units.items()))


def _export_init() -> None:
    torch.set_num_threads(1)


def _export(unit: Unit, runtime: Runtime) -> tuple[bytes, int]:
    """The unit's graph for `runtime`, and its weight bytes (the same for every unit of its group)."""
    return (export_group(unit) if runtime == "onnxruntime" else litert.unit_tflite(unit)), unit_weight_bytes(unit)


def measure_unit(graph: bytes, unit: Unit, threads: int, policy: RunPolicy, runtime: Runtime = "onnxruntime",
                 weight_bytes: int | None = None) -> Entry:
    """Time `unit` from its export group's graph (ONNX: static sizes filled in where it has
    symbolic ones) or from its own .tflite (LiteRT)."""
    if runtime == "litert":
        timing = litert.time_tflite(graph, threads, policy)
    else:
        onnx = with_shapes(graph, unit) if unit.op in SPATIALLY_GENERIC_OPS else graph
        session = make_session(onnx, threads)
        timing = time_session(session, random_feeds(session), policy)
    return Entry(**timing.as_dict(), op=unit.op, args=dict(unit.args),
                 inputs=[None if s is None else list(s) for s in unit.inputs], weight_bytes=weight_bytes)


def time_units(units: list[Unit], threads: int, policy: RunPolicy, runtime: Runtime = "onnxruntime"
               ) -> Iterator[tuple[Unit, Entry | str]]:
    """(unit, timing) for each unit, grouped by shared export graph (LiteRT: one graph per unit,
    the converter takes static shapes; a unit it cannot convert comes with the reason instead of a
    timing); a helper process exports or converts the next groups while this one times (no
    process is started when there is nothing to time)."""
    groups: dict[str, list[Unit]] = {}
    for unit in units:
        groups.setdefault(export_key(unit) if runtime == "onnxruntime" else unit.key, []).append(unit)
    if not groups:
        return
    with mp.get_context("spawn").Pool(1, initializer=_export_init) as pool:
        pending: deque = deque()
        queue = iter(groups.values())
        for members in queue:
            pending.append((members, pool.apply_async(_export, (members[0], runtime))))
            if len(pending) >= LOOKAHEAD:
                break
        while pending:
            members, result = pending.popleft()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, pool.apply_async(_export, (nxt[0], runtime))))
            try:
                graph, weight_bytes = result.get()
            except ConversionError as exc:  # a limit of the converter: recorded, the build goes on
                for unit in members:
                    yield unit, str(exc)
                continue
            for unit in members:
                yield unit, measure_unit(graph, unit, threads, policy, runtime, weight_bytes)


@dataclass
class BuildReport:
    path: Path
    measured: int
    skipped: int
    total: int
    seconds: float
    retimed: int = 0


def open_or_create(path: Path, device: str, threads: int, resolutions: list[int],
                   runtime: Runtime = "onnxruntime") -> LatencyTable:
    """The table to continue (with its journal folded in) or a new one with a fresh overhead and
    this machine's fingerprint (a full speed probe, which also refreshes this machine's cached one).
    One table holds one machine's timings: a table of another machine is not continued here; one
    from before fingerprints, whose CPU string and ORT version are this machine's, is taken as the
    user's own interrupted build and given this machine's fingerprint."""
    if path.exists() or journal_path(path).exists():
        if not path.exists():  # killed before the first fold: the journal alone holds the work
            raise UserError(f"{path}: missing, but {journal_path(path).name} exists; delete the journal to start over")
        table = load_table(path, with_journal=True)
        if table.kind != "measured" or table.device != device:
            raise UserError(f"{path}: holds a {table.kind} table for {table.device!r}, not a measured {device!r} one "
                            "(delete it, or write the table to another file)")
        if table.threads != threads:
            raise UserError(f"{path}: was measured with {table.threads} thread(s), not {threads}")
        if table.runtime != runtime:
            raise UserError(f"{path}: was measured with {RUNTIME_NAMES[table.runtime]}, not {RUNTIME_NAMES[runtime]}")
        if table.machine is None:
            mine = static_fingerprint(threads)
            if (table.cpu, table.ort_version) != (mine.cpu, mine.ort_version):
                raise UserError(f"{path}: was measured on {table.cpu} with ORT {table.ort_version}, not this machine "
                                f"({mine.cpu}, ORT {mine.ort_version}): write this machine's own table to another file")
            table.machine = here(threads, fresh=True, quick=False)
        elif table.provenance.where == "elsewhere":
            raise UserError(f"{path}: is {table.provenance.label}, not this machine: its timings cannot be continued "
                            "here; write this machine's own table to another file")
        table.resolutions = sorted(set(table.resolutions) | set(resolutions))
        return table
    overhead = call_overhead_us(threads) if runtime == "onnxruntime" else litert.call_overhead_us(threads)
    return new_table(device, "measured", threads, resolutions, overhead.median_us,
                     machine=here(threads, fresh=True, quick=False), runtime=runtime)


def build_table(path: Path, device: str = "host", threads: int = 1, resolutions: list[int] | None = None,
                policy: RunPolicy = DEFAULT_POLICY, limit: int | None = None,
                progress: Callable[[int, int], None] | None = None,
                units: dict[str, Unit] | None = None, runtime: Runtime = "onnxruntime", passes: int = 1
                ) -> BuildReport:
    """Measure the missing units into `path` with `runtime`; `limit` stops after that many; `units`
    replaces the default set (the space and zoo at `resolutions`), e.g. one model's units; with
    `passes` 2, every unit is timed a second time (`retime`)."""
    if passes not in (1, 2):
        raise ParameterError("passes", f": expected 1 or 2, got {passes}")
    if device != "host":
        raise ParameterError("device", f": only 'host' can be measured on this machine, not {device!r} "
                        "(a phone's table is measured with `nas latency pack` / `nas latency import`)")
    resolutions = resolutions or default_resolutions()
    table = open_or_create(path, device, threads, resolutions, runtime)
    save_table(table, path)  # the header (and any journal) is on disk before the long part
    units = units if units is not None else needed_units(resolutions)
    # a derived entry (predictors/latency/derive.py) stands in until the table's own machine times it
    missing = [u for k, u in units.items() if k not in table.unavailable
               and (k not in table.entries or table.entries[k].derived is not None)]
    todo = missing if limit is None else missing[:limit]
    start, done = time.perf_counter(), 0
    journal = journal_path(path)
    for unit, entry in time_units(todo, threads, policy, runtime):
        append_journal(journal, unit.key, entry)
        if isinstance(entry, str):
            table.unavailable[unit.key] = entry
        else:
            table.entries[unit.key] = entry
        done += 1
        if done % FOLD_EVERY == 0:
            save_table(table, path)
        if progress:
            progress(done, len(todo))
    fill_weight_bytes(table)  # entries of a build from before they were counted
    save_table(table, path)
    retimed = retime(table, path, threads, policy, units, every=passes == 2 and limit is None)
    return BuildReport(path, done, len(units) - len(missing), len(units), time.perf_counter() - start, retimed)


def retime(table: LatencyTable, path: Path, threads: int, policy: RunPolicy, units: dict[str, Unit],
           every: bool = False, seed: int = 0) -> int:
    """Time again every entry whose spread shows interference (a neighbour's burst can raise a
    whole timing window) - or, `every`, every entry, in a shuffled order (`seed`): units are first
    timed sorted by key, so one family's units share the same few minutes, and a machine whose
    speed drifts over minutes gives them one bias; a second timing at another moment breaks the
    tie - keeping the lower median: interference only ever adds time. An entry retimed once is not
    retimed again on a later run, so the pass ends (and resumes after a kill)."""
    todo = [u for k, u in units.items() if k in table.entries and not table.entries[k].retimed
            and (every or table.entries[k].p90 > NOISY_SPREAD * table.entries[k].p10)]
    if every:
        random.Random(seed).shuffle(todo)
    journal = journal_path(path)
    for unit, again in time_units(todo, threads, policy, table.runtime):
        if isinstance(again, str):  # converted the first time: a second failure changes nothing
            continue
        old = table.entries[unit.key]
        best = again if again.us < old.us else old
        table.entries[unit.key] = best.model_copy(update={"retimed": True})
        append_journal(journal, unit.key, table.entries[unit.key])
    save_table(table, path)
    return len(todo)
