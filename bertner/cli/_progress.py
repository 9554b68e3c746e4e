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
    MofNCompleteColumn,
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


class TrainProgress:
    """A training run's progress (`bertner.engine.tracking.TrainView`): a bar on a terminal, log lines in a pipe."""

    def __init__(self) -> None:
        self.progress = None
        self.task = None
        self.plain = False

    def start(self, total_steps: int | None, start_step: int) -> None:
        # Redirected to a file, a progress bar shows nothing until the end: print log lines instead.
        self.plain = not err.is_terminal
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s{task.fields[mfu]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=start_step, epoch="-", loss="-", lr="-", speed="-", mfu=""
        )

    def set_total(self, total_steps: int) -> None:
        self.progress.update(self.task, total=total_steps)

    def step(self, step: int, epoch: int) -> None:
        self.progress.update(self.task, completed=step, epoch=epoch)

    def train_logged(self, step: int, loss: float, lr: float, tokens_per_second: float, mfu: float | None) -> None:
        mfu_text = f"  MFU {mfu:.1%}" if mfu is not None else ""
        self.progress.update(self.task, loss=f"{loss:.4f}", lr=f"{lr:.2e}", speed=f"{tokens_per_second:,.0f}", mfu=mfu_text)
        if self.plain:
            task = self.progress.tasks[0]
            eta = task.time_remaining
            err.print(
                f"step {step}/{'?' if task.total is None else f'{task.total:.0f}'}  loss {loss:.4f}  lr {lr:.2e}  "
                f"{tokens_per_second:,.0f} tok/s" + mfu_text + (f"  eta {eta / 60:.1f} min" if eta else ""),
                highlight=False,
            )

    @contextmanager
    def evaluating(self, inputs: int) -> Iterator[Callable[[int], None]]:
        """Progress of one dev evaluation (minutes on a large dev set): a second bar on a terminal,
        a line every few seconds in a pipe (none for a quick one). Yields the callback that counts inputs done."""
        if not self.plain:
            task = self.progress.add_task("dev", total=inputs, epoch="dev", loss="-", lr="-", speed="-", mfu="")
            try:
                yield lambda n: self.progress.advance(task, n)
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
            f"step {record['step']} (epoch {record['epoch']}): dev loss {record['dev_loss']:.4f}  "
            f"P {micro['precision']:.4f}  R {micro['recall']:.4f}  F1 {micro['f1']:.4f}{best}",
            highlight=False,
        )

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
