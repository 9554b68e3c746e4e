"""Sweep workers: each takes a waiting run from the sweep's storage (`bertner.sweep_storage`), trains it and
reports it, until no run waits and none runs anywhere (one running elsewhere may be lost and queued again).

For each run a worker takes the run folder's lock first and decides under it: a finished run is recorded as
done, a folder with a checkpoint goes on from it (as `train --resume`; from scratch if the checkpoint cannot be
used), an unfinished one without is trained again from scratch, and a folder another process is training is
left for later. A training error fails the run and the worker goes on; a signal (SIGTERM, Ctrl-C) stops the
run at a checkpoint, hands it back to the queue, and the worker claims nothing more. Any other error hands the
run back and stops the worker.

`--workers 1` runs one worker in the command's own process. `--workers N` starts N processes
(`python -m bertner sweep GRID --worker K`), each with its share of the CPU cores (OMP_NUM_THREADS) and, with
GPUs, its own device (CUDA_VISIBLE_DEVICES), and watches them (`run_worker_processes`).
"""

from __future__ import annotations

import copy
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

from bertner.engine.tracking import TrainView
from bertner.engine.trainer import Trainer
from bertner.errors import LockedError, OutputError, RunError, TrainingError
from bertner.lock import FolderLock
from bertner.runs import Summary
from bertner.sweep import DONE, RESTART, RESUME, SweepRun, finished_f1
from bertner.sweep_storage import GRACE_HEARTBEATS, Claim, StudyStatus, SweepStorage, machine_id

log = logging.getLogger(__name__)

STORAGE_VARIABLE = "BERTNER_SWEEP_STORAGE"  # how a worker process gets the URL (kept out of the process list)
REFRESH_SECONDS = 2.0  # how often the parent reads the study for its progress lines
# How often an idle worker looks for a run again. Not its heartbeat (10 s by default): the last run
# finishing elsewhere would keep this worker, and the whole sweep, waiting for up to one heartbeat.
POLL_SECONDS = 1.0  # cheap for the storage even with many idle workers on a cluster


def worker_identity(number: int, parent: int | None = None) -> dict[str, Any]:
    """Who runs a trial, as the study records it: host, machine (host + boot), PID, number, parent PID."""
    return {"host": socket.gethostname(), "machine": machine_id(), "pid": os.getpid(), "number": number,
            "parent": parent if parent is not None else os.getpid()}


class Plan(Protocol):
    """Where a claimed trial's run and settings come from. The grid's plan finds the run by name; a sampler's
    plan would build one from the trial's suggested settings."""

    def run_for(self, claim: Claim) -> tuple[SweepRun, str]:
        """(the SweepRun to train, how log lines name it: `[2/4] tiny-crf-seed1`)."""
        ...


