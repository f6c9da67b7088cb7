"""Where does the plain sum of units miss end-to-end latency? (issue 24, item 5: the outliers)

The host table's plain sum underestimates small networks (median -30% at 64 px in the committed
`latency_host_samples` journal; single subnets from -45% to +24%). This finds where:

1. committed data (no timing): every subnet of the committed journals (`latency_host_samples`,
   `latency_host_recheck`; archs redrawn from the seed) with the relative error of the shipped
   table's plain sum and corrected prediction, and what the worst share (resolution, units,
   families, token units, smallest feature map, weight bytes per FLOP);
   and the same journals re-scored with a roofline model of each unit in context (at least its
   weights' read time at a fixed memory bandwidth, see `roofline`);
2. measured here, in one paired run: the `--worst` worst and `--best` best subnets (by the plain
   sum's error in the first journal), each in interleaved passes (a fresh session per timing, the
   lowest median kept) as
     e2e           the network as `nas latency validate` times it (`nas export` form, dynamic batch);
     e2e_static    the same network exported with a static batch (what the units are);
     units         each unit standalone, this repo's unit timing (`unit_onnx`, `time_model`), summed
                   less per-call overheads plus one, as `predict` sums a table;
     units_chained every unit in its own session, all open, run one after another once per round
                   as inside the network: what a unit finds in the caches is what the units before
                   it left there (a unit timed alone finds its own weights from its previous run);
     units_context each unit standalone, but with the rest of the network's weights (and
                   activations) read through the caches before every run (a harsher bound: all of
                   them, every time);
3. in context: ONNX Runtime's profiler over the static network and over each unit alone - kernel
   time per section (stem, stage i, head) and per op type, in the network vs standalone;
4. the graphs: node counts per op type after ONNX Runtime's optimisation (the file it writes via
   `optimized_model_filepath`) of the dynamic- and static-batch network against the units' sum.

Writes benchmarks/results/latency_outliers.json.

    python benchmarks/latency_outliers.py                  # ~4 min on a 2-core VM, one thread
    python benchmarks/latency_outliers.py --tiny --out T.json   # seconds (smoke test; measures nothing)
    python benchmarks/latency_outliers.py --worst 0 --best 0 --zoo mobile_former_26m,repvit_m0_9 \
        --out benchmarks/results/latency_outliers_zoo.json      # the same analysis of zoo models
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from reporting import TINY_TIMING, machine, repo_path  # noqa: E402

from nas.atomic import atomic_write_text, read_json_lines  # noqa: E402
from nas.blocks.units import Unit, arch_sections, arch_units  # noqa: E402
from predictors.latency.measure import RunPolicy, call_overhead_us, make_session, random_feeds  # noqa: E402
from predictors.latency.predict import predict  # noqa: E402
from predictors.latency.table import load_table  # noqa: E402
from predictors.latency.validate import E2E_POLICY, machine_info, sample_archs  # noqa: E402
from search_spaces.reference import load_zoo  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
JOURNALS = ("latency_host_samples", "latency_host_recheck")  # the shipped table's validation runs (seed 0, 100)
UNIT_POLICY = RunPolicy()  # the table builder's default policy (predictors.latency.build.DEFAULT_POLICY)
TOKEN_OPS = ("former.m2f", "former.f2m", "former.former", "former.entry")


# ------------------------------------------------------------------ 1. committed data
def unit_features(units: list[Unit]) -> dict[str, Any]:
    fams = collections.Counter(u.family for u in units)
    maps = [s[-1] for u in units for s in u.inputs if s is not None and len(s) == 3]
    return {"units": len(units), "families": dict(fams), "token_units": sum(u.op in TOKEN_OPS for u in units),
            "smallest_map": min(maps) if maps else None,
            "units_on_maps_le_2": sum(1 for u in units if any(s is not None and len(s) == 3 and s[-1] <= 2
                                                               for s in u.inputs))}


def committed(table, samples: int, seed: int) -> dict[str, Any]:
    from nas.profile import profile_arch  # fvcore: ~1 s, only for the FLOPs/params of the committed subnets

    archs = sample_archs(table, samples, seed)
    profiles = {a.arch_hash(): profile_arch(a) for a in archs}
    found: dict[str, Any] = {}
    for folder in JOURNALS:
        rows = {r["arch_hash"]: r for r in read_json_lines(RESULTS / folder / "samples.jsonl")}
        subnets = []
        for a in archs:
            r = rows.get(a.arch_hash())
            if r is None:
                continue
            p = predict(a, table)
            units = [u for _, us in arch_sections(a) for u in us]
            prof = profiles[a.arch_hash()]
            subnets.append({"arch_hash": a.arch_hash(), "resolution": a.resolution, "measured_ms": r["measured_ms"],
                            "plain_err_pct": round(100 * (p.plain_ms / r["measured_ms"] - 1), 1),
                            "corrected_err_pct": round(100 * (p.ms / r["measured_ms"] - 1), 1),
                            "params_m": round(prof["params"] / 1e6, 3), "mflops": round(prof["flops"] / 1e6, 1),
                            "weight_bytes_per_flop": round(4 * prof["params"] / prof["flops"], 4),
                            "blocks": [s.block for s in a.stages], **unit_features(units)})
        subnets.sort(key=lambda s: s["plain_err_pct"])
        err = np.array([s["plain_err_pct"] for s in subnets])
        corr = {k: round(float(np.corrcoef(err, [float(s[k] or 0) for s in subnets])[0, 1]), 3)
                for k in ("resolution", "units", "token_units", "smallest_map", "params_m", "weight_bytes_per_flop",
                          "units_on_maps_le_2")} if len(subnets) > 2 else {}
        by_res = collections.defaultdict(list)
        for s in subnets:
            by_res[s["resolution"]].append(s["plain_err_pct"])
        found[folder] = {"subnets": len(subnets),
                         "plain_err_median_pct_by_resolution": {str(k): float(np.median(v))
                                                                for k, v in sorted(by_res.items())},
                         "correlation_of_plain_err_with": corr,
                         "worst": subnets[:10], "best": sorted(subnets, key=lambda s: abs(s["plain_err_pct"]))[:5],
                         "most_over": subnets[-5:]}
    return found


def roofline(table, samples: int, seed: int, bandwidths_gbs=(4, 8, 16)) -> dict[str, Any]:
    """Re-scores the committed journals with each unit taking, inside a network, at least the time
    to read its weights from memory: max(entry - overhead, weight bytes / bandwidth), summed plus one
    overhead; plain, and with the shipped form of correction (scale, per unit) out of fold. The
    bandwidth is one machine constant (the grid is scored in sample: it says whether the model
    fits, not what it would score with a fitted constant)."""
    from predictors.latency.unit_export import unit_module
    from predictors.latency.validate import metrics, out_of_fold

    archs = sample_archs(table, samples, seed)
    ov, weight = table.overhead_us, {}
    per_arch = []
    for a in archs:
        us = []
        for u in [u for _, units in arch_sections(a) for u in units]:
            if u.key not in weight:
                weight[u.key] = 4 * sum(p.numel() for p in unit_module(u).parameters())
            us.append((table.entries[u.key].us - ov, weight[u.key]))
        per_arch.append(us)
    n = np.array([len(us) for us in per_arch], float)

    def score(pred, y):
        return {k: round(v, 3) for k, v in metrics(pred, y).items() if k in ("within_5pct", "within_10pct", "mape")}

    found: dict[str, Any] = {}
    for folder in JOURNALS:
        rows = {r["arch_hash"]: r for r in read_json_lines(RESULTS / folder / "samples.jsonl")}
        keep = [i for i, a in enumerate(archs) if a.arch_hash() in rows]
        y = np.array([rows[archs[i].arch_hash()]["measured_ms"] * 1000 for i in keep])
        plain = np.array([sum(w for w, _ in per_arch[i]) + ov for i in keep])
        out = {"plain": score(plain, y), "scale+unit": score(out_of_fold(np.stack([plain, n[keep]], 1), y), y)}
        for gbs in bandwidths_gbs:
            roof = np.array([sum(max(w, b / (gbs * 1e3)) for w, b in per_arch[i]) + ov for i in keep])
            out[f"roofline {gbs} GB/s"] = score(roof, y)
            out[f"roofline {gbs} GB/s, scale+unit"] = score(out_of_fold(np.stack([roof, n[keep]], 1), y), y)
        found[folder] = out
    return found


# ------------------------------------------------------------------ 2. paired timing
class Polluter:
    """Reads `nbytes` of memory before a run: the rest of a network's weights and activations
    passing through the caches between two runs of one of its units."""

    def __init__(self, nbytes: int) -> None:
        self.buf = np.ones(max(nbytes // 4, 1), dtype=np.float32)

    def __call__(self) -> None:
        self.buf.sum()


def time_runs(session, feeds, policy: RunPolicy, before=None) -> float:
    """Median us of `session.run` (as measure.time_session), `before()` called untimed before each run."""
    for _ in range(policy.warmup):
        session.run(None, feeds)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < policy.max_runs and (len(times) < policy.min_runs
                                            or time.perf_counter() - start < policy.min_seconds):
        if before is not None:
            before()
            for v in feeds.values():
                v.sum()  # the unit's input was just written by the previous unit: keep it in cache
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def n_bytes(model: bytes) -> int:
    """Bytes of a model's initializers (its weights)."""
    import onnx

    return sum(int(np.prod(t.dims, dtype=np.int64)) * 4 for t in onnx.load_from_string(model).graph.initializer)


