"""The committed supernet recipe, shared by the ranking benchmark and the default accuracy predictor.

`nas supernet train --space proxy --epochs 10 --batch-size 64 --num-random 1 --seed 0 --keep-epochs`
on the shared proxy dataset (imagenette2-64, 64 px): sandwich rule, in-place distillation, AdamW +
cosine, label smoothing 0.1 (the command's defaults); each epoch's weights are kept for the ranking
benchmark's --trajectory. It fits in under an hour on this 2-core machine; running it again
resumes (or does nothing once done).
"""
from __future__ import annotations

import json
from pathlib import Path

from nas.cli.main import main as nas

SPACE, EPOCHS, BATCH, NUM_RANDOM = "proxy", 10, 64, 1


def train_supernet(runs: Path, data_root: Path, seed: int = 0, space: str = SPACE, epochs: int = EPOCHS,
                   batch_size: int = BATCH, num_random: int = NUM_RANDOM,
                   variant: dict[str, str] | None = None) -> tuple[Path, dict]:
    """(run folder, its metrics.json) after training or resuming the supernet; raises on failure.
    Another epoch count (the cosine schedule spans the whole run) or number of random members is
    another run: its own folder.
    `variant`: further `nas supernet train` options ({"kd-weight": "0"}), named in the folder."""
    variant = variant or {}
    name = f"supernet-{space}" + ("" if epochs == EPOCHS else f"-e{epochs}") + \
        ("" if num_random == NUM_RANDOM else f"-r{num_random}") + \
        "".join(f"-{key}{value}" for key, value in sorted(variant.items()))
    out = runs / name
    options = [arg for key, value in sorted(variant.items()) for arg in (f"--{key}", value)]
    code = nas(["supernet", "train", "--space", space, "--epochs", str(epochs), "--out", str(out),
                "--num-random", str(num_random), "--checkpoint-every", "50", "--keep-epochs", "--data", str(data_root),
                "--batch-size", str(batch_size), "--seed", str(seed), "--quiet", *options])
    if code:
        raise SystemExit(code)
    return out, json.loads((out / "metrics.json").read_text())
