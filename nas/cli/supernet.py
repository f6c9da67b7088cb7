"""`nas supernet train|eval`: train the weight-sharing supernet; rate members with inherited weights.

    nas supernet train --data D --epochs E --out runs/NAME [--space hybrid|proxy|tiny|FILE]
    nas supernet eval --supernet runs/NAME/supernet.pt ARCH.json [ARCH.json ...] [--out evals.json]

`train` leaves in the run folder the engine's run.json, checkpoint.pt (every --checkpoint-every
steps and each epoch end: model, optimizer, scheduler, RNG, data position), metrics.jsonl and
curves.png, and at the end supernet.pt (space + weights) and metrics.json. Running the same command
again resumes exactly; under `torchrun --nproc_per_node N` it trains with DDP.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from nas.atomic import atomic_write, atomic_write_text
from nas.cli.args import add_data_option, output_dir, output_file, seed
from nas.cli.train import add_recipe_arguments
from nas.data import default_data_root, load_dataset
from nas.supernet import Supernet, resolve_space
from nas.supernet.evaluate import SubnetEvaluator, load_supernet, supernet_file, supernet_path, warm_start
from nas.supernet.trainer import Sandwich, SupernetTrainer
from nas.train import DistEnv, make_recipe
from search_spaces.reference import resolve_arch


def run_train(args: argparse.Namespace) -> int:
    env = DistEnv.from_env()
    try:
        return _train(args, env)
    finally:
        env.close()


def _train(args: argparse.Namespace, env: DistEnv) -> int:
    started = time.perf_counter()
    out = output_dir("--out", args.out, create=False)  # a file there fails now, not after the data is read
    data = load_dataset(args.data or default_data_root())
    space = resolve_space(args.space, data.num_classes)
    sandwich = Sandwich(num_random=args.num_random, kd_temperature=args.kd_temperature, kd_weight=args.kd_weight,
                        teacher=args.teacher, corners=args.corners, calib_batches=args.calib_batches,
                        sampling=args.sampling, levels=args.levels)
    recipe = make_recipe(epochs=args.epochs, resolution=max(space.resolutions), batch_size=args.batch_size,
                         lr=args.lr, weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                         label_smoothing=args.label_smoothing, clip_grad=args.clip_grad, seed=args.seed)
    supernet = Supernet(space, seed=args.seed, stem_sharing=args.stem_weights)
    identity = {}
    if args.init_from:  # a resumed run's checkpoint overrides these weights
        fresh = warm_start(supernet, load_supernet(args.init_from))
        identity["init_from"] = str(supernet_path(args.init_from).resolve())
        if fresh and not args.quiet:
            print(f"warm start from {args.init_from}: {len(fresh)} tensors keep their initial values "
                  f"(first: {fresh[0]})")
    trainer = SupernetTrainer(supernet, data, recipe, out, sandwich=sandwich, identity=identity,
                              log_every=args.log_every,
                              checkpoint_every=args.checkpoint_every, verbose=not args.quiet, dist_env=env,
                              keep_epochs=args.keep_epochs)
    summary = trainer.fit()
    smallest = trainer.evaluate_member(space.smallest(), data.val)
    if not env.is_main:
        return 0
    state = supernet_file(trainer.module.cpu())
    atomic_write(out / "supernet.pt", lambda tmp: torch.save(state, tmp))
    report = {**summary, "largest_val_acc": summary["val_acc"], "smallest_val_acc": smallest["acc"],
              "space": space.name, "params": sum(p.numel() for p in supernet.parameters()),
              "recipe": recipe.model_dump(mode="json"), "sandwich": trainer.identity["sandwich"],
              "data": data.describe(), "wall_time_s": round(time.perf_counter() - started, 3)}
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    print(f"supernet ({space.name}): largest val acc {100 * (summary['val_acc'] or 0):.2f}%  smallest "
          f"{100 * smallest['acc']:.2f}%  {summary['images_per_s'] or 0:.1f} img/s  -> {out}/supernet.pt")
    return 0


def run_eval(args: argparse.Namespace) -> int:
    archs = [resolve_arch(a) for a in args.archs]  # bad files fail before the slow loads
    if args.out:
        output_file("--out", args.out)
    supernet = load_supernet(args.supernet)
    data = load_dataset(args.data or default_data_root())
    evaluator = SubnetEvaluator(supernet, data, args.split, args.calib_batches, args.batch_size)
    results = []
    for ref, arch in zip(args.archs, archs):
        tic = time.perf_counter()
        result = {"file": str(ref), **evaluator.evaluate(arch), "seconds": round(time.perf_counter() - tic, 3)}
        results.append(result)
        print(f"{ref}: {args.split} acc {100 * result['acc']:.2f}%  loss {result['loss']:.4f}  "
              f"({result['seconds']:.2f} s)")
    if args.out:
        atomic_write_text(args.out, json.dumps({"supernet": str(args.supernet), "split": args.split,
                                                "calib_batches": args.calib_batches, "results": results},
                                               indent=2) + "\n")
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("supernet", help="train the weight-sharing supernet / evaluate members with it",
                       description="Weight-sharing supernet over the hybrid space: `train` (sandwich rule, "
                                   "in-place distillation; resumable; DDP under torchrun) and `eval` (inherited "
                                   "weights + BatchNorm recalibration).")
    commands = p.add_subparsers(dest="supernet_command", metavar="{train,eval}", parser_class=type(p))
    commands.required = True

    t = commands.add_parser("train", help="train a supernet (re-run the same command to resume)",
                            description="Train the supernet of --space on the data's train split with the "
                                        "sandwich rule (largest on labels; smallest and --num-random random members "
                                        "distilled from it), AdamW + warmup-cosine. Writes checkpoint.pt, "
                                        "metrics.jsonl, curves.png, and at the end supernet.pt and metrics.json "
                                        "to --out. Under `torchrun --nproc_per_node N` it runs DDP.")
    add_data_option(t)
    t.add_argument("--epochs", type=int, required=True)
    t.add_argument("--out", metavar="DIR", required=True, help="run folder")
    t.add_argument("--space", default="hybrid", help="hybrid (default), proxy, tiny, or a JSON space file")
    add_recipe_arguments(t)
    t.add_argument("--num-random", type=int, default=2, help="random members per step (default 2)")
    t.add_argument("--kd-temperature", type=float, default=1.0, help="in-place distillation temperature")
    t.add_argument("--kd-weight", type=float, default=1.0,
                   help="students' loss share of distillation, the rest label cross-entropy (default 1)")
    t.add_argument("--teacher", default="layout",
                   help="in-place distillation teacher: 'layout' (default), the largest member of the step's "
                        "drawn family layout; 'fixed', the space's largest member, trained every step")
    t.add_argument("--corners", default="none",
                   help="'none' (default); 'shallow': each step also trains the drawn layout's widest member "
                        "at the smallest depths (the sandwich corner neither extreme covers)")
    t.add_argument("--stem-weights", default="shared", choices=("shared", "per-depth"),
                   help="'shared' (default): every stem depth slices one stem's weights; 'per-depth': one "
                        "stem per depth (a shared layer changes role with the depth)")
    t.add_argument("--init-from", metavar="CKPT",
                   help="warm start from another supernet (supernet.pt or its run folder): every tensor of "
                        "the same name and shape, e.g. a few-shot sub-space from the one-shot supernet")
    t.add_argument("--sampling", default="uniform", choices=("uniform", "complexity"),
                   help="students of a step: uniform (the sandwich: the layout's smallest and --num-random "
                        "random members) or complexity (ElasticViT: --num-random + 1 members within one MACs "
                        "band that moves one level per step)")
    t.add_argument("--levels", type=int, default=4, help="MACs bands for --sampling complexity (default 4)")
    t.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches at validation")
    t.add_argument("--seed", type=seed, default=0)
    t.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines")
    t.add_argument("--checkpoint-every", type=int, default=100, help="steps between checkpoints (default 100)")
    t.add_argument("--keep-epochs", action="store_true",
                   help="also keep each epoch's weights as epochs/supernet-eNNN.pt (to study how rankings evolve)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    t.set_defaults(func=run_train)

    e = commands.add_parser("eval", help="accuracy of members with inherited weights",
                            description="For each ARCH: extract it from the supernet, recalibrate BatchNorm on "
                                        "--calib-batches training batches, report accuracy on --split.")
    e.add_argument("archs", nargs="+", metavar="ARCH", help="architecture JSON files (members of the space)")
    e.add_argument("--supernet", required=True, metavar="CKPT",
                   help="supernet.pt, a training checkpoint.pt, or a run folder")
    add_data_option(e)
    e.add_argument("--split", default="val", choices=("val", "test"))
    e.add_argument("--calib-batches", type=int, default=4, help="BN recalibration batches (default 4)")
    e.add_argument("--batch-size", type=int, default=128, help="calibration and evaluation batch (default 128)")
    e.add_argument("--out", metavar="FILE", help="write the results as JSON")
    e.set_defaults(func=run_eval)
