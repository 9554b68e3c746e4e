"""A sweep's shared record: which of its runs wait, run, are done, pruned or failed, kept in an Optuna study.

Every process of a sweep (the workers of one command, or the same command started on several machines or
several times on one) works from one study in one storage: `--storage URL` (`sqlite:///FILE`,
`postgresql://USER@HOST[:PORT]/DB`), by default the SQLite file `sweep.db` in the sweep's folder.

- The study is named `bertner:` + the sweep folder's absolute path, unless the folder's `sweep.json` (written
  by the first start) names another: a folder mounted at another path on another machine keeps its study.
- Each run is a trial with the user attribute `run` (its name). Starting a sweep (`prepare`) queues a WAITING
  trial for every run that has no waiting or running one and whose folder holds no finished run, and records a
  finished folder as a COMPLETE trial; the grid's fingerprint is a study attribute, and another grid under the
  same name is refused.
- Queueing, claiming (WAITING -> RUNNING) and failing lost trials happen under one lock per storage: an flock
  on `FILE.lock` beside a SQLite file, a PostgreSQL advisory lock. Optuna's own pop of a waiting trial is not
  atomic on SQLite (two processes both set the same trial RUNNING: seen with 2 processes over 60 trials), and
  two first starts must not queue every run twice.
- Heartbeat: a worker records its trial's heartbeat (and its progress) every `heartbeat` seconds; a trial
  silent for 3 heartbeats, or whose worker's process is gone from this machine, is failed and queued again
  as a new WAITING trial (Optuna's RetryHeartbeatStaleTrialCallback), at most `MAX_RETRIES` times.
- A worker told to stop puts its trial back to WAITING (`hand_back`), so another one goes on with it.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import logging
import os
import socket
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from bertner.errors import BertnerError, one_line
from bertner.lock import process_alive

log = logging.getLogger(__name__)

# Optuna logs each trial's state at INFO and marks the heartbeat API experimental; bertner reports runs itself.
optuna.logging.set_verbosity(optuna.logging.WARNING)

DEFAULT_STORAGE_FILE = "sweep.db"
HEARTBEAT_SECONDS = 10
GRACE_HEARTBEATS = 3  # a trial silent this many heartbeats is taken as lost
MAX_RETRIES = 3  # a run whose worker is lost more often than this is failed (a run that kills its machine)
GRID_ATTR = "bertner_grid"
STUDY_PREFIX = "bertner:"
LOCK_WAIT_SECONDS = 120
# Shown for each state of a run's latest trial, in this order.
DONE, RUNNING, PRUNED, FAILED, WAITING = "done", "running", "pruned", "failed", "waiting"
STATES = (DONE, RUNNING, PRUNED, FAILED, WAITING)
_STATE_NAMES = {TrialState.COMPLETE: DONE, TrialState.RUNNING: RUNNING, TrialState.PRUNED: PRUNED,
                TrialState.FAIL: FAILED, TrialState.WAITING: WAITING}


def machine_id() -> str:
    """This machine as long as it runs: its host name and boot id (host names repeat across containers)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot = ""
    return f"{socket.gethostname()}/{boot}"


def study_name_for(output: Path) -> str:
    return STUDY_PREFIX + os.path.abspath(output)


def default_storage_url(output: Path) -> str:
    return f"sqlite:///{os.path.abspath(output / DEFAULT_STORAGE_FILE)}"


def parse_storage_url(url: str) -> sqlalchemy.engine.URL:
    """The URL checked: SQLite with a file, or PostgreSQL; BertnerError in one line otherwise."""
    expected = "give sqlite:///FILE or postgresql://USER@HOST[:PORT]/DB"
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise BertnerError(f"--storage {url!r} is not a storage URL; {expected}") from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise BertnerError(f"--storage {shown_url(parsed)}: {backend} is not supported; {expected}")
    if backend == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise BertnerError(f"--storage {shown_url(parsed)}: SQLite needs a file that every worker opens; {expected}")
    return parsed


