"""The training engine: epochs of steps, validation, metrics, crash-safe checkpoints and resume.

One `Trainer` runs one recipe on one model. The per-batch work is `training_step` (forward, loss,
backward); everything around it (optimizer step, clipping, schedule, logging, checkpointing,
DDP) is the engine's. A supernet trainer subclasses Trainer and overrides `training_step` (e.g.
the sandwich rule: several subnets, several backward passes, one optimizer step) and, if it
needs to, `evaluate`.

Exact resume: a checkpoint holds model, optimizer, scheduler, step/epoch, the position in the
epoch and every rank's RNG states; data order and augmentation are functions of (seed, epoch,
batch), and on CPU deterministic algorithms are enforced. A run killed at any instant and
started again therefore continues with bit-identical losses.

Run folder (`out_dir`, written by the main rank only; it must be visible to every rank):
  run.json        what this run is (recipe, data, caller's identity, e.g. the arch hash);
                  a different run in the same folder is refused, nothing is overwritten
  checkpoint.pt   latest state (every `checkpoint_every` steps and at each epoch end)
  metrics.jsonl   one line per logged step and per epoch
  curves.png      loss and validation accuracy per epoch
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from nas.atomic import atomic_write, atomic_write_text, interrupted_writes
from nas.checkpoint import load_checkpoint
from nas.data import Dataset, Loader, Split, mix_seed
from nas.errors import UserError
from nas.train.distributed import DistEnv
from nas.train.losses import classification_loss
from nas.train.metrics import MetricsLog, plot_curves
from nas.train.optim import make_optimizer, warmup_cosine
from nas.train.progress import StepProgress
from nas.train.recipe import Recipe
from nas.train.rng import rng_state, seed_all, set_rng_state

RUN_FILE, CHECKPOINT, METRICS, CURVES = "run.json", "checkpoint.pt", "metrics.jsonl", "curves.png"
CHECKPOINT_FORMAT = "hybrid-nas/train-checkpoint/v1"


class Trainer:
    """Train `model` on `data.train` under `recipe`, validating on `data.val` after every epoch.

    `teacher`, if given, is called on each batch's images and its logits are distilled into the
    model (see losses.classification_loss). `identity` is recorded in run.json next to the recipe
    and the data description; resuming requires all three to match.
    """

    find_unused_parameters = False  # a supernet whose steps skip parameters sets this True

    def __init__(self, model: nn.Module, data: Dataset, recipe: Recipe, out_dir: str | Path | None = None,
                 *, teacher: nn.Module | None = None, identity: dict[str, Any] | None = None,
                 log_every: int = 10, checkpoint_every: int = 200, verbose: bool = True,
                 dist_env: DistEnv | None = None) -> None:
        if log_every < 1 or checkpoint_every < 0:
            raise UserError(f"log every {log_every} / checkpoint every {checkpoint_every} steps: "
                            f"expected >= 1 / >= 0")
        self.dist = dist_env or DistEnv.from_env()
        self.device = self.dist.device
        self.recipe, self.data = recipe, data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log_every, self.checkpoint_every = log_every, checkpoint_every
        self.verbose = verbose and self.dist.is_main
        self.identity = json.loads(json.dumps({"recipe": recipe.model_dump(mode="json"),
                                               "data": data.describe(), **(identity or {})}))

        self.module = model.to(self.device)  # the network itself: state dicts, evaluation
        self.model: nn.Module = self.module  # what training_step calls: DDP-wrapped when distributed
        if self.dist.world_size > 1:
            self.model = DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.find_unused_parameters)
        self.teacher = teacher.to(self.device) if teacher is not None else None

        self.steps_per_epoch = len(data.train) // recipe.batch_size
        if self.steps_per_epoch == 0:
            raise UserError(f"train split has {len(data.train)} images, fewer than one batch "
                            f"({recipe.batch_size}); lower the batch size")
        self.total_steps = self.steps_per_epoch * recipe.epochs
        self.optimizer = make_optimizer(self.module, recipe.lr, recipe.weight_decay)
        self.scheduler = warmup_cosine(self.optimizer, self.total_steps,
                                       round(recipe.warmup_epochs * self.steps_per_epoch), recipe.final_lr_ratio)

        # Progress; all of it is checkpointed.
        self.step = 0  # optimizer steps taken
        self.epoch = 0  # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch consumed
        self.epoch_loss_sum, self.epoch_loss_count = 0.0, 0  # this rank's, for the epoch mean
        self.train_time_s, self.images_seen = 0.0, 0  # throughput over all sessions
        self.last_val: dict[str, float] = {}

        self.metrics = MetricsLog(self.out_dir / METRICS) if self.out_dir and self.dist.is_main else None
        self._window = (time.perf_counter(), 0)  # (time, images_seen) at the last step log

    # --- the per-batch work: override for other training rules ------------------------------------

    def training_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward for one batch; return the loss, detached, for logging. The engine
        then clips, steps the optimizer and the schedule, and zeroes the gradients."""
        logits = self.model(images)
        teacher_logits = self.teacher(images) if self.teacher is not None else None
        loss = classification_loss(logits, labels, self.recipe.label_smoothing, teacher_logits,
                                   self.recipe.distill_alpha, self.recipe.distill_temperature)
        loss.backward()
        return loss.detach()

    @torch.no_grad()
    def evaluate(self, split: Split, resolution: int | None = None) -> dict[str, float]:
        """Top-1 accuracy and cross-entropy (no smoothing) over `split`, summed over all ranks."""
        self._sync_buffers()
        was_training = self.module.training
        self.module.eval()
        loss_sum = correct = count = 0.0
        loader = Loader(split, resolution or self.recipe.resolution, self.recipe.batch_size, train=False,
                        rank=self.dist.rank, world_size=self.dist.world_size)
        for images, labels in loader:
            if len(labels) == 0:  # the last global batch may leave a rank nothing
                continue
            images, labels = images.to(self.device), labels.to(self.device)
            logits = self.module(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
        self.module.train(was_training)
        loss_sum, correct, count = self.dist.sum(loss_sum, correct, count)
        return {"loss": loss_sum / count, "acc": correct / count, "images": int(count)}

    # --- the loop ---------------------------------------------------------------------------------

    def fit(self, until_epoch: int | None = None) -> dict[str, Any]:
        """Train to `recipe.epochs` (resuming from out_dir's checkpoint if there is one), or stop
        after epoch `until_epoch` of the same schedule: a race of short trainings continues the
        survivors' runs later instead of starting a shorter recipe (see nas/search/finalists.py)."""
        if until_epoch is not None and until_epoch < 1:
            raise ValueError(f"until_epoch: {until_epoch}, expected >= 1")
        stop = min(self.recipe.epochs, until_epoch or self.recipe.epochs)
        self._open_run()
        deterministic = torch.are_deterministic_algorithms_enabled()
        if self.device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        try:
            with StepProgress(self.total_steps, self.step, self.verbose) as bar:
                if self.step and self.epoch < self.recipe.epochs:
                    bar.note(f"resumed at step {self.step} (epoch {self.epoch + 1}, batch {self.batch_in_epoch})")
                while self.epoch < stop:
                    self._train_epoch(bar)
                    self._end_epoch(bar)
        finally:
            torch.use_deterministic_algorithms(deterministic)
        return self.summary()

    def summary(self) -> dict[str, Any]:
        return {"epochs": self.epoch, "steps": self.step, "train_time_s": round(self.train_time_s, 3),
                "images_seen": self.images_seen,
                "images_per_s": round(self.images_seen / self.train_time_s, 1) if self.train_time_s else None,
                "val_loss": self.last_val.get("loss"), "val_acc": self.last_val.get("acc"),
                "world_size": self.dist.world_size}

    def _train_epoch(self, bar: StepProgress) -> None:
        r = self.recipe
        loader = Loader(self.data.train, r.resolution, r.batch_size, train=True, seed=r.seed, epoch=self.epoch,
                        rank=self.dist.rank, world_size=self.dist.world_size, start_batch=self.batch_in_epoch,
                        scale=r.crop_scale, hflip=r.hflip)
        self.model.train()
        self._window = (time.perf_counter(), self.images_seen)
        tic = time.perf_counter()
        for images, labels in loader:
            loss = float(self.training_step(images.to(self.device), labels.to(self.device)))
            lr, grad_norm = self._apply_gradients()
            self.step += 1
            self.batch_in_epoch += 1
            self.epoch_loss_sum += loss
            self.epoch_loss_count += 1
            self.images_seen += r.batch_size
            self.train_time_s += time.perf_counter() - tic
            if self.step % self.log_every == 0:
                self._log_step(loss, lr, grad_norm)
            if self.checkpoint_every and self.step % self.checkpoint_every == 0 \
                    and self.batch_in_epoch < self.steps_per_epoch:  # the epoch end saves anyway
                self._save_checkpoint()
            bar.update(self.step, loss, lr)
            tic = time.perf_counter()

    def _apply_gradients(self) -> tuple[float, float]:
        """Clip, step, schedule, zero; returns the lr this step used and the gradient norm."""
        lr = self.optimizer.param_groups[0]["lr"]
        max_norm = self.recipe.clip_grad or float("inf")  # inf: measure the norm, clip nothing
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.module.parameters(), max_norm))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return lr, grad_norm

    def _log_step(self, loss: float, lr: float, grad_norm: float) -> None:
        (mean_loss,) = self.dist.sum(loss)
        then, seen = self._window
        now = time.perf_counter()
        self._window = (now, self.images_seen)
        if self.metrics is not None:
            self.metrics.append({
                "kind": "step", "step": self.step, "epoch": self.epoch,
                "epoch_progress": self.epoch + self.batch_in_epoch / self.steps_per_epoch,
                "loss": mean_loss / self.dist.world_size, "lr": lr, "grad_norm": grad_norm,
                "images_per_s": round((self.images_seen - seen) / max(now - then, 1e-9), 1)})

    def _end_epoch(self, bar: StepProgress) -> None:
        """Validate, log the epoch, draw the curves, checkpoint (in that order: a checkpoint
        never precedes the log lines it covers)."""
        val = self.evaluate(self.data.val)
        loss_sum, loss_count = self.dist.sum(self.epoch_loss_sum, self.epoch_loss_count)
        self.epoch += 1
        self.batch_in_epoch = 0
        self.epoch_loss_sum, self.epoch_loss_count = 0.0, 0
        self.last_val = {"loss": val["loss"], "acc": val["acc"]}
        record = {"kind": "epoch", "step": self.step, "epoch": self.epoch, "train_loss": loss_sum / loss_count,
                  "val_loss": val["loss"], "val_acc": val["acc"], "lr": self.optimizer.param_groups[0]["lr"],
                  "images_per_s": round(self.images_seen / max(self.train_time_s, 1e-9), 1),
                  "train_time_s": round(self.train_time_s, 3)}
        if self.metrics is not None:
            self.metrics.append(record)
            plot_curves(self.metrics.records, self.out_dir / CURVES, title=self.out_dir.name)
        self._save_checkpoint()
        if self.dist.is_main and self.out_dir is not None:
            self.on_epoch_saved()
        bar.note(f"epoch {self.epoch}/{self.recipe.epochs}  train loss {record['train_loss']:.4f}  "
                 f"val loss {val['loss']:.4f}  val acc {100 * val['acc']:.2f}%  "
                 f"{record['images_per_s']:.0f} img/s")

    def on_epoch_saved(self) -> None:
        """Called on the main rank after each epoch's checkpoint is written (a subclass may keep
        more of the run, e.g. per-epoch weights); nothing by default."""

    # --- run folder, checkpoints ------------------------------------------------------------------

    def _open_run(self) -> None:
        """Claim or re-open out_dir, then resume from its checkpoint or seed a fresh run."""
        if self.out_dir is None:
            seed_all(self.recipe.seed, self.dist.rank)
            return
        problem = self._claim_run_dir() if self.dist.is_main else None
        problem = self.dist.broadcast(problem)  # every rank fails together, none hangs
        if problem:
            raise UserError(problem)
        path = self.out_dir / CHECKPOINT
        if path.exists():
            self._load_checkpoint(path)
        else:
            seed_all(self.recipe.seed, self.dist.rank)
        if self.metrics is not None:
            self.metrics.resume(self.step)

    def _claim_run_dir(self) -> str | None:
        """None if out_dir is free or holds this same run; else what is wrong, as one line."""
        assert self.out_dir is not None
        run_file = self.out_dir / RUN_FILE
        if run_file.exists():
            try:
                stored = json.loads(run_file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                return f"{run_file}: unreadable ({exc}); move the folder away or choose another output folder"
            diff = first_difference(stored, self.identity)
            if diff:
                return (f"{self.out_dir} holds a different run ({diff}); nothing was overwritten: "
                        f"choose another output folder or delete this one")
            return None
        if self.out_dir.exists():
            leftovers = interrupted_writes(self.out_dir)  # a run killed while writing its first run.json
            if any(p not in leftovers for p in self.out_dir.iterdir()):
                return f"{self.out_dir}: folder is not empty and holds no {RUN_FILE}; choose another output folder"
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)
        atomic_write_text(run_file, json.dumps(self.identity, indent=2, sort_keys=True) + "\n")
        return None

    def _save_checkpoint(self) -> None:
        rngs = self.dist.gather(rng_state())  # a collective: every rank takes part
        if not self.dist.is_main or self.out_dir is None:
            return
        state = {
            "format": CHECKPOINT_FORMAT, "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "epoch_loss": [self.epoch_loss_sum, self.epoch_loss_count],
            "train_time_s": self.train_time_s, "images_seen": self.images_seen,
            "last_val": self.last_val, "rng": rngs,
        }
        atomic_write(self.out_dir / CHECKPOINT, lambda tmp: torch.save(state, tmp))

    def _load_checkpoint(self, path: Path) -> None:
        ckpt = load_checkpoint(path)
        if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
            raise UserError(f"{path}: not a {CHECKPOINT_FORMAT} checkpoint")
        self.module.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        self.step, self.epoch, self.batch_in_epoch = ckpt["step"], ckpt["epoch"], ckpt["batch_in_epoch"]
        self.epoch_loss_sum, self.epoch_loss_count = ckpt["epoch_loss"]
        self.train_time_s, self.images_seen = ckpt["train_time_s"], ckpt["images_seen"]
        self.last_val = ckpt["last_val"]
        if len(ckpt["rng"]) == self.dist.world_size:
            set_rng_state(ckpt["rng"][self.dist.rank])
        else:  # resumed on a different number of ranks: data stays exact, dropout masks cannot
            seed_all(mix_seed(self.recipe.seed, self.step), self.dist.rank)

    def _sync_buffers(self) -> None:
        """Give every rank the main rank's BN statistics (each rank updated its own copy in its
        last forward), so all ranks evaluate, and save, the same network."""
        if self.dist.world_size > 1:
            for buffer in self.module.buffers():
                dist.broadcast(buffer, src=0)


def first_difference(stored: Any, current: Any, path: str = "") -> str | None:
    """'recipe.lr: 0.001 in the folder, 0.002 now' for the first differing leaf, else None."""
    if isinstance(stored, dict) and isinstance(current, dict):
        for key in sorted(set(stored) | set(current)):
            diff = first_difference(stored.get(key), current.get(key), f"{path}.{key}" if path else key)
            if diff:
                return diff
        return None
    if stored != current:
        return f"{path or 'run'}: {stored!r} in the folder, {current!r} now"
    return None
