"""`nas predictor fit|show`: the accuracy predictor that makes a search take seconds, not days.

    nas predictor fit --supernet runs/NAME/supernet.pt [--samples 400] [--out FILE]
    nas predictor show [FILE]

`fit` rates --samples random members of the supernet's space with inherited weights (journaled
next to the output as FILE.samples.jsonl: run again after a kill and it goes on), fits the MLP
ensemble, reports its k-fold held-out Kendall tau, and writes FILE (plain JSON).
"""
from __future__ import annotations

import argparse
import datetime as _dt
from pathlib import Path

from nas.cli.progress import counting_bar
from nas.errors import UserError


def samples_path(out: Path) -> Path:
    return out.with_name(out.stem + ".samples.jsonl")


def run_fit(args: argparse.Namespace) -> int:
    from nas.data import default_data_root, load_dataset
    from nas.supernet.evaluate import SubnetEvaluator, load_supernet, supernet_path
    from predictors.accuracy.collect import collect_samples
    from predictors.accuracy.model import file_sha256, fit_predictor

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
                              kind=args.model, seed=args.seed, info=info)
    predictor.save(out)
    h = predictor.info["holdout"]
    accs = [r["acc"] for r in records]
    print(f"{out}: fitted on {len(records)} members of the {supernet.space.name} space "
          f"(val accuracy {100 * min(accs):.1f}-{100 * max(accs):.1f}%)")
    print(f"held-out ({h['folds']}-fold): Kendall tau {h['kendall_tau']:.3f}, Spearman {h['spearman_rho']:.3f}, "
          f"mean abs error {100 * h['mae']:.2f} points")
    return 0


def run_show(args: argparse.Namespace) -> int:
    from predictors.accuracy.model import DEFAULT_PREDICTOR, load_predictor

    path = Path(args.file) if args.file else DEFAULT_PREDICTOR
    predictor = load_predictor(path)
    info, h = predictor.info, predictor.info.get("holdout", {})
    print(f"{path}: accuracy predictor over the {predictor.space.name} space "
          f"({predictor.space.size():.3g} members, resolutions {list(predictor.space.resolutions)}, "
          f"{predictor.space.num_classes} classes)")
    print(f"predicts: {info.get('metric', '?')}; fitted on {info.get('samples', '?')} evaluations; "
          f"model {info.get('model', '?')}")
    if h:
        print(f"held-out ({h['folds']}-fold): Kendall tau {h['kendall_tau']:.3f}, mean abs error "
              f"{100 * h['mae']:.2f} points")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predictor", help="fit and inspect accuracy predictors (fast search signal)",
                       description="Accuracy predictors fitted on supernet evaluations.")
    s = p.add_subparsers(dest="predictor_command", metavar="SUBCOMMAND")
    s.required = True
    f = s.add_parser("fit", help="rate random members with a supernet and fit a predictor (resumable)",
                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    f.add_argument("--supernet", required=True, metavar="CKPT", help="supernet.pt (or its run folder)")
    f.add_argument("--data", metavar="DIR", help="dataset folder (default: $HYBRID_NAS_DATA or the proxy)")
    f.add_argument("--samples", type=int, default=400, help="members to rate (default 400)")
    f.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches of 128 (default 4)")
    f.add_argument("--model", default="mlp", help="mlp (ensemble of 5; default) or ridge (linear baseline)")
    f.add_argument("--seed", type=int, default=0, help="which random members (default 0)")
    f.add_argument("--out", default="runs/predictor.json", metavar="FILE",
                   help="predictor file (default runs/predictor.json)")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=run_fit)
    sh = s.add_parser("show", help="what a predictor covers and how well it ranks")
    sh.add_argument("file", nargs="?", help="predictor file (default: the shipped one)")
    sh.set_defaults(func=run_show)
