"""Data pipeline: the real proxy dataset, image folders, clear errors, augmentation, data order."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas.data import MEAN, STD, Loader, Split, crop_transforms, default_data_root, holdout, load_dataset, normalize
from nas.errors import UserError

REAL = default_data_root()
needs_real = pytest.mark.skipif(not (REAL / "train-000.npz").exists(), reason=f"no proxy dataset at {REAL}")


def write_subset(dst: Path, train_per_class: int = 30, test_per_class: int = 10) -> Path:
    """A small copy of the real proxy in the same npz layout (train in two chunks), for fast tests."""
    dst.mkdir(parents=True, exist_ok=True)
    for split, per_class, chunks in (("train", train_per_class, 2), ("test", test_per_class, 1)):
        with np.load(REAL / f"{split}-000.npz", allow_pickle=False) as npz:
            images, labels = npz["images"], npz["labels"]
        pick = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
        for i, part in enumerate(np.array_split(pick, chunks)):
            np.savez_compressed(dst / f"{split}-{i:03d}.npz", images=images[part], labels=labels[part])
    (dst / "classes.json").write_text((REAL / "classes.json").read_text())
    return dst


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    if not (REAL / "train-000.npz").exists():
        pytest.skip(f"no proxy dataset at {REAL}")
    return write_subset(tmp_path_factory.mktemp("small"))


def _fingerprints(images: torch.Tensor) -> set[str]:
    return {hashlib.sha1(im.numpy().tobytes()).hexdigest() for im in images}


@needs_real
def test_real_dataset_counts_shapes_and_a_disjoint_fixed_val_split():
    data = load_dataset(REAL)
    assert data.classes[0] == "tench" and data.num_classes == 10
    assert len(data.train) + len(data.val) == 9469 and len(data.test) == 3925
    assert data.train.images.shape[1:] == (3, 64, 64) and data.train.images.dtype == torch.uint8
    assert data.test.labels.dtype == torch.int64
    val_per_class = torch.bincount(data.val.labels, minlength=10)
    all_per_class = val_per_class + torch.bincount(data.train.labels, minlength=10)
    assert torch.all((val_per_class - 0.1 * all_per_class).abs() <= 1)
    assert not _fingerprints(data.train.images) & _fingerprints(data.val.images)


def test_holdout_is_per_class_disjoint_covering_and_seeded():
    labels = torch.tensor([0] * 20 + [1] * 7 + [2] * 2)
    keep, held = holdout(labels, 0.1, seed=0)
    assert sorted(np.concatenate([keep, held]).tolist()) == list(range(29))
    assert np.bincount(labels[held].numpy()).tolist() == [2, 1, 1]
    assert np.array_equal(held, holdout(labels, 0.1, seed=0)[1])
    assert not np.array_equal(held, holdout(labels, 0.1, seed=1)[1])


def test_small_npz_layout_loads(small):
    data = load_dataset(small)
    assert (len(data.train), len(data.val), len(data.test)) == (270, 30, 100)
    assert data.describe()["image_size"] == 64


def test_image_folder_layout(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("val", 2)):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 255, (40 + i, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    data = load_dataset(tmp_path, image_size=32)
    assert data.classes == ("cat", "dog")
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert (len(data.train), len(data.val), len(data.test)) == (10, 2, 4)

    (tmp_path / "train" / "dog" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(UserError, match="broken.jpg: cannot decode image"):
        load_dataset(tmp_path, image_size=32)


def _corrupt(small: Path, tmp_path: Path, **arrays) -> Path:
    root = tmp_path / "bad"
    root.mkdir()
    (root / "classes.json").write_text((small / "classes.json").read_text())
    for f in small.glob("*.npz"):
        (root / f.name).write_bytes(f.read_bytes())
    np.savez(root / "train-001.npz", **arrays)
    return root


@pytest.mark.parametrize("arrays, expected", [
    ({"images": np.zeros((4, 64, 64, 3), np.uint8)}, "missing array 'labels'"),
    ({"images": np.zeros((4, 64, 64, 3), np.float32), "labels": np.zeros(4, np.int64)}, "expected uint8 (N, H, W, 3)"),
    ({"images": np.zeros((4, 64, 64), np.uint8), "labels": np.zeros(4, np.int64)}, "expected uint8 (N, H, W, 3)"),
    ({"images": np.zeros((4, 64, 64, 3), np.uint8), "labels": np.zeros(3, np.int64)}, "expected int64 (4,)"),
    ({"images": np.zeros((4, 64, 64, 3), np.uint8), "labels": np.full(4, 10, np.int64)}, "expected 0..9"),
])
def test_bad_npz_arrays_name_the_file_and_what_was_expected(small, tmp_path, arrays, expected):
    root = _corrupt(small, tmp_path, **arrays)
    with pytest.raises(UserError) as exc:
        load_dataset(root)
    assert "train-001.npz" in str(exc.value) and expected in str(exc.value)


def test_broken_zip_missing_classes_and_missing_folders(small, tmp_path):
    root = _corrupt(small, tmp_path, images=np.zeros((1, 64, 64, 3), np.uint8), labels=np.zeros(1, np.int64))
    data = (root / "train-000.npz").read_bytes()
    (root / "train-000.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="train-000.npz: not a readable .npz archive"):
        load_dataset(root)
    (root / "classes.json").unlink()
    with pytest.raises(UserError, match="classes.json: file not found"):
        load_dataset(root)
    with pytest.raises(UserError, match="data folder not found"):
        load_dataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no class sub-folders"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "empty" / "cls").mkdir()
    with pytest.raises(UserError, match="cls: no images"):
        load_dataset(tmp_path / "empty")


def _split(n: int = 64) -> Split:
    gen = torch.Generator().manual_seed(0)
    return Split("train", torch.randint(0, 256, (n, 3, 64, 64), dtype=torch.uint8, generator=gen),
                 torch.arange(n) % 10)


@pytest.mark.parametrize("resolution", [32, 64, 96])
def test_augmented_batches_have_the_right_shape_and_range(resolution):
    images, labels = next(iter(Loader(_split(), resolution, 16, train=True)))
    assert images.shape == (16, 3, resolution, resolution) and images.dtype == torch.float32
    lo = (0 - torch.tensor(MEAN)) / torch.tensor(STD)
    hi = (1 - torch.tensor(MEAN)) / torch.tensor(STD)
    per_channel = images.transpose(0, 1).reshape(3, -1)
    assert torch.all(per_channel.min(1).values >= lo - 1e-4) and torch.all(per_channel.max(1).values <= hi + 1e-4)
    assert labels.shape == (16,) and labels.dtype == torch.int64


def test_eval_batches_are_the_normalised_images_in_order():
    split = _split(40)
    batches = list(Loader(split, 64, 16, train=False))
    assert [len(y) for _, y in batches] == [16, 16, 8]
    images = torch.cat([x for x, _ in batches])
    assert torch.allclose(images, normalize(split.images.float()))
    assert torch.equal(torch.cat([y for _, y in batches]), split.labels)


def test_crops_stay_inside_the_image_and_half_are_mirrored():
    theta = crop_transforms(4000, torch.Generator().manual_seed(0), scale=(0.35, 1.0))
    w, h = theta[:, 0, 0].abs(), theta[:, 1, 1]
    assert torch.all(theta[:, 0, 2].abs() + w <= 1 + 1e-6) and torch.all(theta[:, 1, 2].abs() + h <= 1 + 1e-6)
    assert torch.all(w * h <= 1 + 1e-6) and torch.all(w * h >= 0.3)
    assert 0.45 < (theta[:, 0, 0] < 0).float().mean() < 0.55


def _batches(**kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(Loader(_split(), 32, 8, train=True, **kw))


def _same(a, b) -> bool:
    return len(a) == len(b) and all(torch.equal(x, y) and torch.equal(u, v) for (x, u), (y, v) in zip(a, b))


def test_data_order_is_a_function_of_seed_and_epoch():
    reference = _batches(seed=3, epoch=1)
    assert _same(reference, _batches(seed=3, epoch=1))
    assert not _same(reference, _batches(seed=3, epoch=2))
    assert not _same(reference, _batches(seed=4, epoch=1))
    assert _same(reference[3:], _batches(seed=3, epoch=1, start_batch=3))  # mid-epoch resume


def test_ranks_split_the_same_global_batches():
    whole = _batches(seed=1)
    ranks = [_batches(seed=1, rank=r, world_size=2) for r in range(2)]
    for b, (images, labels) in enumerate(whole):
        assert torch.equal(images[0::2], ranks[0][b][0]) and torch.equal(images[1::2], ranks[1][b][0])
        assert torch.equal(labels[1::2], ranks[1][b][1])


def test_loader_refuses_impossible_batches():
    with pytest.raises(UserError, match="not a multiple of the world size"):
        Loader(_split(), 32, 7, train=True, world_size=2)
    with pytest.raises(UserError, match="fewer than one batch"):
        Loader(_split(8), 32, 16, train=True)


def test_classes_json_must_list_classes(small, tmp_path):
    root = _corrupt(small, tmp_path, images=np.zeros((1, 64, 64, 3), np.uint8), labels=np.zeros(1, np.int64))
    (root / "classes.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(UserError, match="classes.json: expected an object"):
        load_dataset(root)
