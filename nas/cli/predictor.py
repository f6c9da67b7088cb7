"""`nas predictor fit|show`: the accuracy predictor that makes a search take seconds, not days.

    nas predictor fit --bench DIR [--out FILE]                        # standalone-trained members
    nas predictor fit --supernet runs/NAME/supernet.pt [--samples 400] [--out FILE]
    nas predictor show [FILE]

`fit --bench` fits on a ground-truth bench (benchmarks/proxy_bench.py: members trained standalone,
one JSON row per run, on the proxy data or your own): a ridge model on the space encoding plus
size features (log parameters, log MACs, depth), predicting standalone test top-1 under the
bench's recipe; the shipped predictor is made this way. `fit --supernet` rates --samples random
members of the supernet's space with inherited weights (journaled next to the output as
FILE.samples.jsonl: run again after a kill and it goes on) and fits the MLP ensemble. Both report
the k-fold out-of-fold Kendall tau and error in FILE (plain JSON).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from nas.cli.args import add_data_option
from nas.cli.progress import counting_bar
from nas.data import default_data_root, load_dataset
from nas.errors import UserError
from nas.supernet.evaluate import SubnetEvaluator, load_supernet, supernet_path
from predictors.accuracy.bench import bench_members, bench_space
from predictors.accuracy.collect import collect_samples
from predictors.accuracy.features import SIZE_FEATURES
from predictors.accuracy.model import DEFAULT_PREDICTOR, file_sha256, fit_predictor, load_predictor


def samples_path(out: Path) -> Path:
    return out.with_name(out.stem + ".samples.jsonl")


def run_fit(args: argparse.Namespace) -> int:
    if (args.bench is None) == (args.supernet is None):
        raise UserError("give one of --bench DIR (standalone-trained rows) or --supernet CKPT")
    return _fit_bench(args) if args.bench else _fit_supernet(args)


def _fit_bench(args: argparse.Namespace) -> int:
    bench = bench_members(args.bench)
    rows, archs, truth = bench.rows, bench.archs, bench.truth
    space = bench_space(args.bench)
    recipe = rows[0]["recipe"]
    data = rows[0]["data"]
    data_name = Path(str(data.get("root", "data"))).name
    unit = f"predicted {recipe['epochs']}-epoch test top-1 on {data_name}"
    info = {"metric": f"standalone test top-1 after `nas train` ({recipe['epochs']} epochs, batch "
                      f"{recipe['batch_size']}; mean over seeds where two exist)",
            "unit": unit, "bench": {"path": str(args.bench), "members": len(archs), "runs": len(rows)},
            "recipe": recipe, "data": data,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    extra = SIZE_FEATURES if args.features == "size" else ()
    predictor = fit_predictor(space, archs, truth, kind=args.model or "ridge", seed=args.seed, info=info,
                              extra=extra, folds=max(2, min(5, len(archs) // 2)))
    return _save(predictor, Path(args.out), f"{len(archs)} members ({len(rows)} runs) of the {space.name} space "
                 f"(test top-1 {100 * min(truth):.1f}-{100 * max(truth):.1f}%); its unit: {unit}")


def _fit_supernet(args: argparse.Namespace) -> int:
    if args.samples < 20:
        raise UserError(f"--samples: {args.samples}, expected at least 20 evaluations to fit and hold out")
    supernet = load_supernet(args.supernet)
    data = load_dataset(args.data or default_data_root())
    out = Path(args.out)
    evaluator = SubnetEvaluator(supernet, data, "val", calib_batches=args.calib_batches, batch_size=128)
    with counting_bar("rating members with inherited weights", args.quiet) as progress:
        records = collect_samples(evaluator.evaluate, supernet.space, args.samples, args.seed, samples_path(out),
                                  progress)
    ckpt = supernet_path(args.supernet)
    info = {"metric": "val top-1 with inherited supernet weights (BN recalibrated)",
            "supernet": {"path": str(ckpt), "sha256": file_sha256(ckpt)}, "data": str(data.root),
            "val_images": records[0]["images"], "calib_batches": args.calib_batches, "sample_seed": args.seed,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    predictor = fit_predictor(supernet.space, [r["arch"] for r in records], [r["acc"] for r in records],
                              kind=args.model or "mlp", seed=args.seed, info=info)
    accs = [r["acc"] for r in records]
    return _save(predictor, out, f"{len(records)} members of the {supernet.space.name} space "
                 f"(val accuracy {100 * min(accs):.1f}-{100 * max(accs):.1f}%)")


def _save(predictor, out: Path, fitted_on: str) -> int:
    predictor.save(out)
    h = predictor.info["holdout"]
    print(f"{out}: fitted on {fitted_on}")
    print(f"out-of-fold ({h['folds']}-fold): Kendall tau {h['kendall_tau']:.3f}, Spearman {h['spearman_rho']:.3f}, "
          f"mean abs error {100 * h['mae']:.2f} points")
    return 0


def run_show(args: argparse.Namespace) -> int:
    path = Path(args.file) if args.file else DEFAULT_PREDICTOR
    predictor = load_predictor(path)
    info, h = predictor.info, predictor.info.get("holdout", {})
    print(f"{path}: accuracy predictor over the {predictor.space.name} space "
          f"({predictor.space.size():.3g} members, resolutions {list(predictor.space.resolutions)}, "
          f"{predictor.space.num_classes} classes)")
    print(f"predicts: {info.get('unit') or info.get('metric', '?')}; fitted on {info.get('samples', '?')} "
          f"members; model {info.get('model', '?')}")
    if h:
        print(f"out-of-fold ({h['folds']}-fold): Kendall tau {h['kendall_tau']:.3f}, mean abs error "
              f"{100 * h['mae']:.2f} points")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictor", help="fit and inspect accuracy predictors (fast search signal)",
                       description="Accuracy predictors fitted on a standalone-trained bench or on supernet "
                                   "evaluations.")
    s = p.add_subparsers(dest="predictor_command", metavar="SUBCOMMAND")
    s.required = True
    f = s.add_parser("fit", help="fit a predictor on a bench, or on a supernet's ratings (resumable)",
                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--bench", type=Path, metavar="DIR", help="a bench folder (plan.json, rows-*.jsonl): fit on "
                                                              "standalone-trained members")
    f.add_argument("--supernet", metavar="CKPT",
                   help="supernet.pt (or its run folder): fit on inherited-weight ratings")
    f.add_argument("--features", default="size", choices=("size", "none"),
                   help="--bench: add size features (log params, log MACs, depth) to the encoding (default size)")
    add_data_option(f, use="with --supernet: the members are rated on its val split")
    f.add_argument("--samples", type=int, default=400, help="members to rate (default 400)")
    f.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches of 128 (default 4)")
    f.add_argument("--model", help="ridge (default with --bench) or mlp (ensemble of 5; default with --supernet)")
    f.add_argument("--seed", type=int, default=0, help="which random members (default 0)")
    f.add_argument("--out", default="runs/predictor.json", metavar="FILE",
                   help="predictor file (default runs/predictor.json)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fit)
    sh = s.add_parser("show", help="what a predictor covers and how well it ranks")
    sh.add_argument("file", nargs="?", help="predictor file (default: the shipped one)")
    sh.set_defaults(func=run_show)
