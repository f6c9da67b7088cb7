"""Accuracy of a member with inherited weights: extract, recalibrate BatchNorm, evaluate.

Why recalibrate: the supernet's BN running statistics are a blend over every member trained
through them (each member's channels see different inputs), so a member evaluated with them is
mis-normalised and its accuracy says little (BigNAS, OFA). A few training batches through the
extracted member in training mode, with the running averages reset and made cumulative, give it
its own statistics in well under a second; weights are untouched.

`SubnetEvaluator` is the search's entry point: the supernet, the calibration images and the
evaluation batches stay in memory, so each further member costs one build, one recalibration and
one pass over the evaluation split.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nas.arch.schema import ArchConfig
from nas.checkpoint import load_checkpoint, state_dict_of
from nas.data import Dataset, Loader, Split, normalize, resize
from nas.errors import UserError
from nas.supernet.containers import STEM_SHARING
from nas.supernet.supernet import Supernet
from nas.train.distributed import DistEnv
from nas.train.weights import load_weights_strict
from search_spaces.presets import space_from_dict

SUPERNET_FORMAT = "hybrid-nas/supernet/v1"
CALIBRATION_SEED = 12345  # fixed: every member is recalibrated on the same images


def calibration_batches(split: Split, num_batches: int, batch_size: int, seed: int = CALIBRATION_SEED
                        ) -> list[torch.Tensor]:
    """`num_batches` training-augmented batches (normalised, at the split's own size), the same
    ones on every call and every rank."""
    if num_batches < 1:
        raise UserError(f"calibration batches: {num_batches}, expected >= 1")
    batch_size = min(batch_size, len(split))
    out: list[torch.Tensor] = []
    epoch = 0
    while True:  # more batches than one epoch holds: the next epochs' orders
        for images, _ in Loader(split, split.images.shape[-1], batch_size, train=True, seed=seed, epoch=epoch):
            out.append(images)
            if len(out) == num_batches:
                return out
        epoch += 1


def fit_resolution(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize a normalised batch to `resolution` (bilinear, antialiased when shrinking)."""
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True,
                         align_corners=False)


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor], resolution: int) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average) from
    `batches` in training mode; returns the model in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch weighs the same
    model.train()
    device = next(model.parameters()).device
    for images in batches:
        model(fit_resolution(images.to(device), resolution))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    return model.eval()


@torch.no_grad()
def evaluate_model(model: nn.Module, split: Split, resolution: int, batch_size: int,
                   dist_env: DistEnv | None = None) -> dict[str, float]:
    """Top-1 accuracy and mean cross-entropy over `split` (sharded over ranks and summed)."""
    env = dist_env or DistEnv()
    device = next(model.parameters()).device
    model.eval()
    loss_sum = correct = count = 0.0
    for images, labels in Loader(split, resolution, batch_size, train=False, rank=env.rank,
                                 world_size=env.world_size):
        if len(labels) == 0:
            continue
        logits = model(images.to(device))
        labels = labels.to(device)
        loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        count += len(labels)
    loss_sum, correct, count = env.sum(loss_sum, correct, count)
    return {"loss": loss_sum / max(count, 1), "acc": correct / max(count, 1), "images": int(count)}