def with_driver(url: sqlalchemy.engine.URL) -> sqlalchemy.engine.URL:
    """`postgresql://` with the driver that is installed: SQLAlchemy 2.1 means psycopg 3 by it, 2.0 psycopg2
    (the `cluster` extra's); a URL that names its driver (`postgresql+psycopg://`) keeps it."""
    if url.drivername != "postgresql":
        return url
    for module, driver in (("psycopg2", "postgresql+psycopg2"), ("psycopg", "postgresql+psycopg")):
        if importlib.util.find_spec(module) is not None:
            return url.set(drivername=driver)
    raise BertnerError(f"{shown_url(url)}: PostgreSQL storage needs psycopg2: pip install \"bertner[cluster]\"")


def shown_url(url: sqlalchemy.engine.URL) -> str:
    return url.render_as_string(hide_password=True)


# ----------------------------------------------------------------------------- the lock every process takes

class _FileLock:
    """SQLite: an flock on a file beside the database (over NFS the kernel maps it to fcntl locks, as SQLite's own)."""

    def __init__(self, database: str):
        self.path = Path(database + ".lock")

    @contextmanager
    def held(self) -> Iterator[None]:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        except OSError as e:
            raise BertnerError(f"cannot create the storage's lock file {self.path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # the lock goes with the descriptor; the file stays (removing it would race)


class _AdvisoryLock:
    """PostgreSQL: a transaction-level advisory lock, released by the server if its holder's connection dies."""

    def __init__(self, engine: sqlalchemy.engine.Engine, key: int, shown: str):
        self.engine, self.key, self.shown = engine, key, shown

    @contextmanager
    def held(self) -> Iterator[None]:
        with self.engine.connect() as connection:
            try:
                connection.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{LOCK_WAIT_SECONDS}s'"))
                connection.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:key)"), {"key": self.key})
            except sqlalchemy.exc.DBAPIError as e:
                raise BertnerError(f"{self.shown}: cannot take the sweep's lock ({one_line(e.orig)})") from None
            try:
                yield
            finally:
                connection.rollback()  # ends the transaction, and with it the lock


def _engine_arguments(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": 60}}  # seconds a writer waits for another's transaction
    # An unreachable host fails in seconds, not after TCP's minutes; a dropped connection is replaced.
    return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}


@contextmanager
def _no_experimental_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


@contextmanager
def _storage_errors(shown: str) -> Iterator[None]:
    """A storage that cannot be reached or read, as one line naming it."""
    try:
        yield
    except ImportError:
        raise BertnerError(f"{shown}: PostgreSQL storage needs psycopg2: pip install \"bertner[cluster]\"") from None
    except sqlalchemy.exc.DBAPIError as e:
        raise BertnerError(f"cannot use the sweep's storage {shown}: {one_line(e.orig)}") from None
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as e:
        cause = e.__cause__ if isinstance(e, optuna.exceptions.StorageInternalError) and e.__cause__ else e
        raise BertnerError(f"cannot use the sweep's storage {shown}: {one_line(cause)}") from None


# ----------------------------------------------------------------------------- what the study holds

@dataclass
class RunRecord:
    """One run as the study has it: the state of its latest trial, and while it runs, who and how far."""

    name: str
    state: str  # one of STATES
    trial: int | None = None  # the latest trial's number (None: not queued yet)
    worker: dict[str, Any] | None = None  # who runs it, or ran it last: host, machine, pid, number, parent
    progress: dict[str, Any] | None = None  # step, total, best_f1: while running
    value: float | None = None  # best dev F1 once done
    error: str | None = None  # why it failed
    outcome: str | None = None  # done: trained, resumed or finished before


@dataclass
class StudyStatus:
    """Every run of a sweep, by the study: what `bertner sweep --status` prints."""

    study: str
    storage: str
    runs: list[RunRecord] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {state: sum(r.state == state for r in self.runs) for state in STATES}

    def running(self) -> list[RunRecord]:
        return [r for r in self.runs if r.state == RUNNING]


