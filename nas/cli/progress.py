"""The counting progress bar that long CLI jobs (table build, validation, predictor fit) share."""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def counting_bar(description: str, quiet: bool) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with count, elapsed time and ETA; yields the `progress(done, total)` callback
    that long jobs report to."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

    with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), "eta", TimeRemainingColumn(), disable=quiet) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
