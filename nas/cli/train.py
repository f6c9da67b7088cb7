"""`nas train ARCH --epochs E --out runs/NAME`: standalone training of one architecture.

Trains on the data's train split (minus the held-out validation split), reports test accuracy
at the end, and leaves in the run folder: arch.json (what was trained: the arch with the data's
class count and the training resolution), model.pt (state dict), model.onnx (inference form),
metrics.json, plus the engine's run.json, checkpoint.pt, metrics.jsonl and curves.png. Running
the same command again resumes; under `torchrun --nproc_per_node N` it trains with DDP.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nas import __version__
from nas.arch import ArchConfig, parse_arch, save_arch
from nas.atomic import atomic_write, atomic_write_text
from nas.builder import build_model
from nas.cli.args import add_data_option, at_least, output_dir, seed
from nas.data import default_data_root, load_dataset
from nas.errors import UserError
from nas.export import export_onnx
from nas.profile import count_params
from nas.supernet.evaluate import load_initial_weights
from nas.train import DistEnv, Trainer, load_teacher, make_recipe
from search_spaces.reference import resolve_arch


def trained_arch(arch: ArchConfig, resolution: int | None, num_classes: int | None, data_classes: int,
                 source: str) -> ArchConfig:
    """The arch as it will be trained: the data's class count (or a larger one) and resolution."""
    num_classes = data_classes if num_classes is None else num_classes
    if num_classes < data_classes:
        raise UserError(f"--num-classes {num_classes} is fewer than the {data_classes} classes in the data")
    return parse_arch({**arch.to_dict(), "num_classes": num_classes, "resolution": resolution or arch.resolution},
                      source=source)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    env = DistEnv.from_env()
    try:
        return _train(args, env, started)
    finally:
        env.close()


def _train(args: argparse.Namespace, env: DistEnv, started: float) -> int:
    base = resolve_arch(args.arch)
    out = output_dir("--out", Path(args.out) if args.out else Path("runs") / base.name, create=False)
    resolution = args.resolution or base.resolution
    data = load_dataset(args.data or default_data_root(), image_size=resolution)
    arch = trained_arch(base, args.resolution, args.num_classes, data.num_classes, str(args.arch))
    recipe = make_recipe(epochs=args.epochs, resolution=arch.resolution, batch_size=args.batch_size, lr=args.lr,
                         weight_decay=args.weight_decay, warmup_epochs=args.warmup_epochs,
                         label_smoothing=args.label_smoothing, clip_grad=args.clip_grad,
                         distill_alpha=args.distill_alpha, distill_temperature=args.distill_temperature,
                         seed=args.seed)
    model = build_model(arch, seed=args.seed)
    if args.init_from:  # a resumed run's checkpoint overrides these weights
        load_initial_weights(model, arch, args.init_from)
    teacher, teacher_id = load_teacher(args.distill, args.distill_weights, arch.num_classes) \
        if args.distill else (None, None)
    identity = {"arch_hash": arch.arch_hash(),
                "init_from": str(Path(args.init_from).resolve()) if args.init_from else None,
                "teacher": teacher_id}
    trainer = Trainer(model, data, recipe, out, teacher=teacher, identity=identity, log_every=args.log_every,
                      checkpoint_every=args.checkpoint_every, verbose=not args.quiet, dist_env=env)
    summary = trainer.fit()
    test = trainer.evaluate(data.test)
    if not env.is_main:
        return 0
    model = trainer.module.cpu()
    save_arch(arch, out / "arch.json")
    atomic_write(out / "model.pt", lambda tmp: torch.save(model.state_dict(), tmp))
    export_onnx(model, arch.resolution, out / "model.onnx")
    report = _report(arch, recipe.model_dump(mode="json"), data.describe(), summary, test, identity,
                     args.seed, time.perf_counter() - started, count_params(model))
    atomic_write_text(out / "metrics.json", json.dumps(report, indent=2) + "\n")
    print(f"{arch.name}: test acc {100 * test['acc']:.2f}%  val acc {100 * (summary['val_acc'] or 0):.2f}%  "
          f"{summary['images_per_s'] or 0:.0f} img/s  -> {out}/model.pt, model.onnx, metrics.json")
    return 0


def _report(arch: ArchConfig, recipe: dict[str, Any], data: dict[str, Any], summary: dict[str, Any],
            test: dict[str, float], identity: dict[str, Any], seed: int, wall_s: float, params: int
            ) -> dict[str, Any]:
    """metrics.json: the headline numbers first, then everything needed to reproduce them."""
    return {
        "arch": arch.name, "arch_hash": arch.arch_hash(), "resolution": arch.resolution,
        "num_classes": arch.num_classes, "params": params,
        "test_acc": test["acc"], "test_loss": test["loss"], "val_acc": summary["val_acc"],
        "val_loss": summary["val_loss"], "epochs": summary["epochs"], "steps": summary["steps"],
        "images_per_s": summary["images_per_s"], "train_time_s": summary["train_time_s"],
        "wall_time_s": round(wall_s, 3), "world_size": summary["world_size"], "seed": seed,
        "recipe": recipe, "data": data, "init_from": identity["init_from"], "teacher": identity["teacher"],
        "versions": {"hybrid_nas": __version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }


def add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    """The optimisation recipe flags shared by `nas train` and `nas supernet train`."""
    p.add_argument("--batch-size", type=int, default=128, help="global batch size (default 128)")
    p.add_argument("--lr", type=float, default=2e-3, help="AdamW peak learning rate (default 2e-3)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="(default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=1.0, help="linear warmup, then cosine (default 1)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="(default 0.1; supernet: the largest member's)")
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm, 0 = off (default 1)")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one architecture standalone (resumable, DDP under torchrun)",
                       description="Train ARCH on the data's train split, validate every epoch on a held-out "
                                   "10%% of it, report test accuracy, and write model.pt, model.onnx and "
                                   "metrics.json to --out. Re-running the same command resumes from the "
                                   "folder's checkpoint; under `torchrun --nproc_per_node N` it runs DDP "
                                   "(--batch-size is the global batch).")
    p.add_argument("arch", help="architecture JSON file or reference-zoo name")
    add_data_option(p)
    p.add_argument("--epochs", type=int, required=True)
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<arch name>)")
    add_recipe_arguments(p)
    p.add_argument("--seed", type=seed, default=0, help="init weights, data order, augmentation (default 0)")
    p.add_argument("--resolution", type=int, help="training resolution (default: the arch's)")
    p.add_argument("--num-classes", type=at_least(2), help="classifier outputs (default: the data's class count)")
    p.add_argument("--init-from", metavar="CKPT", help="start from these weights: a trained model's (shapes must "
                                                        "match exactly) or a supernet's (supernet.pt or its run "
                                                        "folder: the arch inherits its slice; it must be a member)")
    p.add_argument("--distill", metavar="TEACHER", help="distil from a `nas train` run folder, or from an "
                                                         "arch/zoo name given with --distill-weights")
    p.add_argument("--distill-weights", metavar="CKPT", help="the teacher's weights when --distill is an arch")
    p.add_argument("--distill-alpha", type=float, default=0.5, help="weight of the KD loss (default 0.5)")
    p.add_argument("--distill-temperature", type=float, default=2.0, help="KD temperature (default 2)")
    p.add_argument("--log-every", type=int, default=10, help="steps between metrics.jsonl lines (default 10)")
    p.add_argument("--checkpoint-every", type=int, default=200,
                   help="steps between checkpoints, besides every epoch end (default 200; 0 = epoch ends only)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or epoch lines")
    p.set_defaults(func=run)
