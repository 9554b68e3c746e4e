"""`bertner sweep`: every combination of a grid trained, one or several at a time (or a search's trials), then compared."""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import typer
from rich.live import Live
from rich.text import Text

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import err, out, plural
from bertner.cli._progress import LINE_EVERY_S, TrainProgress
from bertner.cli.compare import render_comparison
from bertner.cli.train import render_plan as render_train_plan
from bertner.errors import BertnerError
from bertner.runs import RunDir
from bertner.sweep import DONE, RESTART, RESUME, TODO, Sweep, run_sweep, run_worker, search_progress, sweep_status
from bertner.sweep_storage import DONE as FINISHED
from bertner.sweep_storage import FAILED, HEARTBEAT_SECONDS, RUNNING, STATES, RunRecord, StudyStatus
from bertner.sweep_worker import STORAGE_VARIABLE, WorkerProcess


@app.command(cls=Command, short_help="Train every combination of a grid, then compare.")
@user_errors
def sweep(
    config_file: Path = typer.Argument(..., metavar="GRID.yaml", help="YAML: base settings plus a grid of values to try (see examples/quickstart.yaml) or a search of ranges (examples/quickstart-search.yaml)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR", help="Folder for the runs (default: the file's `output`, else runs/<file name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their folders' state without training."),
    workers: int = typer.Option(1, "--workers", "-w", metavar="N", help="Runs trained at once, each in its own process: one GPU each where there are GPUs, else the CPU cores split between them."),
    storage: Optional[str] = typer.Option(None, "--storage", metavar="URL", envvar=STORAGE_VARIABLE, show_envvar=True, help="Where the sweep's runs are queued and tracked, shared by every machine that runs the same command: sqlite:///FILE or postgresql://USER@HOST/DB (default: sweep.db in the output folder)."),
    status: bool = typer.Option(False, "--status", help="Print each run's state from the storage (done, running with its step and best F1, pruned, failed, waiting) and exit."),
    heartbeat: int = typer.Option(HEARTBEAT_SECONDS, "--heartbeat", metavar="SECONDS", help="How often a worker records that it is alive; a run whose worker is silent 3 times as long is queued again."),
    trials: Optional[int] = typer.Option(None, "--trials", metavar="N", help="With a `search:` section: runs to sample per grid combination (Optuna's TPE; those already in the folder's study.db count)."),
    prune: bool = typer.Option(False, "--prune", help="With --trials: stop a run whose dev F1 at an evaluation is below the median of the finished runs' at that step."),
    worker: Optional[int] = typer.Option(None, "--worker", hidden=True, help="Run as worker K of a sweep its parent command started."),
) -> None:
    """Train every combination of a grid, skip finished runs, then compare.

    The runs are queued in a study (sweep.db in the output folder, or --storage): the same command started
    on several machines, or again after an interruption, shares it, and each run is trained once. A run
    whose worker was killed is queued again and goes on from its last checkpoint. With a `search:` section of
    ranges, --trials N samples N runs per grid combination instead (in this process).

    Examples:

    \b
      bertner sweep examples/quickstart.yaml
      bertner sweep examples/quickstart.yaml --workers 2
      bertner sweep examples/ruijin-study.yaml --storage postgresql://me@db/sweeps
      bertner sweep examples/quickstart.yaml --status
      bertner sweep examples/quickstart-search.yaml --trials 6 --prune
    """
    if sum([dry_run, status, worker is not None]) > 1:
        raise BertnerError("--dry-run, --status and --worker are different modes; give one")
    if status:
        render_status(sweep_status(config_file, output=output, storage=storage))
        return
    if worker is not None:
        run_worker(config_file, output, storage, heartbeat, worker)
        # Its runs are in their folders and the study by now. Skip the interpreter's teardown of torch and the
        # models (over a second), which the sweep's table would wait for.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    result = run_sweep(config_file, output=output, dry_run=dry_run, on_start=render_train_plan,
                       on_compared=render_comparison, view=TrainProgress(), workers=workers, storage=storage,
                       heartbeat=heartbeat, workers_view=WorkerLines(), trials=trials, prune=prune)
    if dry_run:
        render_plan(result.sweep, trials)


