"""`train --time-budget MINUTES`: train for a wall-clock budget, with the schedule planned for it.

Equal compute is how a CPU user works ("the best model in 25 minutes") and how a fair study
compares variants. The budget counts everything from the first training step to the end of the
final evaluation: steps, evaluations and checkpoints. Training stops early enough for the final
evaluation to fit (its length is the last evaluation's, or an estimate before the first one).

The learning-rate schedule runs on the clock: warm-up over the first `warmup_ratio` of the
usable time, then linear decay to zero when the time is up, so the rate reaches zero where
training ends however fast this machine turns out to be. Runs with a budget are therefore not
repeatable step for step, as their number of steps depends on the machine's speed.
"""

from __future__ import annotations

import time


class TimeBudget:
    """The wall-clock budget of `--time-budget`: time used, and the steps it still allows."""

    def __init__(self, minutes: float, final_evaluations: int = 1):
        self.seconds = minutes * 60.0
        self.final_evaluations = final_evaluations  # 2 with --swa: the last weights' and the average's
        self.started: float | None = None  # the clock runs from `start`, at the first step
        self.evaluation_seconds: float | None = None  # how long the last evaluation took
        self.evaluation_estimate = 0.0  # until one has run: set by the trainer from its speed

    def start(self, used_seconds: float = 0.0) -> None:
        """Start the clock; a resumed run passes the seconds it had already used."""
        self.started = time.perf_counter() - used_seconds

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started

    def reserve(self) -> float:
        """Time kept for the final evaluations."""
        one = self.evaluation_seconds if self.evaluation_seconds is not None else self.evaluation_estimate
        return one * self.final_evaluations

    def usable(self) -> float:
        return max(1e-9, self.seconds - self.reserve())

    def progress(self) -> float:
        """Share of the training time used, 0 to 1: what the learning-rate schedule follows."""
        return min(1.0, self.elapsed() / self.usable())

    def exhausted(self) -> bool:
        return self.elapsed() >= self.usable()

    def note_evaluation(self, seconds: float) -> None:
        self.evaluation_seconds = seconds
