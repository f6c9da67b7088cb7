"""A rich progress bar over optimizer steps (ETA, loss, lr), shown on the main rank only."""
from __future__ import annotations

from types import TracebackType

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class StepProgress:
    """Context manager; `update(step, loss, lr)` after each step, `note(text)` for epoch lines."""

    def __init__(self, total: int, completed: int, enabled: bool) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("steps"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[status]}"), disable=not enabled, transient=False)
        self.task = self.progress.add_task("train", total=total, completed=completed, status="")

    def __enter__(self) -> StepProgress:
        self.progress.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.progress.stop()

    def update(self, step: int, loss: float, lr: float) -> None:
        self.progress.update(self.task, completed=step, status=f"loss {loss:.4f}  lr {lr:.2e}")

    def note(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(text)
