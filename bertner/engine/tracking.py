"""What a run leaves behind while it trains: metrics.jsonl and TensorBoard; and what it tells a view.

The view (`TrainView`) is whoever shows progress: the CLI passes one that draws a bar or writes log
lines (`bertner.cli._progress.TrainProgress`); without one, training shows nothing.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Callable, ContextManager, Iterator, Protocol

from bertner.engine.budget import TimeBudget
from bertner.runs import RunDir


class TrainView(Protocol):
    """What a progress display is told during a run (every method is called on the main process only)."""

    def start(self, total_steps: int | None, start_step: int, budget_seconds: float | None = None) -> None: ...
    def step(self, step: int, epoch: int, budget_elapsed: float | None = None) -> None: ...
    def train_logged(self, step: int, loss: float, lr: float, tokens_per_second: float, mfu: float | None) -> None: ...
    def evaluating(self, inputs: int) -> ContextManager[Callable[[int], None] | None]: ...
    def evaluated(self, record: dict[str, Any]) -> None: ...
    def stop(self) -> None: ...


class Tracker:
    """One place for every number a run reports, so the view, TensorBoard and files agree."""

    def __init__(self, run: RunDir, total_steps: int | None, enabled: bool = True, start_step: int = 0,
                 view: TrainView | None = None, budget: TimeBudget | None = None):
        """`budget`: a time budget ends the run, so the view counts its seconds rather than steps."""
        self.run = run
        self.enabled = enabled
        self.writer = None
        self.view = view if enabled else None
        self.budget = budget
        if not enabled:
            return
        # Imported here on purpose: TensorBoard's writer is slow to import, and only a training run needs it.
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run.tensorboard_dir), flush_secs=30)
        if self.view is not None:
            self.view.start(total_steps, start_step, budget.seconds if budget is not None else None)

    def step(self, step: int, epoch: int) -> None:
        if self.view is not None:
            self.view.step(step, epoch, self.budget.elapsed() if self.budget is not None else None)

    def log_train(
        self, step: int, loss: float, lrs: dict[str, float], tokens_per_second: float, mfu: float | None = None
    ) -> None:
        """`mfu`: model FLOPs utilisation per GPU, when the card's peak is known (never on CPU)."""
        if not self.enabled:
            return
        self.writer.add_scalar("train/loss", loss, step)
        for name, lr in lrs.items():
            self.writer.add_scalar(f"lr/{name}", lr, step)
        self.writer.add_scalar("train/tokens_per_second", tokens_per_second, step)
        if mfu is not None:
            self.writer.add_scalar("train/mfu", mfu, step)
        if self.view is not None:
            encoder_lr = lrs.get("encoder", next(iter(lrs.values())))
            self.view.train_logged(step, loss, encoder_lr, tokens_per_second, mfu)

    @contextmanager
    def evaluating(self, inputs: int) -> Iterator[Callable[[int], None] | None]:
        """Progress of one dev evaluation; yields the callback that counts inputs done (None: nobody counts)."""
        context = self.view.evaluating(inputs) if self.view is not None and inputs else nullcontext(None)
        with context as on_batch:
            yield on_batch

    def log_eval(self, record: dict[str, Any]) -> None:
        """Append one evaluation to metrics.jsonl and TensorBoard, and tell the view."""
        if not self.enabled:
            return
        self.run.append_metrics(record)
        step = record["step"]
        self.writer.add_scalar("dev/loss", record["dev_loss"], step)
        self.writer.add_scalar("dev/f1", record["micro"]["f1"], step)
        for label, scores in record["per_type"].items():
            self.writer.add_scalar(f"dev_f1/{label}", scores["f1"], step)
        self.writer.flush()
        if self.view is not None:
            self.view.evaluated(record)

    def close(self) -> None:
        if self.view is not None:
            self.view.stop()
        if self.writer is not None:
            self.writer.close()
