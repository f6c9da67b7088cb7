"""metrics.jsonl (one JSON object per logged step and per epoch) and the curves PNG.

Lines are appended and flushed as they happen, so a killed run keeps its history. On resume the
log is cut back to the checkpoint's step (lines past it, and a half-written last line, belong to
work that is about to be redone), so the file always reads as one uninterrupted run.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nas.atomic import atomic_write, atomic_write_text, read_json_lines


class MetricsLog:
    """Append-only JSONL of records that each carry `kind` ('step' or 'epoch') and `step`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []

    def resume(self, upto_step: int) -> None:
        """Keep the records with step <= upto_step (the checkpoint's), drop the rest."""
        kept = [r for r in read_json_lines(self.path)  # a line cut short by a kill is skipped
                if isinstance(r, dict) and r.get("step", 0) <= upto_step]
        self.records = kept
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
            fh.flush()


def plot_curves(records: list[dict[str, Any]], path: Path, title: str = "") -> None:
    """Training loss (per logged step, on an epoch axis) and val loss/accuracy per epoch."""
    # matplotlib: ~0.5 s, only when curves.png is drawn; Figure, not pyplot: no global backend or figure state
    from matplotlib.figure import Figure

    steps = [r for r in records if r.get("kind") == "step"]
    epochs = [r for r in records if r.get("kind") == "epoch"]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_acc = fig.subplots(1, 2)
    ax_loss.plot([r["epoch_progress"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.6,
                 label="train (step)")
    ax_loss.plot([r["epoch"] for r in epochs], [r["train_loss"] for r in epochs], "o-", label="train (epoch)")
    ax_loss.plot([r["epoch"] for r in epochs], [r["val_loss"] for r in epochs], "s-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    ax_acc.plot([r["epoch"] for r in epochs], [100 * r["val_acc"] for r in epochs], "o-", color="C2")
    ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="validation accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
