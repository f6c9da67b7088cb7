"""Image-classification data: decode once into memory, augment whole batches with torch ops.

Two layouts are read:

- the proxy dataset (`../shared/data/imagenette2-64/`): `train-*.npz` / `test-*.npz` chunks holding
  `images` (uint8, N x H x W x 3) and `labels` (int64), plus `classes.json`;
- an ImageNet-style folder: `ROOT/train/<class>/*.jpg` (+ optional `ROOT/val/<class>/` or
  `ROOT/test/<class>/` as the test split), or simply `ROOT/<class>/*.jpg`, decoded with PIL and
  resized (shorter side, then centre crop) to `image_size`.

Everything is held as one uint8 NCHW tensor per split (the proxy takes 157 MiB), so a training
step costs one gather plus one batched `grid_sample`; no worker processes, no per-image Python.

A validation split is held out of train per class with a fixed seed, so it is the same in every
run; it is for model selection only. The test split is for final reports.

Batch order and augmentation are pure functions of (seed, epoch, batch index): a run resumed
mid-epoch regenerates exactly the batches it had not consumed, and `world_size` ranks each take
their slice of the same global batch, so a DDP run sees the data a single process would.
"""
from __future__ import annotations

import math
import os
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.errors import UserError, read_json

# Per-channel statistics of the proxy's train split (its README), RGB in [0, 1]. Used for every
# dataset: recomputing them per folder would make a model's input contract depend on its data.
MEAN = (0.4625, 0.4579, 0.4301)
STD = (0.2745, 0.2713, 0.2941)

VAL_FRACTION = 0.1  # of each train class, held out for validation
VAL_SEED = 0  # fixed, not the training seed: the validation set must not move between runs
RRC_SCALE = (0.35, 1.0)  # random-resized-crop area range; small images need gentle crops
RRC_RATIO = (3 / 4, 4 / 3)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"}


@dataclass(frozen=True)
class Split:
    """One split in memory: `images` uint8 (N, 3, H, W), `labels` int64 (N,)."""

    name: str
    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray, name: str | None = None) -> Split:
        index = torch.as_tensor(index, dtype=torch.long)
        return Split(name or self.name, self.images[index].contiguous(), self.labels[index].contiguous())


@dataclass(frozen=True)
class Dataset:
    """train (weights), val (held out of train: model selection), test (final report only)."""

    root: Path
    classes: tuple[str, ...]
    train: Split
    val: Split
    test: Split

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_size(self) -> int:
        return int(self.train.images.shape[-1])

    def describe(self) -> dict[str, object]:
        """What identifies the data a model was trained on (recorded with every run)."""
        return {"root": str(self.root), "classes": self.num_classes, "image_size": self.image_size,
                "train": len(self.train), "val": len(self.val), "test": len(self.test)}