def render_plan(sweep: Sweep, trials: int | None = None) -> None:
    """--dry-run: each run and its status (to train, resume, restart, done with its dev F1), then the counts; with a
    search, each searched combination and how many of its trials are done."""
    statuses = [r.status() for r in sweep.runs]
    note = ""
    if sweep.collapsed:
        note = f" ({plural(sweep.collapsed, 'combination')} collapsed: {'; '.join(sweep.collapse_reasons)})"
    if sweep.searches:
        searched = ", ".join(sweep.space or ())
        out.print(f"search {sweep.source}: {plural(trials or 0, 'trial')} of {searched} for each of "
                  f"{plural(len(sweep.searches), 'combination')} (sampler_seed {sweep.sampler_seed}) in {sweep.output}",
                  markup=False, highlight=False, soft_wrap=True)
        progress = search_progress(sweep)
        width = max(len(combination.name) for combination, _ in progress)
        for combination, done in progress:
            out.print(f"  {done:>4} of {trials} done  {combination.name:<{width}}  ({', '.join(combination.space)})",
                      markup=False, highlight=False, soft_wrap=True)
        if not sweep.runs:
            return
    out.print(f"sweep {sweep.source}: {plural(len(sweep.runs), 'run')} in {sweep.output}{note}", markup=False, highlight=False,
              soft_wrap=True)
    width = max(len(r.name) for r in sweep.runs)
    for run, status in zip(sweep.runs, statuses):
        detail = ""
        if status == DONE:
            try:
                f1 = RunDir(run.run_dir).read_summary().best_f1
                detail = f"dev F1 {f1:.4f}" if f1 is not None else ""
            except BertnerError:
                pass
        elif status == RESUME:
            detail = "interrupted: goes on from its checkpoint"
        elif status == RESTART:
            detail = "unfinished: will be trained again from scratch"
        out.print(f"  {status:<9} {run.name:<{width}}  {detail}".rstrip(), markup=False, highlight=False, soft_wrap=True)
    counts = {s: statuses.count(s) for s in (TODO, RESUME, RESTART, DONE)}
    resumed = f", {counts[RESUME]} resumed" if counts[RESUME] else ""
    out.print(f"{counts[TODO] + counts[RESUME] + counts[RESTART]} to train ({counts[RESTART]} restarted{resumed}), "
              f"{counts[DONE]} done", markup=False, highlight=False)


# ----------------------------------------------------------------------------- the study's state

def worker_name(record: RunRecord) -> str:
    """`worker 2 (PID 4121)`, with the host when it is another machine's."""
    worker = record.worker or {}
    where = "" if worker.get("host") == socket.gethostname() else f" on {worker.get('host')}"
    return f"worker {worker.get('number', '?')}{where} (PID {worker.get('pid', '?')})"


def progress_text(record: RunRecord) -> str:
    """`step 40/120, best F1 0.4123` of a running run, as its worker last recorded it."""
    progress = record.progress or {}
    step, total, f1 = progress.get("step"), progress.get("total"), progress.get("best_f1")
    where = "setting up" if step is None else f"step {step:,}/{total:,}" if total else f"step {step:,}"
    return f"{where}, best F1 " + (f"{f1:.4f}" if f1 is not None else "-")


def counts_line(status: StudyStatus) -> str:
    counts = status.counts()
    return f"{plural(len(status.runs), 'run')}: " + ", ".join(f"{counts[state]} {state}" for state in STATES)


def render_status(status: StudyStatus) -> None:
    """--status: the study, each run's state with what is known of it, then the counts."""
    out.print(f"study {status.study} in {status.storage}", markup=False, highlight=False, soft_wrap=True)
    width = max((len(r.name) for r in status.runs), default=0)
    for record in status.runs:
        detail = ""
        if record.state == FINISHED:
            detail = f"dev F1 {record.value:.4f}" if record.value is not None else ""
            detail += f" ({record.outcome})" if record.outcome else ""
        elif record.state == RUNNING:
            detail = f"{progress_text(record)}; {worker_name(record)}"
        elif record.state == FAILED:
            detail = record.error or ""
        out.print(f"  {record.state:<8} {record.name:<{width}}  {detail}".rstrip(), markup=False, highlight=False,
                  soft_wrap=True)
    out.print(counts_line(status), markup=False, highlight=False)


class WorkerLines:
    """What worker processes show (`bertner.sweep_worker.WorkersView`): their own lines, each after its worker's
    number, and the study's progress, one line per running run and the counts: kept at the bottom of a terminal,
    printed every few seconds (when it changed) in a pipe or log."""

    def __init__(self) -> None:
        self.live: Live | None = None
        self.latest: list[str] = []
        self.printed: list[str] | None = None
        self.last = 0.0
        self.lock = threading.Lock()

    def started(self, workers: list[WorkerProcess]) -> None:
        for worker in workers:
            device = f", GPU {worker.device}" if worker.device is not None else ""
            err.print(f"worker {worker.number}: PID {worker.pid}, {plural(worker.threads, 'thread')}{device}",
                      markup=False, highlight=False)
        if err.is_terminal:
            self.live = Live(console=err, transient=True, refresh_per_second=2)
            self.live.start()

    def line(self, number: int, text: str) -> None:
        with self.lock:
            err.print(f"worker {number}: {text}", markup=False, highlight=False, soft_wrap=True)

    def progress(self, status: StudyStatus) -> None:
        lines = [f"  {worker_name(r)}: {r.name}, {progress_text(r)}" for r in status.running()]
        lines.append(f"sweep: {counts_line(status)}")
        self.latest = lines
        if self.live is not None:
            self.live.update(Text("\n".join(lines)))
            return
        now = time.monotonic()
        if lines != self.printed and now - self.last >= LINE_EVERY_S:
            with self.lock:
                for line in lines:
                    err.print(line, markup=False, highlight=False, soft_wrap=True)
            self.printed, self.last = lines, now

    def stop(self) -> None:
        """The counts as they ended, once."""
        if self.live is not None:
            self.live.stop()
            self.live = None
        if self.latest and (self.printed is None or self.printed[-1:] != self.latest[-1:]):
            err.print(self.latest[-1], markup=False, highlight=False, soft_wrap=True)
