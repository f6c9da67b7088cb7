"""Which correction of the host table's plain sum would predict end-to-end latency best?

`nas latency validate` fits one correction, `scale * plain_sum + per_unit * units`, and the shipped
host table meets 50% / 75% of subnets within 5% / 10% with it (target 80% / 95%). This asks whether
richer corrections would close the gap, on the committed validation journals (no measuring: the
samples' archs are redrawn from the seed, their unit sums read from the table):

  plain             the sum of units as it is;
  scale+unit        the shipped correction;
  +const            and a fixed offset;
  +params           and the parameter count (weights re-read from memory end to end, while each
                    unit was timed alone with its weights in cache);
  per-family        one scale per block family's share of the sum (fusion differs by family), + units;
  per-resolution    one scale per input resolution, + units (the error is worst at 64 px);
  scale+unit+MB     the shipped correction + a cost per MB of weights (the deploy-form bytes each
                    entry carries: weights.py);
  weights           what `nas latency validate` now fits where entries carry weight bytes: each
                    unit raised to a weight-read floor at the bandwidth each fold picks, + units
                    + MB of weights.

Each is scored out of fold (2-fold, as `validate` scores the shipped one), on each journal.
Writes benchmarks/results/latency_corrections.json.

    python benchmarks/latency_corrections.py      # seconds; needs no quiet machine
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.atomic import atomic_write_text, read_json_lines  # noqa: E402
from nas.blocks.units import arch_units  # noqa: E402
from nas.profile import profile_arch  # noqa: E402
from predictors.latency.predict import arch_entries  # noqa: E402
from predictors.latency.table import load_table  # noqa: E402
from predictors.latency.validate import (  # noqa: E402
    BANDWIDTHS_GBS,
    floored_sums,
    machine_info,
    metrics,
    out_of_fold,
    sample_archs,
    select_out_of_fold,
    weight_mb,
)

RESULTS = ROOT / "benchmarks" / "results"
JOURNALS = (RESULTS / "latency_host_samples" / "samples.jsonl", RESULTS / "latency_host_recheck" / "samples.jsonl")


def family_of(unit_key: str) -> str:
    """'former.down(cin=...)@...' -> 'former'."""
    return unit_key.split("(")[0].split(".")[0]


def weight_candidates(table, archs) -> list[np.ndarray]:
    """validate's weight-term design matrices, one per bandwidth of BANDWIDTHS_GBS."""
    entries = [[e for _, es in arch_entries(a, table) for e in es] for a in archs]
    floored = np.stack([floored_sums(es, table.overhead_us) for es in entries])
    units, mb = np.array([len(es) for es in entries], float), np.array([weight_mb(es) for es in entries])
    return [np.stack([floored[:, j], units, mb], 1) for j in range(len(BANDWIDTHS_GBS))]


def feature_sets(table, archs, weight_mb_column: np.ndarray) -> dict[str, np.ndarray]:
    """Each candidate correction's design matrix (one row per arch)."""
    overhead = table.overhead_us
    units_of = [arch_units(arch) for arch in archs]
    shares = []
    for units in units_of:
        share: Counter[str] = Counter()
        for unit in units:
            share[family_of(unit.key)] += (table.entries[unit.key].us - overhead) / 1000
        shares.append(share)
    families = sorted(set().union(*shares))
    resolutions = sorted({a.resolution for a in archs})
    plain = np.array([sum(s.values()) + overhead / 1000 for s in shares])
    units = np.array([len(u) for u in units_of], dtype=float)
    params = np.array([profile_arch(a)["params"] for a in archs], dtype=float) / 1e6
    ones = np.ones_like(plain)
    by_resolution = np.array([[p if a.resolution == r else 0.0 for r in resolutions] for p, a in zip(plain, archs)])
    return {
        "plain": plain[:, None],
        "scale+unit": np.stack([plain, units], 1),
        "scale+unit+const": np.stack([plain, units, ones], 1),
        "scale+unit+params": np.stack([plain, units, params], 1),
        "per-family": np.column_stack([[[s[f] for f in families] for s in shares], units]),
        "per-resolution": np.column_stack([by_resolution, units]),
        "scale+unit+MB": np.stack([plain, units, weight_mb_column], 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", default=str(ROOT / "predictors" / "latency" / "tables" / "host.json"))
    p.add_argument("--samples", type=int, default=100, help="the journals' sample count (validate's --samples)")
    p.add_argument("--seed", type=int, default=0, help="the journals' seed (validate's --seed)")
    p.add_argument("--out", default=str(RESULTS / "latency_corrections.json"))
    args = p.parse_args(argv)
    table = load_table(args.table)
    archs = sample_archs(table, args.samples, args.seed)
    weights = weight_candidates(table, archs)
    features = feature_sets(table, archs, weights[0][:, 2])
    report = {"table": str(Path(args.table).relative_to(ROOT)), "samples": args.samples, "seed": args.seed,
              "journals": {}, "machine": machine_info()}
    for journal in JOURNALS:
        measured_by_hash = {r["arch_hash"]: r["measured_ms"] for r in read_json_lines(journal)}
        missing = [a.arch_hash() for a in archs if a.arch_hash() not in measured_by_hash]
        if missing:
            raise SystemExit(f"{journal}: no timing for {len(missing)} of the drawn archs (e.g. {missing[0]}): "
                             "another --samples/--seed?")
        measured = np.array([measured_by_hash[a.arch_hash()] for a in archs])
        scores = {}
        for name, x in features.items():
            pred = x[:, 0] if name == "plain" else out_of_fold(x, measured)
            scores[name] = {k: round(v, 4) for k, v in metrics(pred, measured).items()}
        pred, chosen = select_out_of_fold(weights, measured)
        scores["weights"] = {k: round(v, 4) for k, v in metrics(pred, measured).items()}
        scores["weights"]["bandwidth_gbs_on_all"] = BANDWIDTHS_GBS[chosen]
        report["journals"][str(journal.relative_to(ROOT))] = scores
        print(journal.relative_to(ROOT))
        for name, m in scores.items():
            print(f"  {name:18s} within 5%: {m['within_5pct']:.0%}  within 10%: {m['within_10pct']:.0%}  "
                  f"MAPE {m['mape']:.1%}  max {m['max_abs_pct']:.0%}")
    atomic_write_text(Path(args.out), json.dumps(report, indent=2) + "\n")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