def paired(arch, policy: RunPolicy, e2e_policy: RunPolicy, passes: int, overhead: float) -> dict[str, Any]:
    import torch

    from nas.builder import build_model
    from nas.export import onnx_bytes
    from predictors.latency.unit_export import unit_onnx

    model = build_model(arch)
    x = torch.zeros(1, 3, arch.resolution, arch.resolution)
    dyn = onnx_bytes(model, x, check=False)
    static = onnx_bytes(model, x, dynamic_batch=False, check=False)
    sections = arch_sections(arch)
    units = [(name, u, unit_onnx(u)) for name, us in sections for u in us]
    weights = n_bytes(static)
    unit_bytes = [n_bytes(m) for _, _, m in units]
    best: dict[str, float] = {}
    unit_best = [[np.inf, np.inf] for _ in units]
    for _ in range(passes):  # interleaved: each pass times every model once, in a fresh session
        for name, m in (("e2e", dyn), ("e2e_static", static)):
            s = make_session(m, 1)
            best[name] = min(best.get(name, np.inf), time_runs(s, random_feeds(s), e2e_policy))
        for i, (_, _, m) in enumerate(units):
            s = make_session(m, 1)
            f = random_feeds(s)
            unit_best[i][0] = min(unit_best[i][0], time_runs(s, f, policy))
            rest = Polluter(weights - unit_bytes[i] + 4 * sum(int(np.prod(v.shape)) for v in f.values()))
            unit_best[i][1] = min(unit_best[i][1], time_runs(s, f, policy, rest))
    chained = chain(units, policy, passes)
    n = len(units)
    warm = sum(b[0] for b in unit_best) - overhead * (n - 1)
    chain_sum = sum(chained) - overhead * (n - 1)
    ctx = sum(b[1] for b in unit_best) - overhead * (n - 1)
    per_section = collections.defaultdict(lambda: [0.0, 0.0, 0, 0, 0.0])
    for (name, _, _), b, c, nb in zip(units, unit_best, chained, unit_bytes):
        row = per_section[name]
        row[0] += b[0] - overhead
        row[1] += b[1] - overhead
        row[2] += 1
        row[3] += nb
        row[4] += c - overhead
    return {"e2e_us": round(best["e2e"], 1), "e2e_static_us": round(best["e2e_static"], 1),
            "units_sum_us": round(warm, 1), "units_context_sum_us": round(ctx, 1),
            "units_chained_sum_us": round(chain_sum, 1),
            "units_sum_err_pct": round(100 * (warm / best["e2e"] - 1), 1),
            "units_sum_vs_static_pct": round(100 * (warm / best["e2e_static"] - 1), 1),
            "units_chained_vs_static_pct": round(100 * (chain_sum / best["e2e_static"] - 1), 1),
            "units_context_vs_static_pct": round(100 * (ctx / best["e2e_static"] - 1), 1),
            "units_context_err_pct": round(100 * (ctx / best["e2e"] - 1), 1),
            "static_vs_dynamic_pct": round(100 * (best["e2e_static"] / best["e2e"] - 1), 1),
            "weight_mb": round(weights / 2**20, 2), "units": n,
            "sections": {k: {"units": v[2], "weight_mb": round(v[3] / 2**20, 3), "standalone_us": round(v[0], 1),
                             "context_us": round(v[1], 1), "chained_us": round(v[4], 1)}
                         for k, v in per_section.items()},
            "_graphs": (dyn, static, [m for _, _, m in units], [name for name, _, _ in units])}


