"""Do the trained supernets agree with each other, where they disagree with standalone training?

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
    (reports of `supernet_rank.py --layout`): whether depth is what the two methods disagree on.
    The members are rebuilt from the space and the report's layout by supernet_rank.pick_archs,
    and checked against the reports' arch hashes.

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

from supernet_rank import kendall_tau, pick_archs  # noqa: E402

from nas.arch.schema import ArchConfig  # noqa: E402
from nas.atomic import atomic_write_text  # noqa: E402
from search_spaces.presets import resolve_space  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def load_reports(paths: list[Path]) -> dict[str, dict]:
    """{report name: report} of the full (not smoke) ranking reports."""
    reports = {path.stem: json.loads(path.read_text(encoding="utf-8")) for path in paths}
    return {name: report for name, report in reports.items() if not report.get("smoke")}


def total_depth(arch: ArchConfig) -> int:
    """Layers the stem and the stages stack (each stage's depth as its family counts it)."""
    return arch.stem.depth + sum(stage.depth for stage in arch.stages)


def member_depths(report: dict) -> dict[str, int]:
    """{member name: total depth} of a ranking report's members, rebuilt as supernet_rank.py picked them."""
    space = resolve_space(report["supernet"]["space"], report["data"]["classes"])
    archs = {a.name: a for a in pick_archs(space, len(report["archs"]), report["standalone_recipe"]["seed"],
                                           report.get("layout"))}
    for row in report["archs"]:
        if row["name"] not in archs or archs[row["name"]].arch_hash() != row["arch_hash"]:
            raise SystemExit(f"{row['name']}: not the member supernet_rank.py picks now; cannot tell its depth")
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reports", nargs="+", type=Path, default=sorted(RESULTS.glob("supernet_rank*.json")))
    p.add_argument("--standalone", nargs="*", type=Path,
                   default=[RESULTS / f for f in ("standalone_noise.json", "standalone_e8.json", "standalone_e16.json")
                            if (RESULTS / f).exists()],
                   help="standalone reruns (benchmarks/standalone_noise.py) to compare with (partial ones are skipped)")
    p.add_argument("--out", type=Path, default=RESULTS / "supernet_agreement.json")
    args = p.parse_args()
    missing = next((path for path in [*args.reports, *args.standalone] if not path.is_file()), None)
    if missing is not None:
        p.error(f"{missing}: no such report; expected a supernet_rank.py or standalone_noise.py JSON")

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


if __name__ == "__main__":
    raise SystemExit(main())
