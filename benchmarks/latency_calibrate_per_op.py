"""Does calibrating per op beat one scale? `nas latency calibrate`'s two routes, scored offline (issue 24).

    python benchmarks/latency_calibrate_per_op.py [--per-op 4,8,16] [--samples 200]
        [--out benchmarks/results/latency_calibrate_per_op.json]

Why: `calibrate` first fits the shipped table to this machine with one scale (or one per op class)
from six probe networks. Machines differ per op and per size, though: small per-call-bound units
(Mobile-Former's bridges) move unlike large convolutions. The per-op route times K units of each op
here and carries every other entry over by its op's ratio at its size. This script asks what that
buys, on the 200 subnets and 17 zoo models of the committed Zen 3 journal, without timing anything:

- "here" is the Zen 3 host of docs/latency.md: its own two-pass table
  (`latency_host_milan_2pass/table.json`) holds every unit as timed there, and its fingerprint the
  probe networks as timed there; calibrate takes both from it instead of timing them now
  (`calibrate(..., mine=<its fingerprint>, timed=<its entries for the K units per op>)`);
- the source is the shipped `host` table, built on another machine;
- each calibrated table is scored by `nas latency validate`'s own code on a copy of the
  journal `latency_host_milan_calibrated_zoo12/samples.jsonl` (4 timings of each subnet and zoo
  model, already taken: the script stops if any would need timing), next to the own table and the
  measurement's agreement with itself.

Seconds to a minute; needs no quiet machine. Writes the JSON report (machine info and versions).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.atomic import atomic_write_text, read_json_lines  # noqa: E402
from predictors.latency.calibrate import calibrate  # noqa: E402
from predictors.latency.cross_runtime import sample_units  # noqa: E402
from predictors.latency.predict import predict  # noqa: E402
from predictors.latency.table import LatencyTable, load_table, new_table  # noqa: E402
from predictors.latency.unit_export import entry_unit  # noqa: E402
from predictors.latency.validate import machine_info, metrics, sample_archs, validate, zoo_archs  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
SOURCE = ROOT / "predictors" / "latency" / "tables" / "host.json"
HERE = RESULTS / "latency_host_milan_2pass" / "table.json"
JOURNAL = RESULTS / "latency_host_milan_calibrated_zoo12" / "samples.jsonl"
SEED, TIMINGS = 0, 4


def timed_here(source: LatencyTable, here: LatencyTable, per_op: int) -> LatencyTable:
    """The units calibrate's per-op route would time (`sample_units` over the source's timed
    entries), with their timings from the table measured here."""
    units = {k: entry_unit(e) for k, e in source.entries.items() if e.derived is None and k in here.entries}
    timed = new_table(source.device, "measured", source.threads, source.resolutions, here.overhead_us)
    timed.entries = {k: here.entries[k] for k in sample_units(units, source, per_op)}
    return timed


def check_journal(table: LatencyTable, subnets: int) -> None:
    """Stop before validate would time anything: every subnet and zoo model needs its timings."""
    timings = {r["arch_hash"]: r.get("timings", 1) for r in read_json_lines(JOURNAL)}
    missing = [a.arch_hash() for a in sample_archs(table, subnets, SEED) + zoo_archs(table)
               if timings.get(a.arch_hash(), 0) < TIMINGS]
    if missing:
        raise SystemExit(f"{JOURNAL}: lacks {TIMINGS} timings of {len(missing)} models (e.g. {missing[0]})")


def score(table: LatencyTable, path: Path, work: Path, subnets: int) -> dict[str, Any]:
    """`validate`'s figures for `table` on a copy of the committed journal (nothing stored)."""
    out = work / path.stem
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(JOURNAL, out / "samples.jsonl")
    report = validate(table, path, subnets, SEED, out, store=False, repeats=TIMINGS, zoo=True)
    measured = np.array([pt["measured_ms"] for pt in report["points"]])
    stands = np.array([predict(a, table).ms for a in sample_archs(table, subnets, SEED)])
    keep = ("lut_plain_sum", "lut_corrected_out_of_fold", "lut_weights_out_of_fold", "lut",
            "measurement_repeatability", "lut_vs_measurement_noise")
    zoo = report["zoo"]
    return {"as_it_stands": metrics(stands, measured), **{k: report[k] for k in keep if k in report},
            "zoo": {k: zoo[k] for k in ("within_10pct", "within_5pct", "refitted_within_10pct", "of")},
            "zoo_errors_pct": {m["name"]: m["error_pct"] for m in zoo["models"]}}


def bands(m: dict[str, Any]) -> str:
    return f"{m['within_5pct']:.1%} / {m['within_10pct']:.1%}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-op", default="4,8,16", help="units timed per op, comma-separated (0: probe scales only)")
    p.add_argument("--samples", type=int, default=200, help="subnets of the journal scored (its first N; default 200)")
    p.add_argument("--out", default=str(RESULTS / "latency_calibrate_per_op.json"))
    args = p.parse_args(argv)
    source, here = load_table(SOURCE), load_table(HERE)
    check_journal(here, args.samples)
    rows: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows["own table (built here)"] = score(here, HERE, work, args.samples)
        for k in [0] + [int(x) for x in args.per_op.split(",") if int(x) > 0]:
            table = calibrate(source, SOURCE, mine=here.machine, per_op=k,
                              timed=timed_here(source, here, k) if k else None)
            path = work / f"calibrated-k{k}.json"
            name = "one scale (probe networks)" if k == 0 else f"per op, {k} units each"
            rows[name] = {"calibration": {key: table.calibration[key] for key in ("method", "fit_error_pct")}
                          | ({"per_op": table.calibration["per_op"]} if k else {}),
                          **score(table, path, work, args.samples)}
    report = {"source": str(SOURCE.relative_to(ROOT)), "here": str(HERE.relative_to(ROOT)),
              "journal": str(JOURNAL.relative_to(ROOT)), "subnets": args.samples, "timings_each": TIMINGS,
              "machine_here": here.machine.model_dump() if here.machine else None,
              "scored_on": machine_info(), "rows": rows}
    atomic_write_text(Path(args.out), json.dumps(report, indent=1) + "\n")
    for name, r in rows.items():
        weights = r.get("lut_weights_out_of_fold")
        print(f"{name:28s} as it stands {bands(r['as_it_stands'])}  plain {bands(r['lut_plain_sum'])}"
              f"  corrected {bands(r['lut_corrected_out_of_fold'])}"
              + (f"  +weights {bands(weights)}" if weights else "")
              + f"  zoo {r['zoo']['within_10pct']}/{r['zoo']['of']} (refitted {r['zoo']['refitted_within_10pct']})"
              + (f"  kept: {r['calibration']['per_op']['kept']}" if "per_op" in r.get("calibration", {}) else ""))
    rep = next(iter(rows.values()))["measurement_repeatability"]
    print(f"{'measurement vs itself':28s} {bands(rep)}")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