class Stopped(Exception):
    """A signal stopped the worker before or during a run (not an error: the run goes back to the queue)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class ProgressNote:
    """A TrainView that notes how far the run got (for the study), passing everything on to `inner`."""

    def __init__(self, inner: TrainView | None = None):
        self.inner = inner
        self.at_step = 0
        self.total: int | None = None
        self.best_f1: float | None = None

    def snapshot(self) -> dict[str, Any]:
        return {"step": self.at_step, "total": self.total, "best_f1": self.best_f1}

    def start(self, total_steps: int | None, start_step: int, budget_seconds: float | None = None) -> None:
        self.total, self.at_step = total_steps, start_step
        if self.inner is not None:
            self.inner.start(total_steps, start_step, budget_seconds)

    def step(self, step: int, epoch: int, budget_elapsed: float | None = None) -> None:
        self.at_step = step
        if self.inner is not None:
            self.inner.step(step, epoch, budget_elapsed)

    def train_logged(self, step: int, loss: float, lr: float, tokens_per_second: float, mfu: float | None) -> None:
        if self.inner is not None:
            self.inner.train_logged(step, loss, lr, tokens_per_second, mfu)

    def evaluating(self, inputs: int):
        return self.inner.evaluating(inputs) if self.inner is not None else nullcontext(None)

    def evaluated(self, record: dict[str, Any]) -> None:
        f1 = record["micro"]["f1"]
        self.best_f1 = f1 if self.best_f1 is None else max(self.best_f1, f1)
        if self.inner is not None:
            self.inner.evaluated(record)

    def stop(self) -> None:
        if self.inner is not None:
            self.inner.stop()


class Heartbeat:
    """While a run trains: its heartbeat and progress into the study every `storage.heartbeat` seconds.

    `parent`: a worker process's parent; if it goes away (killed), the worker is sent SIGTERM, so its run
    stops at a checkpoint and goes back to the queue instead of training on unwatched.
    """

    def __init__(self, storage: SweepStorage, claim: Claim | None, note: ProgressNote | None, parent: int | None):
        self.storage, self.claim, self.note, self.parent = storage, claim, note, parent
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sweep-heartbeat", daemon=True)
        self._warned = False

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        shown = None
        while not self._stop.wait(self.storage.heartbeat):
            if self.parent is not None and os.getppid() != self.parent:
                os.kill(os.getpid(), signal.SIGTERM)
                self.parent = None
            if self.claim is None:
                continue
            progress = self.note.snapshot() if self.note is not None else None
            try:
                self.storage.beat(self.claim, progress if progress != shown else None)
                shown = progress
            except Exception as e:  # a storage that is away for a while: the run goes on, said once
                if not self._warned:
                    log.warning(f"cannot record the heartbeat of {self.claim.run} ({e}); still trying")
                    self._warned = True


class Worker:
    """Claims runs from `storage` and trains them (`run`), in this process."""

    def __init__(self, plan: Plan, storage: SweepStorage, identity: dict[str, Any],
                 on_start: Callable[[Trainer], None] | None = None, view: TrainView | None = None,
                 watch_parent: bool = False):
        """`on_start` and `view` go to each Trainer; `watch_parent`: a worker process, stopped if its parent goes."""
        self.plan, self.storage, self.identity = plan, storage, identity
        self.on_start, self.view = on_start, view
        self.parent = os.getppid() if watch_parent else None
        self.trained: list[str] = []
        self.skipped: list[str] = []
        self.failed: dict[str, str] = {}  # run -> its training error
        self.stop_signal: str | None = None
        self.stopped_run: tuple[str, str] | None = None  # (name, `[2/4] name`) of the run a signal stopped
        self._wake = threading.Event()
        self._later: set[str] = set()  # runs whose folder another process trains: claimed again after a wait

    def run(self) -> None:
        """Claim and train runs until none waits or runs anywhere, or a signal stops the worker."""
        waiting_said = False
        watch = Heartbeat(self.storage, None, None, self.parent) if self.parent is not None else nullcontext()
        with self._signals(), watch:
            while self.stop_signal is None:
                claim = self.storage.claim(self.identity, self._later)
                if claim is None:
                    if not self.storage.has_open_runs():
                        return
                    if not waiting_said:
                        log.info("no run to start here: waiting for the runs in progress (one whose worker stops "
                                 f"answering for {GRACE_HEARTBEATS * self.storage.heartbeat} s is queued again)")
                        waiting_said = True
                    self._later.clear()
                    self._wake.wait(min(POLL_SECONDS, self.storage.heartbeat))
                    continue
                waiting_said = False
                self._run(claim)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM between runs (and while one is set up): claim nothing more. A Trainer handles
        them itself while it trains."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def stop(signum: int, frame: object) -> None:  # noqa: ARG001
            self.stop_signal = self.stop_signal or signal.Signals(signum).name
            self._wake.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _run(self, claim: Claim) -> None:
        run, where = self.plan.run_for(claim)
        if self.stop_signal is not None:
            self.storage.hand_back(claim)
            return
        try:
            lock, created = lock_run_folder(run.run_dir)
        except LockedError as e:
            self.storage.hand_back(claim)
            self._later.add(claim.run)
            log.info(f"{where}: {e}; trying it again later")
            return
        except BaseException:
            self.storage.hand_back(claim)
            raise
        try:
            self._train_claimed(claim, run, where, lock)
        finally:
            remove_if_empty(run.run_dir, created)

    def _train_claimed(self, claim: Claim, run: SweepRun, where: str, lock: FolderLock) -> None:
        status = run.status()  # under the lock: nobody else changes the folder now
        if status == DONE:
            lock.release()
            self.storage.complete(claim, finished_f1(run.run_dir), outcome="finished before")
            log.info(f"{where}: already finished, skipped")
            self.skipped.append(run.name)
            return
        note = ProgressNote(self.view)
        try:
            with Heartbeat(self.storage, claim, note, parent=None):  # run()'s own heartbeat watches the parent
                summary, attrs = self._train(run, where, status, lock, note)
        except Stopped as stop:
            self.storage.hand_back(claim)
            self.stop_signal, self.stopped_run = stop.signal_name, (run.name, where)
            log.info(f"{where}: stopped by {stop.signal_name} and handed back; it goes on from its checkpoint")
            return
        except TrainingError as e:
            self.storage.fail(claim, str(e))
            log.warning(f"{run.name} failed: {e}")
            self.failed[run.name] = str(e)
            return
        except BaseException:
            self.storage.hand_back(claim)
            raise
        f1 = summary.best_f1
        self.storage.complete(claim, f1 if f1 is not None else 0.0, **attrs)  # no dev set: nothing to rank by
        self.trained.append(run.name)
        log.info(f"{where}: best dev F1 {f1:.4f}" if f1 is not None else f"{where}: done")

    def _train(self, run: SweepRun, where: str, status: str, lock: FolderLock, note: ProgressNote) -> tuple[Summary, dict[str, Any]]:
        """Train `run` under its folder's `lock`: go on from its checkpoint (`status` resume), or from scratch."""
        if status == RESUME:
            log.info(f"{where}: going on from its checkpoint in {run.run_dir}")
            try:
                return self._fit(run, lock, note, resume=True)
            except RunError as e:
                if note.total is not None:  # training had started: not a checkpoint that cannot be used
                    raise
                log.warning(f"{where}: cannot go on from its checkpoint ({e}); training it again from scratch")
                lock, _ = lock_run_folder(run.run_dir)
                status = RESTART
        if status == RESTART:
            log.info(f"{where}: {run.run_dir} holds an unfinished run; training it again from scratch")
        else:
            log.info(f"{where}: training")
        return self._fit(run, lock, note, resume=False, force=status == RESTART)

    def _fit(self, run: SweepRun, lock: FolderLock, note: ProgressNote, resume: bool, force: bool = False) -> tuple[Summary, dict[str, Any]]:
        attrs: dict[str, Any] = {"outcome": "resumed" if resume else "trained"}

        def on_start(trainer: Trainer) -> None:
            if self.stop_signal is not None:  # a signal while the run was being set up
                raise Stopped(self.stop_signal)
            if resume:
                attrs["resumed_from"] = trainer.state["step"]
                best = trainer.state["best_f1"]
                note.best_f1 = best if best >= 0 else None
            if self.on_start is not None:
                self.on_start(trainer)

        try:
            trainer = Trainer(copy.deepcopy(run.config), resume=resume, force=force, on_start=on_start, view=note,
                              lock=lock)
        except BaseException:
            lock.release()  # the trainer never took it over
            raise
        try:
            summary = trainer.fit()
        except TrainingError:
            if trainer.stop_signal is not None:
                raise Stopped(trainer.stop_signal) from None
            raise
        if trainer.stop_signal is not None:  # a signal at the very last step: the run finished, nothing more starts
            self.stop_signal = trainer.stop_signal
        return summary, attrs