@dataclass
class Claim:
    """A trial a worker took: its number, its run and its Optuna trial (for reports and pruning)."""

    number: int
    trial_id: int
    run: str
    trial: optuna.Trial


# ----------------------------------------------------------------------------- the storage

class SweepStorage:
    """One sweep's study in its storage: prepare it, claim runs, record heartbeats, finish or hand runs back."""

    def __init__(self, url: str, study_name: str, heartbeat: int, storage: optuna.storages.RDBStorage,
                 lock: _FileLock | _AdvisoryLock, shown: str):
        self.url = url  # as given, password included: for the worker processes this command starts (never shown)
        self.shown = shown  # the URL as given, without its password
        self.study_name = study_name
        self.heartbeat = heartbeat
        self.storage = storage
        self.lock = lock
        self._study: optuna.Study | None = None
        self._study_id: int | None = None

    @classmethod
    def open(cls, url: str, study_name: str, heartbeat: int = HEARTBEAT_SECONDS, create: bool = True) -> SweepStorage:
        """Connect (creating the tables when `create`), or BertnerError in one line: a bad URL, an unreachable
        server, a missing driver, a schema from another Optuna."""
        parsed = parse_storage_url(url)
        shown = shown_url(parsed)
        parsed = with_driver(parsed)
        arguments = _engine_arguments(parsed)
        if parsed.get_backend_name() == "sqlite":
            database = parsed.database
            if not create and not Path(database).is_file():
                raise BertnerError(f"{shown}: no such storage file; no sweep has started with it yet")
            lock: _FileLock | _AdvisoryLock = _FileLock(database)
        else:
            with _storage_errors(shown):
                engine = sqlalchemy.create_engine(parsed, **arguments)
            key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
            lock = _AdvisoryLock(engine, key, shown)
        with _no_experimental_warnings():
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES)
        # Two first starts creating the tables at once would collide: the lock makes them take turns.
        with _storage_errors(shown), lock.held() if create else _nothing(), _no_experimental_warnings():
            try:
                storage = optuna.storages.RDBStorage(
                    parsed.render_as_string(hide_password=False), engine_kwargs=arguments,
                    heartbeat_interval=heartbeat, grace_period=GRACE_HEARTBEATS * heartbeat,
                    heartbeat_stale_trial_callback=retry, skip_table_creation=not create,
                )
            except RuntimeError as e:  # a schema written by another Optuna version
                raise BertnerError(f"cannot use the sweep's storage {shown}: {one_line(e)}") from None
        return cls(url, study_name, heartbeat, storage, lock, shown)

    # -- the study ---------------------------------------------------------------------------
    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = self._load()
        return self._study

    def _load(self) -> optuna.Study:
        with _storage_errors(self.shown):
            try:
                study = optuna.load_study(study_name=self.study_name, storage=self.storage)
            except KeyError:
                raise BertnerError(f"{self.shown} holds no sweep study named {self.study_name!r}; start the sweep "
                                   "first (the same command without --status)") from None
        self._study_id = self.storage.get_study_id_from_name(self.study_name)
        return study

    def prepare(self, grid: dict[str, Any], runs: Callable[[], list[tuple[str, float | None, dict[str, Any]]]]) -> None:
        """Make the study hold this grid's runs (one lock-held pass, so concurrent starts queue nothing twice).

        `grid`: the grid's identity (its `fingerprint`, run count and file), refused if the study holds
        another; `runs()`, called with the lock held: (name, best F1 of a finished run in its folder or
        None, its grid values).
        """
        with _storage_errors(self.shown), self.lock.held():
            study = optuna.create_study(study_name=self.study_name, storage=self.storage, direction="maximize",
                                        load_if_exists=True)
            self._study, self._study_id = study, self.storage.get_study_id_from_name(self.study_name)
            self._check_grid(grid, study.user_attrs.get(GRID_ATTR))
            latest = self._latest_trials()
            for name, finished, values in runs():
                trial = latest.get(name)
                state = trial.state if trial is not None else None
                if finished is not None:
                    if state == TrialState.WAITING:
                        self._finish_waiting(trial, finished)
                    elif state not in (TrialState.COMPLETE, TrialState.RUNNING):
                        study.add_trial(optuna.trial.create_trial(
                            state=TrialState.COMPLETE, value=finished,
                            user_attrs={"run": name, "outcome": "finished before"}))
                elif state not in (TrialState.WAITING, TrialState.RUNNING, TrialState.PRUNED):
                    # New, or failed (a training error, or lost too often), or done but its folder no longer holds
                    # it (deleted to train it again): queued, as a sweep started again trains such runs.
                    study.enqueue_trial(_json_values(values), user_attrs={"run": name})
            if GRID_ATTR not in study.user_attrs:
                study.set_user_attr(GRID_ATTR, grid)  # last: a start that died above is completed by the next

    def check_grid(self, grid: dict[str, Any]) -> None:
        """For a worker: the study holds this grid (the command that started it prepared it)."""
        with _storage_errors(self.shown):
            self._check_grid(grid, self.study.user_attrs.get(GRID_ATTR))

    def _check_grid(self, grid: dict[str, Any], held: dict[str, Any] | None) -> None:
        if held is not None and held.get("fingerprint") != grid["fingerprint"]:
            raise BertnerError(
                f"{self.shown}: study {self.study_name!r} holds another grid ({held.get('runs')} runs, from "
                f"{held.get('file')}); this one ({grid['runs']} runs, {grid['file']}) differs: sweep into another "
                "--output, or delete that study to start it afresh")

    def _latest_trials(self) -> dict[str, FrozenTrial]:
        latest: dict[str, FrozenTrial] = {}
        for trial in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            name = trial.user_attrs.get("run")
            if name is not None:
                latest[name] = trial
        return latest

    def _finish_waiting(self, trial: FrozenTrial, value: float) -> None:
        trial_id = self._trial_id(trial.number)
        if self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
            self.storage.set_trial_user_attr(trial_id, "outcome", "finished before")
            self.storage.set_trial_state_values(trial_id, TrialState.COMPLETE, [value])

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self._study_id, number)

    # -- a worker's side ---------------------------------------------------------------------
    def claim(self, worker: dict[str, Any], skip: set[str] = frozenset()) -> Claim | None:
        """The first waiting run (in queue order) not in `skip`, now RUNNING for `worker`; None when none waits.

        Lost trials (silent for 3 heartbeats, or whose process is gone from this machine) are queued again first.
        """
        study = self.study
        with _storage_errors(self.shown), self.lock.held():
            self._requeue_lost()
            waiting = self.storage.get_all_trials(self._study_id, deepcopy=False, states=(TrialState.WAITING,))
            for trial in sorted(waiting, key=lambda t: t.number):
                name = trial.user_attrs.get("run")
                if name is None or name in skip:
                    continue
                trial_id = self._trial_id(trial.number)
                # The heartbeat first: a RUNNING trial without a fresh one would look lost (or never, without any).
                self.storage.record_heartbeat(trial_id)
                if not self.storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                    continue
                self.storage.set_trial_user_attr(trial_id, "worker", worker)
                self.storage.set_trial_user_attr(trial_id, "progress", None)
                return Claim(trial.number, trial_id, name, optuna.Trial(study, trial_id))
        return None

    def _requeue_lost(self) -> None:
        with _no_experimental_warnings():
            optuna.storages.fail_stale_trials(self.study)
        here = machine_id()
        retry = self.storage.get_heartbeat_stale_trial_callback()
        for trial in self.storage.get_all_trials(self._study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.user_attrs.get("worker") or {}
            if worker.get("machine") != here or process_alive(int(worker.get("pid", os.getpid()))):
                continue  # elsewhere (its heartbeat tells), or alive; a reused PID waits for the heartbeat
            trial_id = self._trial_id(trial.number)
            try:
                failed = self.storage.set_trial_state_values(trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue
            if failed:
                log.info(f"{trial.user_attrs.get('run')}: its worker (PID {worker.get('pid')}) is gone; queued again")
                with _no_experimental_warnings():
                    retry(self.study, self.storage.get_trial(trial_id))

    def has_open_runs(self) -> bool:
        """Whether any run waits or runs (here or elsewhere): a worker with nothing to claim waits while one does."""
        self.study  # noqa: B018 (loads the study, and with it its id)
        with _storage_errors(self.shown):
            open_trials = self.storage.get_all_trials(self._study_id, deepcopy=False,
                                                      states=(TrialState.WAITING, TrialState.RUNNING))
        return bool(open_trials)

    def beat(self, claim: Claim, progress: dict[str, Any] | None) -> None:
        """Record that `claim`'s worker is alive, and how far its run got."""
        with _storage_errors(self.shown):
            self.storage.record_heartbeat(claim.trial_id)
            if progress is not None:
                try:
                    self.storage.set_trial_user_attr(claim.trial_id, "progress", progress)
                except optuna.exceptions.UpdateFinishedTrialError:
                    pass  # taken as lost meanwhile; its retry will find the run's folder as it is

    def complete(self, claim: Claim, value: float, **attrs: Any) -> None:
        """The run finished (trained now, resumed, or found finished): COMPLETE with its best dev F1."""
        self._finish(claim, TrialState.COMPLETE, value, attrs)

    def fail(self, claim: Claim, error: str) -> None:
        """The run stopped on a training error: FAIL, not retried until the sweep is started again."""
        self._finish(claim, TrialState.FAIL, None, {"error": error})

    def _finish(self, claim: Claim, state: TrialState, value: float | None, attrs: dict[str, Any]) -> None:
        with _storage_errors(self.shown):
            try:
                for key, item in attrs.items():
                    self.storage.set_trial_user_attr(claim.trial_id, key, item)
            except optuna.exceptions.UpdateFinishedTrialError:
                return  # taken as lost (a heartbeat missed) and queued again: its retry finds the folder as it is
            self.study.tell(claim.number, value, state=state, skip_if_finished=True)

    def hand_back(self, claim: Claim) -> None:
        """Put a run back in the queue (a stopped worker): WAITING again, for the next worker to go on with it."""
        with _storage_errors(self.shown), self.lock.held():
            try:
                self.storage.set_trial_user_attr(claim.trial_id, "worker", None)
                # A fresh heartbeat: whoever claims it next has 3 heartbeats to record its own.
                self.storage.record_heartbeat(claim.trial_id)
                self.storage.set_trial_state_values(claim.trial_id, TrialState.WAITING)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # already taken as lost and queued again

    # -- reading ------------------------------------------------------------------------------
    def status(self, names: list[str]) -> StudyStatus:
        """Each of `names` (the grid's runs, in order) by its latest trial; a run not queued yet is waiting."""
        with _storage_errors(self.shown):
            latest = self._latest_trials()
        status = StudyStatus(self.study_name, self.shown)
        for name in names:
            trial = latest.get(name)
            if trial is None:
                status.runs.append(RunRecord(name, WAITING))
                continue
            state = _STATE_NAMES.get(trial.state, WAITING)
            attrs = trial.user_attrs
            status.runs.append(RunRecord(
                name, state, trial.number,
                worker=attrs.get("worker"),
                progress=attrs.get("progress") if state == RUNNING else None,
                value=trial.value if state == DONE else None,
                error=(attrs.get("error") or f"its worker was lost {MAX_RETRIES + 1} times") if state == FAILED else None,
                outcome=attrs.get("outcome") if state == DONE else None,
            ))
        return status


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _json_values(values: dict[str, Any]) -> dict[str, Any]:
    """Grid values as Optuna keeps a queued trial's parameters (JSON): lists and paths as they print."""
    return {key: value if isinstance(value, (bool, int, float, str, type(None))) else str(value)
            for key, value in values.items()}