class SubnetEvaluator:
    """Inherited-weight accuracy of many members of one supernet on one split."""

    def __init__(self, supernet: Supernet, data: Dataset, split: str = "val", calib_batches: int = 4,
                 batch_size: int = 128) -> None:
        if split not in ("val", "test"):
            raise UserError(f"split: {split!r} is not one of [val, test]")
        if data.num_classes != supernet.space.num_classes:
            raise UserError(f"{data.root}: {data.num_classes} classes, the supernet predicts "
                            f"{supernet.space.num_classes}")
        self.supernet = supernet.eval()
        self.split: Split = getattr(data, split)
        self.batch_size = batch_size
        self.calibration = calibration_batches(data.train, calib_batches, batch_size)
        self._eval_batches: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _batches(self, resolution: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if resolution not in self._eval_batches:
            self._eval_batches[resolution] = [
                (normalize(resize(self.split.images[i:i + self.batch_size], resolution)),
                 self.split.labels[i:i + self.batch_size])
                for i in range(0, len(self.split), self.batch_size)]
        return self._eval_batches[resolution]

    @torch.no_grad()
    def evaluate(self, arch: ArchConfig) -> dict[str, Any]:
        arch = self.supernet.member(arch)
        model = recalibrate_bn(self.supernet.extract(arch), self.calibration, arch.resolution)
        loss_sum = correct = count = 0.0
        for images, labels in self._batches(arch.resolution):
            logits = model(images)
            loss_sum += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += len(labels)
        return {"arch": arch.name, "arch_hash": arch.arch_hash(), "acc": correct / count,
                "loss": loss_sum / count, "images": int(count)}


# --- files -------------------------------------------------------------------------------------------

def supernet_file(supernet: Supernet) -> dict[str, Any]:
    """What `supernet.pt` holds: format, the space, the weights (weights_only-loadable)."""
    return {"format": SUPERNET_FORMAT, **supernet.describe(), "model": supernet.state_dict()}


def epoch_snapshot(run_dir: str | Path, epoch: int) -> Path:
    """Where `nas supernet train --keep-epochs` keeps the weights at the end of `epoch` (1-based)."""
    return Path(run_dir) / "epochs" / f"supernet-e{epoch:03d}.pt"


def supernet_path(path: str | Path) -> Path:
    """The file a --supernet argument names: itself, or in a run folder its `supernet.pt` (the
    finished weights) or else its latest `checkpoint.pt`."""
    path = Path(path)
    if path.is_dir():
        return path / "supernet.pt" if (path / "supernet.pt").exists() else path / "checkpoint.pt"
    return path


def is_supernet_checkpoint(path: Path, ckpt: Any) -> bool:
    """Whether `ckpt`, loaded from the file `path`, holds supernet weights: a `supernet.pt`, or a
    training checkpoint whose run.json says it trained a supernet."""
    if isinstance(ckpt, dict) and ckpt.get("format") == SUPERNET_FORMAT:
        return True
    try:
        return "supernet" in json.loads((path.parent / "run.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, TypeError):
        return False  # no run record beside it (or not one): not a supernet's


def load_supernet(path: str | Path, ckpt: Any = None) -> Supernet:
    """A supernet from `supernet.pt`, or from a training run's `checkpoint.pt` (its space is read
    from the run.json beside it). `ckpt`: the file's contents if the caller has loaded them."""
    path = supernet_path(path)
    ckpt = load_checkpoint(path) if ckpt is None else ckpt
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict):
        raise UserError(f"{path}: not a supernet file or supernet training checkpoint")
    if ckpt.get("format") == SUPERNET_FORMAT:
        described, source = ckpt, str(path)
    else:
        run_file = path.parent / "run.json"
        try:
            described, source = json.loads(run_file.read_text(encoding="utf-8"))["supernet"], str(run_file)
        except FileNotFoundError:
            raise UserError(f"{path}: a training checkpoint needs its run.json beside it (not found)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
            raise UserError(f"{run_file}: not the run record of a supernet training") from None
    if not isinstance(described, dict):
        raise UserError(f"{source}: not the description of a supernet")
    stem_sharing = described.get("stem_sharing", "shared")
    if stem_sharing not in STEM_SHARING:
        raise UserError(f"{source}: stem_sharing {stem_sharing!r}, expected one of {', '.join(STEM_SHARING)}")
    supernet = Supernet(space_from_dict(described.get("space"), f"{path}: space"), stem_sharing=stem_sharing)
    state = ckpt["model"]
    expected = supernet.state_dict()
    bad = next((k for k in expected if k not in state or state[k].shape != expected[k].shape), None)
    if bad is not None or set(state) - set(expected):
        what = bad if bad is not None else sorted(set(state) - set(expected))[0]
        raise UserError(f"{path}: weights do not fit the supernet of its space (first mismatch: {what!r})")
    supernet.load_state_dict(state)
    return supernet.eval()


def warm_start(supernet: Supernet, source: Supernet) -> list[str]:
    """Copy into `supernet` every tensor `source` holds under the same name with the same shape: a
    few-shot sub-supernet (a space with fewer families in some stage) starts from the one-shot
    supernet's weights for the families it keeps. Returns the names left at their initial values
    (e.g. a head whose input changes when the sub-space has no Mobile-Former stage); UserError if
    nothing matched at all (the two spaces share no weights)."""
    theirs = source.state_dict()
    mine = supernet.state_dict()
    copied = {k: v for k, v in theirs.items() if k in mine and mine[k].shape == v.shape}
    if not copied:
        raise UserError("warm start: the supernets share no tensor of the same name and shape")
    supernet.load_state_dict({**mine, **copied})
    return sorted(set(mine) - set(copied))


def load_initial_weights(model: nn.Module, arch: ArchConfig, path: str | Path) -> str:
    """`--init-from`: a trained network's weights (exact fit), or a supernet (`supernet.pt`, its run
    folder or its `checkpoint.pt`), from which `arch` inherits its slice of the shared weights (it
    must be a member of the supernet's space). Returns what was loaded: 'weights' or 'supernet'."""
    path = Path(path)
    file = supernet_path(path)  # a folder: its supernet.pt or checkpoint.pt
    ckpt = load_checkpoint(file)
    if is_supernet_checkpoint(file, ckpt):
        load_weights_strict(model, path, load_supernet(file, ckpt).member_state(arch))
        return "supernet"
    if path.is_dir():  # only a supernet's run folder stands for its weights
        raise UserError(f"{path}: is a folder, expected a checkpoint file")
    load_weights_strict(model, path, state_dict_of(ckpt, path))
    return "weights"
