"""Entries a shipped table lacks after reference-zoo models changed form, derived from the entries it has.

A measured table can only be extended on the machine that measured it (`nas latency build` refuses
another machine's table). When zoo models change form, their changed units get keys the shipped
tables lack and `nas latency predict <model>` fails. Issue 21 did that to the Mobile-Former models
(the release's head; the 26M's shuffles after the expanding depthwise convs). Each changed unit has a
timed counterpart, the same unit in the model's earlier form (`earlier_form`), and its entry is
derived from that one:

    new_us = overhead + (old_us - overhead) * r,   r = median over passes of
             (new_here - overhead_here) / (old_here - overhead_here)

where `new_here` and `old_here` are the two units timed on *this* machine in the same interleaved
passes (pass k times both, one after the other) and the overheads are the tables' and this
machine's per-call cost. p10 and p90 are mapped the same way. Each entry records how it was made
(`Entry.derived`: the key it comes from, r, the passes, this machine); every prediction that uses
one says so, and a build on the table's own machine times such entries for real.

An estimated table made from the host table (pixel6, `nas latency estimate`) gets the same units by
that command's own scaling (`pixel6.scaled_entry`, its stored factor), so it stays the host table
mapped through one factor; its other entries and header are left as they are.

    python -m predictors.latency.derive            # the shipped host and pixel6 tables
    python -m predictors.latency.derive --check    # list what is missing, time nothing

Re-running re-derives the derived entries (a timed entry is never touched).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import statistics
import sys
from pathlib import Path
from typing import Any

from nas.arch.schema import ArchConfig, HeadSpec
from nas.blocks.units import Unit, arch_units
from nas.errors import UserError
from predictors.latency.build import zoo_models
from predictors.latency.machine import here
from predictors.latency.measure import RunPolicy, call_overhead_us, pinned, time_passes
from predictors.latency.pixel6 import scaled_entry
from predictors.latency.table import Entry, LatencyTable, load_table, save_table
from predictors.latency.unit_export import unit_onnx

TABLES = Path(__file__).parent / "tables"
METHOD = ("old entry less the table's per-call overhead, times the ratio of the two units' times (each less "
          "this machine's overhead) measured here in interleaved passes (median of per-pass ratios), plus the "
          "table's overhead; p10/p90 alike")


def earlier_form(arch: ArchConfig) -> ArchConfig:
    """The form a zoo model had when the shipped tables were measured. Mobile-Former models: a
    dense 1x1 conv-BN-Hardswish head with nothing after pooling and no BatchNorm1d, and every
    grouped 1x1 of the mobile path shuffled after it; the same network otherwise, unit for unit.
    Other families did not change."""
    if not any(s.block == "former" for s in arch.stages):
        return arch
    h = arch.head
    head = HeadSpec(channels=h.channels, hidden=h.hidden, act="hswish", norm=h.norm, distill=h.distill,
                    dropout=h.dropout)
    stages = [s.model_copy(update={"shuffle_after_dw": False}) if s.block == "former" else s for s in arch.stages]
    return arch.model_copy(update={"head": head, "stages": stages})


def pairs_to_derive(table: LatencyTable) -> dict[str, tuple[Unit, Unit]]:
    """new key -> (new unit, its timed counterpart) for every zoo unit the table lacks or holds
    only derived; a counterpart the table has not timed is an error (nothing honest to derive from)."""
    found: dict[str, tuple[Unit, Unit]] = {}
    for arch in zoo_models(table.resolutions):
        new, old = arch_units(arch), arch_units(earlier_form(arch))
        if len(new) != len(old):
            raise UserError(f"{arch.name}: its earlier form has {len(old)} units, not {len(new)}")
        for unit, before in zip(new, old):
            entry = table.entries.get(unit.key)
            if entry is not None and entry.derived is None:
                continue
            counterpart = table.entries.get(before.key)
            if unit.key == before.key or counterpart is None or counterpart.derived is not None:
                raise UserError(f"{table.label}: no timed counterpart for {unit.key} of {arch.name} at "
                                f"{arch.resolution} px (looked for {before.key}); build the table instead")
            found[unit.key] = (unit, before)
    return dict(sorted(found.items()))


def paired_ratios(pairs: dict[str, tuple[Unit, Unit]], passes: int) -> tuple[dict[str, dict[str, Any]], float]:
    """key -> {ratio, new_us, old_us} timed here, and this machine's per-call overhead (us)."""
    policy = RunPolicy(warmup=10, min_runs=50, min_seconds=0.1, max_runs=2000)
    out: dict[str, dict[str, Any]] = {}
    with pinned():
        overhead = call_overhead_us(1).median_us
        for key, (new, old) in pairs.items():
            t = time_passes({"new": unit_onnx(new), "old": unit_onnx(old)}, 1, policy, passes)
            ratios = [(n.median_us - overhead) / (o.median_us - overhead) for n, o in zip(t["new"], t["old"])]
            out[key] = {"ratio": statistics.median(ratios),
                        "new_us": statistics.median(x.median_us for x in t["new"]),
                        "old_us": statistics.median(x.median_us for x in t["old"])}
    return out, overhead