def chain(units: list[tuple[str, Unit, bytes]], policy: RunPolicy, passes: int) -> list[float]:
    """Each unit's median us when the units run one after another, each once per round (one
    session each, all open), as inside the network: what a unit finds in the caches is what the
    units before it left there. The lowest median over `passes` fresh sets of sessions."""
    rounds = max(policy.min_runs, 1)
    found = [np.inf] * len(units)
    for _ in range(passes):
        sessions = [make_session(m, 1) for _, _, m in units]
        feeds = [random_feeds(s) for s in sessions]
        times = [[] for _ in units]
        for r in range(policy.warmup + rounds):
            for i, (s, f) in enumerate(zip(sessions, feeds)):
                t0 = time.perf_counter()
                s.run(None, f)
                if r >= policy.warmup:
                    times[i].append(time.perf_counter() - t0)
        found = [min(a, float(np.median(t) * 1e6)) for a, t in zip(found, times)]
    return found


# ------------------------------------------------------------------ 3-4. profiler and graphs
def _options(**extra):
    import onnxruntime as ort

    o = ort.SessionOptions()
    o.intra_op_num_threads, o.inter_op_num_threads = 1, 1
    o.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    o.log_severity_level = 3
    for k, v in extra.items():
        setattr(o, k, v)
    return o


