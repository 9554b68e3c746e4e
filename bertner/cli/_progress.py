"""Progress of long work: a bar on a terminal, a plain line on stderr every few seconds in a pipe or log.

Counted in several units at once (characters and documents for `predict`); the first unit drives
the bar and the time estimate.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator

from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from bertner.cli._console import err, out

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
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn(what), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} " + progress.main),
        TextColumn("{task.fields[others]}"), TimeElapsedColumn(), TimeRemainingColumn(),
        console=console, transient=True, redirect_stdout=console is out, redirect_stderr=False,
    ) as bar:
        progress.bar, progress.task = bar, bar.add_task(what, total=progress.totals[progress.main], others=progress.others())
        yield progress


def epochs(done: float) -> str:
    """`1.81 epochs`, `1 epoch`: how far training got, counted, not the number of the epoch in progress."""
    return f"{done:g} epoch" + ("" if done == 1 else "s")


class TrainProgress:
    """A training run's progress (`bertner.engine.tracking.TrainView`): a bar on a terminal, log lines in a pipe.

    The bar counts steps towards the planned total, or, with a time budget, seconds towards the budget
    (how many steps fit in it is not known in advance).
    """

    def __init__(self) -> None:
        self.progress = None
        self.task = None
        self.plain = False
        self.total_steps: int | None = None
        self.budget_seconds: float | None = None
        self.budget_elapsed = 0.0

    def start(self, total_steps: int | None, start_step: int, budget_seconds: float | None = None) -> None:
        # Redirected to a file, a progress bar shows nothing until the end: print log lines instead.
        self.plain = not err.is_terminal
        self.total_steps, self.budget_seconds = total_steps, budget_seconds
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            TextColumn("{task.fields[done]}"),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s{task.fields[mfu]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.progress.start()
        total, completed = (budget_seconds, 0.0) if budget_seconds else (total_steps, start_step)
        self.task = self.progress.add_task(
            "train", total=total, completed=completed, done=self.done(start_step), epoch="-", loss="-", lr="-",
            speed="-", mfu="",
        )

    def done(self, step: int) -> str:
        """`120/360` steps, or with a time budget `0:01:10 / 0:03:00, step 120`."""
        if self.budget_seconds:
            return f"{self.budget_clock()}, step {step:,}"
        return f"{step:,}/{self.total_steps:,}" if self.total_steps else f"{step:,}"

    def budget_clock(self) -> str:
        return f"{clock(self.budget_elapsed)} / {clock(self.budget_seconds or 0)}"

    def step(self, step: int, epoch: int, budget_elapsed: float | None = None) -> None:
        if self.budget_seconds:
            self.budget_elapsed = min(budget_elapsed or 0.0, self.budget_seconds)
        completed = self.budget_elapsed if self.budget_seconds else step
        self.progress.update(self.task, completed=completed, epoch=epoch, done=self.done(step))

    def train_logged(self, step: int, loss: float, lr: float, tokens_per_second: float, mfu: float | None) -> None:
        mfu_text = f"  MFU {mfu:.1%}" if mfu is not None else ""
        self.progress.update(self.task, loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{tokens_per_second:,.0f}", mfu=mfu_text)
        if self.plain:
            if self.budget_seconds:
                where, left = f"step {step}", f"  {self.budget_clock()} of the time budget"
            else:
                eta = self.progress.tasks[0].time_remaining
                where = f"step {step}/{self.total_steps or '?'}"
                left = f"  eta {eta / 60:.1f} min" if eta else ""
            err.print(
                f"{where}  loss {loss:.4f}  lr {lr:.2e}  {tokens_per_second:,.0f} tok/s" + mfu_text + left,
                highlight=False,
            )

    @contextmanager
    def evaluating(self, inputs: int) -> Iterator[Callable[[int], None]]:
        """Progress of one dev evaluation (minutes on a large dev set): a second bar on a terminal,
        a line every few seconds in a pipe (none for a quick one). Yields the callback that counts inputs done."""
        if not self.plain:
            task = self.progress.add_task("dev", total=inputs, epoch="dev", done=f"0/{inputs:,}", loss="-", lr="-",
                                          speed="-", mfu="")
            counted = [0]

            def advance(n: int) -> None:
                counted[0] += n
                self.progress.update(task, completed=counted[0], done=f"{counted[0]:,}/{inputs:,}")

            try:
                yield advance
            finally:
                self.progress.remove_task(task)
            return
        counter = TaskProgress("evaluating on dev", {"inputs": inputs})
        yield lambda n: counter.advance("inputs", n)
        counter.finish()

    def evaluated(self, record: dict[str, Any]) -> None:
        micro = record["micro"]
        best = " [green]best[/green]" if record.get("is_best") else ""
        self.progress.console.print(
            f"step {record['step']} ({epochs(record['epoch'])}): dev loss {record['dev_loss']:.4f}  "
            f"P {micro['precision']:.4f}  R {micro['recall']:.4f}  F1 {micro['f1']:.4f}{best}",
            highlight=False,
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