def lock_run_folder(run_dir: Path) -> tuple[FolderLock, bool]:
    """The run folder (made if missing) locked for this worker, and whether it was made here."""
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create the run directory {run_dir}: {e.strerror or e}") from None
    try:
        return FolderLock.acquire(run_dir, "training a run"), created
    except BaseException:
        remove_if_empty(run_dir, created)
        raise


def remove_if_empty(run_dir: Path, created: bool) -> None:
    """A run folder made for a run that never started goes again (rmdir removes only an empty one)."""
    if created:
        try:
            run_dir.rmdir()
        except OSError:
            pass


# ----------------------------------------------------------------------------- worker processes

@dataclass
class WorkerProcess:
    """One worker process the command started: its number, device and threads, and the process."""

    number: int
    process: subprocess.Popen
    device: str | None  # the GPU it sees (CUDA_VISIBLE_DEVICES), None on CPU
    threads: int
    reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        return self.process.pid


class WorkersView(Protocol):
    """What the command shows while worker processes run (every method is called from the main thread but `line`)."""

    def started(self, workers: list[WorkerProcess]) -> None: ...
    def line(self, number: int, text: str) -> None: ...
    def progress(self, status: StudyStatus) -> None: ...
    def stop(self) -> None: ...


def worker_devices(count: int, use_gpus: bool) -> list[str | None]:
    """The GPU each of `count` workers sees, round robin over the visible ones; None each without GPUs."""
    if not use_gpus:
        return [None] * count
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    else:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    if not devices:
        return [None] * count
    return [devices[i % len(devices)] for i in range(count)]


