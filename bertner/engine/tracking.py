"""What a run shows and leaves behind while it trains: progress on screen, TensorBoard, metrics.jsonl."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bertner.console import err
from bertner.fileio import append_text
from bertner.progress import TaskProgress


class Tracker:
    """One place for every number a run reports, so the screen, TensorBoard and files agree."""

    def __init__(self, run_dir: Path, total_steps: int | None, enabled: bool = True, start_step: int = 0):
        """`total_steps` None: not known yet (a time budget); `set_total` gives it once it is."""
        self.run_dir = run_dir
        self.enabled = enabled
        self.writer = None
        self.progress: Progress | None = None
        self.task = None
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"), flush_secs=30)
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
        if self.progress is not None:
            self.progress.update(self.task, total=total_steps)

    def step(self, step: int, epoch: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, epoch=epoch)

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
        encoder_lr = lrs.get("encoder", next(iter(lrs.values())))
        mfu_text = f"  MFU {mfu:.1%}" if mfu is not None else ""
        self.progress.update(
            self.task, loss=f"{loss:.4f}", lr=f"{encoder_lr:.2e}", speed=f"{tokens_per_second:,.0f}", mfu=mfu_text
        )
        if self.plain:
            task = self.progress.tasks[0]
            eta = task.time_remaining
            err.print(
                f"step {step}/{'?' if task.total is None else f'{task.total:.0f}'}  loss {loss:.4f}  lr {encoder_lr:.2e}  {tokens_per_second:,.0f} tok/s"
                + mfu_text + (f"  eta {eta / 60:.1f} min" if eta else ""),
                highlight=False,
            )

    @contextmanager
    def evaluating(self, inputs: int) -> Iterator[Callable[[int], None] | None]:
        """Progress of one dev evaluation (minutes on a large dev set): a second bar on a terminal,
        a line every few seconds in a pipe (none for a quick one). Yields the callback that counts inputs done."""
        if not self.enabled or inputs == 0:
            yield None
            return
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

    def log_eval(self, record: dict[str, Any]) -> None:
        """Append one evaluation to metrics.jsonl and TensorBoard, and print its one-line summary."""
        if not self.enabled:
            return
        append_text(self.run_dir / "metrics.jsonl", json.dumps(record, ensure_ascii=False) + "\n")
        step = record["step"]
        self.writer.add_scalar("dev/loss", record["dev_loss"], step)
        self.writer.add_scalar("dev/f1", record["micro"]["f1"], step)
        for label, scores in record["per_type"].items():
            self.writer.add_scalar(f"dev_f1/{label}", scores["f1"], step)
        self.writer.flush()
        micro = record["micro"]
        best = " [green]best[/green]" if record.get("is_best") else ""
        message = (
            f"step {step} (epoch {record['epoch']}): dev loss {record['dev_loss']:.4f}  "
            f"P {micro['precision']:.4f}  R {micro['recall']:.4f}  F1 {micro['f1']:.4f}{best}"
        )
        if self.progress is not None:
            self.progress.console.print(message, highlight=False)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.writer is not None:
            self.writer.close()


def print_train_summary(summary: dict[str, Any]) -> None:
    """The end of a run: the best dev scores per type, and where everything was written."""
    from rich.table import Table

    from bertner.console import out

    per_type = summary.get("best_per_type") or {}
    if per_type:
        table = Table(title=f"best dev scores (step {summary['best_step']})", title_justify="left")
        for column in ("type", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "type" else "right")
        for label, s in sorted(per_type.items(), key=lambda kv: -kv[1]["support"]):
            table.add_row(label, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"]))
        table.add_row(
            "[bold]micro[/bold]", f"{summary['best_precision']:.4f}", f"{summary['best_recall']:.4f}",
            f"[bold]{summary['best_f1']:.4f}[/bold]", str(sum(s["support"] for s in per_type.values())),
        )
        out.print(table)
    f1 = "n/a (no dev set)" if summary.get("best_f1") is None else f"{summary['best_f1']:.4f}"
    out.print(
        f"{summary['variant']}: best dev F1 {f1} at step {summary['best_step']}; "
        f"{summary['train_seconds']:.0f} s, {summary['tokens_per_second']:,.0f} tokens/s; "
        f"run directory {summary['run_dir']}",
        highlight=False,
    )
    if summary.get("best_f1") == 0:
        out.print(zero_f1_hint(summary), highlight=False)


def zero_f1_hint(summary: dict[str, Any]) -> str:
    """Why a run scored 0 on every type, in one line: a newcomer's short run looks broken otherwise."""
    from bertner.console import plural

    steps = plural(summary.get("steps") or 0, "step")
    epochs = f" (--epochs {summary['epochs']} now)" if summary.get("epochs") else ""
    return (f"[yellow]why 0:[/yellow] this data needs more training than {steps} to learn any entity type; "
            f"train longer{epochs} or start from a pretrained encoder (--model FOLDER)")
