"""The one progress bar of the CLI's long jobs (search, table build and pack, validation,
predictor fit): count, elapsed time, ETA and an optional status text."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Report = Callable[..., None]  # report(done, total=None, status=None)


@contextlib.contextmanager
def counting_bar(description: str, quiet: bool, total: int | None = None) -> Iterator[Report]:
    """Yields `report(done, total=None, status=None)`: jobs that learn their total as they go pass
    it each time, and a status (e.g. the best so far) replaces the last one."""
    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), "eta", TimeRemainingColumn(), TextColumn("{task.fields[status]}"),
                  disable=quiet) as bar:
        task = bar.add_task(description, total=total, status="")

        def report(done: int, total: int | None = None, status: str | None = None) -> None:
            fields = {"total": total} if total is not None else {}
            bar.update(task, completed=done, **fields, **({"status": status} if status is not None else {}))

        yield report