def default_data_root() -> Path:
    """$HYBRID_NAS_DATA, else the shared proxy dataset next to the repository."""
    env = os.environ.get("HYBRID_NAS_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "imagenette2-64"


def load_dataset(root: str | os.PathLike[str] | None = None, image_size: int = 64,
                 val_fraction: float = VAL_FRACTION) -> Dataset:
    """Read a dataset folder (npz chunks or class sub-folders) and hold out the validation split.

    `image_size` applies to image folders only; npz chunks keep their stored size.
    """
    root = Path(root) if root is not None else default_data_root()
    if not root.is_dir():
        raise UserError(f"{root}: data folder not found (give a data folder, or set HYBRID_NAS_DATA)")
    if sorted(root.glob("train-*.npz")):
        classes, train, test = _read_npz_layout(root)
    else:
        classes, train, test = _read_folder_layout(root, image_size)
    train_idx, val_idx = holdout(train.labels, val_fraction, VAL_SEED)
    return Dataset(root.resolve(), classes, train.subset(train_idx), train.subset(val_idx, "val"), test)


def holdout(labels: torch.Tensor, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices per class: round(fraction * n) of each class (at least one when n > 1) go to
    the second part. Sorted, disjoint, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    labels_np = labels.numpy()
    keep, held = [], []
    for cls in np.unique(labels_np):
        members = np.flatnonzero(labels_np == cls)
        n_held = min(len(members) - 1, max(1, round(fraction * len(members)))) if fraction > 0 else 0
        members = rng.permutation(members)
        held.append(members[:n_held])
        keep.append(members[n_held:])
    return np.sort(np.concatenate(keep)), np.sort(np.concatenate(held))


# --- npz chunks ----------------------------------------------------------------------------------

def _read_npz_layout(root: Path) -> tuple[tuple[str, ...], Split, Split]:
    classes = _read_classes_json(root / "classes.json")
    train = _read_npz_split(root, "train", len(classes))
    test = _read_npz_split(root, "test", len(classes))
    if train.images.shape[1:] != test.images.shape[1:]:
        raise UserError(f"{root}: train images are {tuple(train.images.shape[1:])} but test images "
                        f"are {tuple(test.images.shape[1:])}")
    return classes, train, test


def _read_classes_json(path: Path) -> tuple[str, ...]:
    """classes.json: {"0": {"wnid": ..., "name": ...}, ...} (or {"0": "name"}) with keys 0..K-1."""
    data = read_json(path, "JSON class list",
                     missing="file not found (expected the class list next to the .npz chunks)")
    if not isinstance(data, dict) or sorted(data, key=str) != sorted(str(i) for i in range(len(data))) or not data:
        raise UserError(f"{path}: expected an object with keys \"0\"..\"K-1\"")
    entries = [data[str(i)] for i in range(len(data))]
    return tuple(e.get("name", str(i)) if isinstance(e, dict) else str(e) for i, e in enumerate(entries))


def _read_npz_split(root: Path, split: str, num_classes: int) -> Split:
    files = sorted(root.glob(f"{split}-*.npz"))
    if not files:
        raise UserError(f"{root}: no {split}-*.npz chunks")
    images, labels = zip(*(_read_npz_chunk(f, num_classes) for f in files))
    shapes = {im.shape[1:] for im in images}
    if len(shapes) > 1:
        raise UserError(f"{root}: {split} chunks hold images of different sizes {sorted(shapes)}")
    stacked = torch.from_numpy(np.concatenate(images)).permute(0, 3, 1, 2).contiguous()
    return Split(split, stacked, torch.from_numpy(np.concatenate(labels)))


def _read_npz_chunk(path: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """One chunk, checked: `images` uint8 (N, H, W, 3), `labels` int64 (N,) in [0, num_classes)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in ("images", "labels") if k not in npz.files]
            if missing:
                raise UserError(f"{path}: missing array {missing[0]!r} (expected 'images' and 'labels')")
            images, labels = npz["images"], npz["labels"]
    except (zipfile.BadZipFile, zlib.error, pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise UserError(f"{path}: not a readable .npz archive ({exc})") from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise UserError(f"{path}: 'images' is {images.dtype} {images.shape}, expected uint8 (N, H, W, 3)")
    if labels.dtype != np.int64 or labels.shape != images.shape[:1]:
        raise UserError(f"{path}: 'labels' is {labels.dtype} {labels.shape}, expected int64 ({images.shape[0]},)")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise UserError(f"{path}: labels span {labels.min()}..{labels.max()}, expected 0..{num_classes - 1}")
    return images, labels


# --- image folders -------------------------------------------------------------------------------

def _read_folder_layout(root: Path, image_size: int) -> tuple[tuple[str, ...], Split, Split]:
    """ROOT/train/<class>/ (+ ROOT/val|test/<class>/), or ROOT/<class>/ with a held-out test split."""
    if (root / "train").is_dir():
        classes, train = _read_class_folders(root / "train", "train", image_size)
        test_dir = next((root / d for d in ("test", "val") if (root / d).is_dir()), None)
        if test_dir is None:
            raise UserError(f"{root}: has train/ but no test/ or val/ folder for the test split")
        _, test = _read_class_folders(test_dir, "test", image_size, classes)
        return classes, train, test
    classes, pool = _read_class_folders(root, "train", image_size)
    train_idx, test_idx = holdout(pool.labels, VAL_FRACTION, VAL_SEED + 1)
    return classes, pool.subset(train_idx), pool.subset(test_idx, "test")


def _read_class_folders(folder: Path, split: str, image_size: int,
                        classes: tuple[str, ...] | None = None) -> tuple[tuple[str, ...], Split]:
    found = tuple(sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".")))
    if not found:
        raise UserError(f"{folder}: no class sub-folders and no train-*.npz chunks "
                        f"(expected CLASS/*.jpg folders or the npz layout)")
    if classes is not None and found != classes:
        extra = sorted(set(found) ^ set(classes))
        raise UserError(f"{folder}: class folders differ from train's (e.g. {extra[0]!r})")
    paths, labels = [], []
    for label, name in enumerate(found):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise UserError(f"{folder / name}: no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        paths += files
        labels += [label] * len(files)
    images = np.stack([_decode_image(p, image_size) for p in paths])
    return found, Split(split, torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
                        torch.tensor(labels, dtype=torch.long))


def _decode_image(path: Path, size: int) -> np.ndarray:
    """RGB, shorter side resized to `size` (Lanczos, as the proxy was made), centre-cropped square."""
    from PIL import Image, UnidentifiedImageError  # Pillow: only image-folder datasets need it, npz chunks do not

    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.LANCZOS)
            left, top = (w - size) // 2, (h - size) // 2
            return np.asarray(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot decode image ({exc})") from None


# --- batches -------------------------------------------------------------------------------------

def mix_seed(*parts: int) -> int:
    """A 63-bit seed from several integers (numpy SeedSequence: no collisions in practice)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1, np.uint64)[0] >> 1)


class Loader:
    """Batches of one split for one epoch, as (images float NCHW normalised, labels int64).

    `batch_size` is the global batch; each of `world_size` ranks yields its 1/world_size slice.
    Training batches are shuffled and augmented (random resized crop, horizontal flip) and the
    last incomplete batch is dropped so all ranks step together; evaluation batches are the whole
    split in order (rank r takes every world_size-th image), resized to `resolution`.
    `start_batch` skips batches already consumed (mid-epoch resume) without generating them.
    """

    def __init__(self, split: Split, resolution: int, batch_size: int, train: bool, seed: int = 0,
                 epoch: int = 0, rank: int = 0, world_size: int = 1, start_batch: int = 0,
                 scale: tuple[float, float] = RRC_SCALE, hflip: bool = True) -> None:
        if batch_size < world_size or batch_size % world_size:
            raise UserError(f"batch size {batch_size} is not a multiple of the world size {world_size}")
        if train and len(split) < batch_size:
            raise UserError(f"{split.name} split has {len(split)} images, fewer than one batch ({batch_size})")
        if not 0 < scale[0] <= scale[1] <= 1:
            raise UserError(f"crop scale {scale} must satisfy 0 < min <= max <= 1")
        self.split, self.resolution, self.batch_size, self.train = split, resolution, batch_size, train
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.start_batch, self.scale, self.hflip = start_batch, scale, hflip

    @property
    def num_batches(self) -> int:
        """Batches in the whole epoch (including any skipped by start_batch)."""
        if self.train:
            return len(self.split) // self.batch_size
        return math.ceil(len(self.split) / self.batch_size)

    def __len__(self) -> int:
        return max(0, self.num_batches - self.start_batch)

    def order(self) -> torch.Tensor:
        """This epoch's global image order: a permutation from (seed, epoch), or 0..N-1 for eval."""
        if not self.train:
            return torch.arange(len(self.split))
        gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch))
        return torch.randperm(len(self.split), generator=gen)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self.order()
        for b in range(self.start_batch, self.num_batches):
            index = order[b * self.batch_size:(b + 1) * self.batch_size]
            mine = slice(self.rank, None, self.world_size)
            images = self.split.images[index[mine]]
            if self.train:
                gen = torch.Generator().manual_seed(mix_seed(self.seed, self.epoch, b))
                theta = crop_transforms(len(index), gen, self.scale, self.hflip)[mine]
                images = random_resized_crop(images, theta, self.resolution)
            else:
                images = resize(images, self.resolution)
            yield normalize(images), self.split.labels[index[mine]]