def profile(model: bytes, runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Kernel us per run by node name and by op type, from ONNX Runtime's profiler (warm-up excluded)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        s = ort.InferenceSession(model, _options(enable_profiling=True, profile_file_prefix=f"{tmp}/p"),
                                 providers=["CPUExecutionProvider"])
        f = random_feeds(s)
        warmup = 5
        for _ in range(warmup + runs):
            s.run(None, f)
        events = json.loads(Path(s.end_profiling()).read_text())
    starts = [e["ts"] for e in events if e.get("cat") == "Session" and e["name"] == "model_run"]
    t0 = starts[warmup] if len(starts) > warmup else 0
    by_node, by_op = collections.defaultdict(float), collections.defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= t0:
            by_node[e["name"][:-len("_kernel_time")]] += e["dur"] / runs
            by_op[e["args"].get("op_name", "?")] += e["dur"] / runs
    return by_node, by_op


def _section_of(node: str) -> str:
    """'/stages.2/blocks.0/...' -> 'stage 2'; nodes named by the optimiser's fusions -> 'fused/unnamed'."""
    parts = node.split("/")
    if not node.startswith("/") or len(parts) < 2:
        return "fused/unnamed"
    top = parts[1]
    return f"stage {top.split('.', 1)[1]}" if top.startswith("stages.") else top


def in_context(static: bytes, unit_models: list[bytes], names: list[str], runs: int) -> dict[str, Any]:
    by_node, net_ops = profile(static, runs)
    net_sections = collections.defaultdict(float)
    for node, us in by_node.items():
        net_sections[_section_of(node)] += us
    unit_sections, unit_ops = collections.defaultdict(float), collections.defaultdict(float)
    for name, m in zip(names, unit_models):
        nodes, ops = profile(m, runs)
        unit_sections[name] += sum(nodes.values())
        for k, v in ops.items():
            unit_ops[k] += v
    ops = {k: {"network_us": round(net_ops.get(k, 0.0), 1), "units_us": round(unit_ops.get(k, 0.0), 1)}
           for k in set(net_ops) | set(unit_ops)}
    return {"note": "kernel time per run under the profiler (which slows every node alike); network vs units alone",
            "kernel_us": {"network": round(sum(net_ops.values()), 1), "units": round(sum(unit_ops.values()), 1)},
            "by_section": {k: {"network_us": round(net_sections.get(k, 0.0), 1),
                               "units_us": round(unit_sections.get(k, 0.0), 1)}
                           for k in sorted(set(net_sections) | set(unit_sections))},
            "by_op_most_different": dict(sorted(ops.items(), key=lambda kv: -abs(kv[1]["network_us"]
                                                                                   - kv[1]["units_us"]))[:10])}


