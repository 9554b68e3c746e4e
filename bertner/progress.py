"""Progress of long work: a bar on a terminal, a plain line on stderr every few seconds in a pipe or log.

Counted in several units at once (characters and documents for `predict`); the first unit drives
the bar and the time estimate.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from bertner.console import err, out

LINE_EVERY_S = 10.0  # in a pipe: seconds between lines (a log should show life, not flood)


def clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class TaskProgress:
    """Counts done against totals per unit; shows them as a rich bar or as periodic plain lines."""

    def __init__(self, what: str, totals: dict[str, int]):
        self.what = what
        self.totals = dict(totals)
        self.done = dict.fromkeys(totals, 0)
        self.main = next(iter(totals))
        self.started = time.monotonic()
        self.last_line = self.started
        self.shown: dict[str, int] | None = None  # the counts of the last plain line
        self.bar = None
        self.task = None

    def advance(self, unit: str, amount: int) -> None:
        self.done[unit] = min(self.totals[unit], self.done[unit] + amount)
        if self.bar is not None:
            self.bar.update(self.task, completed=self.done[self.main], others=self.others())
        elif time.monotonic() - self.last_line >= LINE_EVERY_S:
            self.print_line()

    def others(self) -> str:
        return ", ".join(f"{self.done[u]:,} / {self.totals[u]:,} {u}" for u in self.totals if u != self.main)

    def print_line(self) -> None:
        now = time.monotonic()
        elapsed = now - self.started
        share = self.done[self.main] / self.totals[self.main] if self.totals[self.main] else 1.0
        parts = [f"{self.done[self.main]:,} / {self.totals[self.main]:,} {self.main} ({share:.0%})"]
        if self.others():
            parts.append(self.others())
        parts.append(f"{clock(elapsed)} elapsed")
        if 0 < share < 1:
            parts.append(f"about {clock(elapsed * (1 - share) / share)} left")
        err.print(f"{self.what}: " + ", ".join(parts), highlight=False, soft_wrap=True)
        self.last_line, self.shown = now, dict(self.done)

    def finish(self) -> None:
        """A last line at the end of a pipe's log, if it showed any: the log ends where the work did."""
        if self.bar is None and self.shown is not None and self.shown != self.done:
            self.print_line()


@contextmanager
def task_progress(what: str, totals: dict[str, int]) -> Iterator[TaskProgress]:
    """Progress for work measured in `totals` (unit -> amount); the bar disappears when done."""
    progress = TaskProgress(what, totals)
    # On a terminal stdout the bar shares its console with the results, which then print above it;
    # results going to a file or pipe are left alone and the bar goes to a terminal stderr.
    console = out if out.is_terminal else err if err.is_terminal else None
    if console is None:
        yield progress
        progress.finish()
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(
        TextColumn(what), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} " + progress.main),
        TextColumn("{task.fields[others]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, redirect_stdout=console is out, redirect_stderr=False,
    ) as bar:
        progress.bar, progress.task = bar, bar.add_task(what, total=progress.totals[progress.main], others=progress.others())
        yield progress