def crop_transforms(n: int, gen: torch.Generator, scale: tuple[float, float] = RRC_SCALE,
                    hflip: bool = True) -> torch.Tensor:
    """(n, 2, 3) affine maps from output to input coordinates (affine_grid convention): a crop of
    area fraction U(scale) and log-uniform aspect ratio in RRC_RATIO, shrunk to fit inside the
    image (where torchvision would retry), at a uniform position, mirrored with probability 1/2."""
    u = torch.rand(n, 5, generator=gen, dtype=torch.float64)
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_lo, log_hi = math.log(RRC_RATIO[0]), math.log(RRC_RATIO[1])
    ratio = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])
    w = torch.sqrt(area * ratio).clamp(max=1.0)  # fractions of the image side
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # centre, normalised to [-1, 1], keeping the crop inside
    cy = (1 - h) * (2 * u[:, 3] - 1)
    flip = torch.where((u[:, 4] < 0.5) & hflip, -1.0, 1.0).to(torch.float64)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    return theta.float()


def random_resized_crop(images: torch.Tensor, theta: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, R, R) in [0, 255]: every crop in one grid_sample."""
    grid = F.affine_grid(theta, [images.shape[0], 3, resolution, resolution], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def resize(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float (B, 3, R, R) in [0, 255], antialiased when shrinking."""
    images = images.float()
    if images.shape[-2:] == (resolution, resolution):
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True,
                         align_corners=False)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """[0, 255] -> (x / 255 - MEAN) / STD per channel."""
    mean = torch.tensor(MEAN, dtype=images.dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, dtype=images.dtype).view(1, 3, 1, 1) * 255
    return (images - mean) / std

