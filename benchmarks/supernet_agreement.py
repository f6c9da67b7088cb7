"""Do the trained supernets agree with each other, where they disagree with standalone training?

Every supernet recipe in benchmarks/results/supernet_rank*.json ranks the same 12 members near
tau 0 against standalone training. That is either noise (then two supernets would not agree with
each other either) or a consistent ranking of their own that differs from standalone training's
(then they agree with each other). This reads the committed reports, no training or measuring:

  - Kendall tau of every pair of supernets' inherited val accuracies;
  - each supernet's, and their mean's, tau against standalone val accuracy;
  - the members in the supernets' consensus order (mean inherited val accuracy) beside their
    standalone accuracy, with their families: what the shared weights favour.

Writes benchmarks/results/supernet_agreement.json.

    python benchmarks/supernet_agreement.py       # seconds
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nas.atomic import atomic_write_text  # noqa: E402
from supernet_rank import kendall_tau  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def load_reports(paths: list[Path]) -> dict[str, dict[str, dict]]:
    """{report name: {member name: row}} of the full (not smoke) ranking reports over one member set."""
    reports = {}
    for path in paths:
        report = json.loads(path.read_text(encoding="utf-8"))
        if not report.get("smoke"):
            reports[path.stem] = {row["name"]: row for row in report["archs"]}
    members = {frozenset(rows) for rows in reports.values()}
    if len(members) != 1:
        raise SystemExit("the reports rank different members: nothing to compare")
    return reports


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", nargs="+", type=Path, default=sorted(RESULTS.glob("supernet_rank*.json")))
    p.add_argument("--out", type=Path, default=RESULTS / "supernet_agreement.json")
    args = p.parse_args()

    reports = load_reports(args.reports)
    names = sorted(next(iter(reports.values())))
    inherited = {report: [rows[n]["supernet_val_acc"] for n in names] for report, rows in reports.items()}
    reference = next(iter(reports.values()))
    standalone = [reference[n]["standalone_val_acc"] for n in names]

    pairs = [{"a": a, "b": b, "kendall_tau": round(kendall_tau(inherited[a], inherited[b]), 3)}
             for a, b in itertools.combinations(inherited, 2)]
    vs_standalone = {report: round(kendall_tau(acc, standalone), 3) for report, acc in inherited.items()}
    consensus = [statistics.mean(acc[i] for acc in inherited.values()) for i in range(len(names))]
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
    }
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(f"{len(inherited)} supernets: pairwise tau median {result['pairwise_median_tau']:.2f} "
          f"(range {min(p['kendall_tau'] for p in pairs):.2f}..{max(p['kendall_tau'] for p in pairs):.2f}); "
          f"against standalone {min(vs_standalone.values()):.2f}..{max(vs_standalone.values()):.2f}, "
          f"their mean {result['consensus_vs_standalone_val']:.2f} -> {args.out}")
    for row in result["consensus_order"]:
        print(f"  {row['name']}  {100 * row['mean_inherited_val_acc']:.1f}%  standalone #{row['standalone_rank']} "
              f"{100 * row['standalone_val_acc']:.1f}%  {' '.join(row['families'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