def cpu_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def start_worker_processes(command: list[str], count: int, storage_url: str, use_gpus: bool,
                           on_line: Callable[[int, str], None]) -> list[WorkerProcess]:
    """`count` processes of `command + ["--worker", K]`, each with cores // count threads (at least one) and,
    with GPUs, its own device; each stderr line goes to `on_line(K, line)`."""
    threads = max(1, cpu_cores() // count)
    workers = []
    for number, device in enumerate(worker_devices(count, use_gpus), 1):
        env = {**os.environ, STORAGE_VARIABLE: storage_url, "OMP_NUM_THREADS": str(threads),
               "MKL_NUM_THREADS": str(threads)}
        if device is not None:
            env["CUDA_VISIBLE_DEVICES"] = device
        process = subprocess.Popen(
            [*command, "--worker", str(number)], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, errors="replace",
            start_new_session=True,  # Ctrl-C reaches the command alone, which stops each worker once
        )
        worker = WorkerProcess(number, process, device, threads)
        worker.reader = threading.Thread(target=_relay, args=(worker, on_line), daemon=True)
        worker.reader.start()
        workers.append(worker)
    return workers


def _relay(worker: WorkerProcess, on_line: Callable[[int, str], None]) -> None:
    for line in worker.process.stderr:
        if line.strip():
            on_line(worker.number, line.rstrip("\n"))


def watch_worker_processes(workers: list[WorkerProcess], storage: SweepStorage, names: list[str],
                           view: WorkersView | None) -> str | None:
    """Wait for the workers, showing the study's progress; a signal here is passed to each worker once.

    Returns the name of the signal that stopped the sweep, or None.
    """
    stop_signal: list[str] = []
    woken = threading.Event()

    def forward(signum: int, frame: object) -> None:  # noqa: ARG001
        stop_signal.append(signal.Signals(signum).name)
        for worker in workers:
            if worker.process.poll() is None:
                try:
                    worker.process.send_signal(signal.SIGTERM)  # a second signal here stops them at once
                except ProcessLookupError:
                    pass
        woken.set()

    def wake_when_done(worker: WorkerProcess) -> None:  # the table follows the last worker at once, not a refresh later
        worker.process.wait()
        woken.set()

    for worker in workers:
        threading.Thread(target=wake_when_done, args=(worker,), daemon=True).start()
    in_main = threading.current_thread() is threading.main_thread()
    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)} if in_main else {}
    try:
        if view is not None:
            view.started(workers)
        while any(w.process.poll() is None for w in workers):
            if view is not None:
                try:
                    view.progress(storage.status(names))
                except Exception as e:  # the storage away for a moment: the workers go on regardless
                    log.debug(f"cannot read the sweep's progress: {e}")
            woken.wait(REFRESH_SECONDS)
            woken.clear()
        for worker in workers:
            worker.reader.join()
        if view is not None:
            view.progress(storage.status(names))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if view is not None:
            view.stop()
    return stop_signal[0] if stop_signal else None


def worker_command(config_file: Path, output: Path, heartbeat: int) -> list[str]:
    """The command line a worker process runs (its number and the storage URL are added per worker)."""
    return [sys.executable, "-m", "bertner", "sweep", str(config_file), "--output", str(output),
            "--heartbeat", str(heartbeat)]