def optimized_ops(model: bytes) -> collections.Counter:
    """Node count per op type of `model` after ONNX Runtime's graph optimisation."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "opt.onnx")
        ort.InferenceSession(model, _options(optimized_model_filepath=path), providers=["CPUExecutionProvider"])
        return collections.Counter(n.op_type for n in onnx.load(path).graph.node)


def graphs(dyn: bytes, static: bytes, unit_models: list[bytes]) -> dict[str, Any]:
    d, s = optimized_ops(dyn), optimized_ops(static)
    u = sum((optimized_ops(m) for m in unit_models), collections.Counter())
    diff = {k: {"dynamic": d.get(k, 0), "static": s.get(k, 0), "units": u.get(k, 0)}
            for k in set(d) | set(s) | set(u) if not d.get(k, 0) == s.get(k, 0) == u.get(k, 0)}
    return {"nodes": {"dynamic": sum(d.values()), "static": sum(s.values()), "units": sum(u.values())},
            "ops_that_differ": dict(sorted(diff.items(), key=lambda kv: -max(kv[1].values())))}


# ------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", default="predictors/latency/tables/host.json")
    ap.add_argument("--samples", type=int, default=100, help="the committed journals' sample count")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--worst", type=int, default=5)
    ap.add_argument("--best", type=int, default=3)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--profile-runs", type=int, default=30)
    ap.add_argument("--zoo", default="", metavar="NAME,...",
                    help="also measure these reference-zoo models (at their own resolution) the same way")
    ap.add_argument("--tiny", action="store_true", help="one worst and one best subnet, a few runs (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS / "latency_outliers.json")
    args = ap.parse_args(argv)
    if args.tiny:
        args.samples, args.worst, args.best, args.passes, args.profile_runs = 6, 1, 1, 1, 2
    policy, e2e_policy = (TINY_TIMING, TINY_TIMING) if args.tiny else (UNIT_POLICY, E2E_POLICY)
    table = load_table(args.table)
    data = committed(table, args.samples, args.seed)
    roof = roofline(table, args.samples, args.seed)
    first = data[JOURNALS[0]]
    picked = [("worst", s) for s in first["worst"][:args.worst]] + [("best", s) for s in first["best"][:args.best]]
    archs = {a.arch_hash(): a for a in sample_archs(table, args.samples, args.seed)}
    for name in filter(None, args.zoo.split(",")):
        arch = load_zoo(name)
        archs[arch.arch_hash()] = arch
        picked.append(("zoo", {"arch_hash": arch.arch_hash(), "units": len(arch_units(arch)), "name": name,
                               "plain_err_pct": None}))
    overhead = call_overhead_us(1).median_us if not args.tiny else 0.0
    measured = []
    for i, (kind, s) in enumerate(picked):
        arch = archs[s["arch_hash"]]
        label = s.get("name", s["arch_hash"])
        print(f"[{i + 1}/{len(picked)}] {kind} {label} {arch.resolution} px, {s['units']} units", flush=True)
        row = paired(arch, policy, e2e_policy, args.passes, overhead)
        dyn, static, unit_models, names = row.pop("_graphs")
        row["in_context_profile"] = in_context(static, unit_models, names, args.profile_runs)
        row["graphs"] = graphs(dyn, static, unit_models)
        measured.append({"kind": kind, "name": s.get("name"), "arch_hash": s["arch_hash"],
                         "resolution": arch.resolution, "committed_plain_err_pct": s["plain_err_pct"], **row})
        print(f"   e2e {row['e2e_us']:.0f} us, static {row['e2e_static_us']:.0f}, units {row['units_sum_us']:.0f} "
              f"chained {row['units_chained_sum_us']:.0f} "
              f"({row['units_sum_err_pct']:+.1f}%), in context {row['units_context_sum_us']:.0f} "
              f"({row['units_context_err_pct']:+.1f}%)", flush=True)
    summary = {}
    for kind in ("worst", "best", "zoo"):
        rows = [m for m in measured if m["kind"] == kind]
        if rows:
            summary[kind] = {k: float(np.median([m[k] for m in rows]))
                             for k in ("units_sum_err_pct", "units_context_err_pct", "static_vs_dynamic_pct",
                                       "units_sum_vs_static_pct", "units_chained_vs_static_pct",
                                       "units_context_vs_static_pct")}
    report = {"command": "python benchmarks/latency_outliers.py" + (" --tiny" if args.tiny else "")
                         + f" --worst {args.worst} --best {args.best} --passes {args.passes}"
                         + (f" --zoo {args.zoo}" if args.zoo else ""),
              "tiny": args.tiny, "table": repo_path(args.table), "journals": list(JOURNALS),
              "overhead_us_here": round(overhead, 2), "committed": data, "roofline_rescored": roof,
              "measured_here": measured,
              "summary_median_here": summary,
              "machine": {**machine(), **machine_info()}}
    atomic_write_text(args.out, json.dumps(report, indent=1, default=str) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