def derived_entry(unit: Unit, old_key: str, old: Entry, table_overhead: float, found: dict[str, Any],
                  provenance: dict[str, Any]) -> Entry:
    r = found["ratio"]

    def scale(us: float) -> float:
        return round(table_overhead + (us - table_overhead) * r, 3)

    return Entry(us=scale(old.us), p10=scale(old.p10), p90=scale(old.p90), n=old.n, op=unit.op,
                 args=dict(unit.args), inputs=[None if s is None else list(s) for s in unit.inputs],
                 derived={"from": old_key, "ratio": round(r, 4), "here_us": {"new": round(found["new_us"], 1),
                          "old": round(found["old_us"], 1)}, **provenance})


def derive(host_path: Path, estimated_paths: list[Path], passes: int = 7, check: bool = False) -> list[str]:
    """Add the derived entries to the host table and the estimated tables made from it; the keys."""
    host = load_table(host_path)
    if host.kind != "measured":
        raise UserError(f"{host_path}: a {host.kind} table; entries are derived into a measured one")
    pairs = pairs_to_derive(host)
    if check or not pairs:
        return list(pairs)
    found, overhead_here = paired_ratios(pairs, passes)
    provenance = {"method": METHOD, "passes": passes, "overhead_here_us": round(overhead_here, 2),
                  "measured_on": here(1).name, "date": _dt.date.today().isoformat()}
    for key, (unit, before) in pairs.items():
        host.entries[key] = derived_entry(unit, before.key, host.entries[before.key], host.overhead_us, found[key],
                                          provenance)
    save_table(host, host_path)
    for path in estimated_paths:
        est = load_table(path)
        if est.kind != "estimated" or not est.estimate or "a" not in est.estimate:
            raise UserError(f"{path}: not a table estimated from the host table (`nas latency estimate`)")
        ops = set(est.estimate.get("calibration_ops", []))
        for key in pairs:
            est.entries[key] = scaled_entry(host.entries[key], est.estimate["a"], ops)
        save_table(est, path)
    return list(pairs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m predictors.latency.derive", description=__doc__.split("\n\n")[0])
    p.add_argument("--host", type=Path, default=TABLES / "host.json", help="measured host table")
    p.add_argument("--estimated", type=Path, nargs="*", default=[TABLES / "pixel6.json"],
                   help="tables estimated from it that get the same units")
    p.add_argument("--passes", type=int, default=7, help="interleaved timing passes per pair")
    p.add_argument("--check", action="store_true", help="only list the units to derive")
    args = p.parse_args(argv)
    try:
        keys = derive(args.host, args.estimated, args.passes, args.check)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(("to derive" if args.check else "derived") + f": {len(keys)} unit(s)")
    entries = load_table(args.host).entries
    for key in keys:
        derived = entries[key].derived if key in entries else None
        print(f"  {key}" + (f"  x{derived['ratio']} of {derived['from']}" if derived else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
