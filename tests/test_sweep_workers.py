"""`bertner sweep --workers N --storage URL`: real worker processes sharing one study (SQLite, PostgreSQL).

Every run is trained exactly once; a worker killed mid-run (kill -9) has its run taken over and resumed from its
checkpoint; a lost machine's run is queued again after its heartbeat stops; a stopped sweep hands its run back;
concurrent first starts queue each run once; bad storage and grids are one line before anything is written.
"""

from __future__ import annotations

import fcntl
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pytest
import yaml
from cli_helpers import assert_one_line_error, invoke, signalling_step
from conftest import ROOT
from synthetic import write_synthetic

from bertner.engine import tracking
from bertner.sweep import TODO, load_sweep, open_sweep, run_sweep, sweep_status
from bertner.sweep_storage import SweepStorage, default_storage_url, study_name_for
from bertner.sweep_worker import cpu_cores, worker_identity

# Tiny runs on one thread each; the grid is crf x seed: 4 runs.
BASE = dict(model="tiny", tiny_layers=1, tiny_hidden=32, tiny_heads=2, lr=5e-3, batch_size=8, num_threads=1,
            device="cpu", log_every=10)
GRID = {"crf": [False, True], "seed": [1, 2]}
NAMES = ["tiny-softmax-seed1", "tiny-softmax-seed2", "tiny-crf-seed1", "tiny-crf-seed2"]


@pytest.fixture
def data(tmp_path):
    return write_synthetic(tmp_path / "data", n_train=160, n_dev=16)


def write_grid(folder: Path, data: Path, grid: dict | None = None, **settings) -> Path:
    path = folder / "grid.yaml"
    path.write_text(yaml.safe_dump({**BASE, "data": str(data), **settings, "grid": grid or GRID}, sort_keys=False))
    return path


def sweep_process(folder: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_WAIT_POLICY": "PASSIVE"}
    return subprocess.Popen([sys.executable, "-m", "bertner", "sweep", *args], cwd=folder, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def trials_by_run(url: str, output: Path) -> dict[str, list[optuna.trial.FrozenTrial]]:
    """Every trial of the sweep's study, by run, in order."""
    name = study_name_for(output)
    study = optuna.load_study(study_name=name, storage=SweepStorage.open(url, name, create=False).storage)
    runs: dict[str, list] = {}
    for trial in sorted(study.get_trials(), key=lambda t: t.number):
        runs.setdefault(trial.user_attrs["run"], []).append(trial)
    return runs


def trainings(trials: list[optuna.trial.FrozenTrial]) -> list[str]:
    """How each finished trial of a run ended: trained, resumed, finished before, or failed."""
    return [t.user_attrs.get("outcome", "lost") if t.state == optuna.trial.TrialState.COMPLETE else t.state.name.lower()
            for t in trials if t.state.is_finished()]


def wait_for(condition, timeout: float = 300, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


# ----------------------------------------------------------------------------- PostgreSQL, if installed

def postgres_binaries() -> Path | None:
    for folder in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


@pytest.fixture
def postgres_url():
    """A throwaway PostgreSQL cluster on a free local port (as the `postgres` user when the tests run as root)."""
    pytest.importorskip("psycopg2")
    binaries = postgres_binaries()
    if binaries is None:
        pytest.skip("PostgreSQL's initdb and pg_ctl are not installed")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: the cluster runs as postgres
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        if shutil.which("runuser") is None:
            pytest.skip("running as root without runuser to start PostgreSQL as postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    folder = Path(tempfile.mkdtemp(prefix="bertner-pg-"))  # not under pytest's root-only tmp folder
    if as_user:
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    data_dir = folder / "data"
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=120)
    try:
        subprocess.run([*as_user, binaries / "initdb", "-D", data_dir, "-U", "postgres", "--auth=trust", "-E", "UTF8"], **quiet)
        subprocess.run([*as_user, binaries / "pg_ctl", "-D", data_dir, "-l", folder / "log", "-w", "-o",
                        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1", "start"], **quiet)
        subprocess.run([*as_user, binaries / "createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "sweeps"], **quiet)
        yield f"postgresql://postgres@127.0.0.1:{port}/sweeps"
    finally:
        subprocess.run([*as_user, binaries / "pg_ctl", "-D", data_dir, "-m", "immediate", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(folder, ignore_errors=True)


# ----------------------------------------------------------------------------- two workers, every run once

def test_two_workers_train_every_run_once_and_show_the_same_table(tmp_path, data):
    """Two worker processes over a 4-run grid: each run trained once, by either worker, and the table at the end
    is the one a single worker shows. Their speed-up is measured by bench/sweep_workers.py, not here (speed is
    measured in bench/, against a baseline timed in the same script)."""
    write_grid(tmp_path, data, max_steps=40, eval_every=20, epochs=1000)
    with pytest.MonkeyPatch.context() as patch:  # one worker: the same command, run in this process
        patch.chdir(tmp_path)
        one = invoke("sweep", "grid.yaml", "-o", "one")
    assert one.exit_code == 0, one.output
    one_out = one.stdout
    code, out, err = finish(sweep_process(tmp_path, "grid.yaml", "-o", "two", "--workers", "2"))
    assert code == 0, err

    runs = trials_by_run(default_storage_url(tmp_path / "two"), tmp_path / "two")
    assert sorted(runs) == sorted(NAMES)
    assert all(trainings(trials) == ["trained"] for trials in runs.values()), runs  # each once, nothing else
    by_worker = {t.user_attrs["worker"]["number"] for trials in runs.values() for t in trials}
    assert by_worker <= {1, 2} and len(by_worker) >= 1
    assert "worker 1: PID" in err and "worker 2: PID" in err and "1 thread" in err
    assert "sweep: 4 runs: 4 done, 0 running, 0 pruned, 0 failed, 0 waiting" in err
    assert all((tmp_path / "two" / name / "summary.json").exists() for name in NAMES)
    # The same runs, the same scores (same seeds, one thread each): the same table, row for row.
    table = lambda text: sorted(line.split("│")[2:9] for line in text.splitlines() if "tiny-" in line and "│" in line)  # noqa: E731
    assert table(out) == table(one_out) and len(table(out)) == 4


# ----------------------------------------------------------------------------- a worker killed or stopped mid-run

def stop_a_worker_mid_run(tmp_path: Path, data: Path, storage: list[str], sig: signal.Signals) -> None:
    """`--workers 2` on a 4-run grid; once a run is past a checkpoint, its worker gets `sig`: the other worker
    goes on with that run from its checkpoint and finishes the grid, every other run trained once."""
    # Runs of a few seconds: long enough for heartbeats (1 s) to report their progress before they end.
    write_grid(tmp_path, data, max_steps=200, eval_every=100, save_every=20, epochs=1000)
    out = tmp_path / "out"
    url = storage[1] if storage else default_storage_url(out)
    sweep = sweep_process(tmp_path, "grid.yaml", "-o", "out", "--workers", "2", "--heartbeat", "1", *storage)

    def a_run_past_its_checkpoint():
        assert sweep.poll() is None, finish(sweep)  # the sweep ended before any run could be stopped
        if not (out / "sweep.json").exists():
            return None
        for record in sweep_status(tmp_path / "grid.yaml", out, url).running():
            step = (record.progress or {}).get("step") or 0
            if step >= 12 and (out / record.name / "checkpoint" / "trainer_state.pt").exists():
                return record
        return None

    victim = wait_for(a_run_past_its_checkpoint)
    number, pid = victim.worker["number"], victim.worker["pid"]
    os.kill(pid, sig)
    code, stdout, stderr = finish(sweep)
    assert code == 0, stderr  # the grid is done, by the other worker
    runs = trials_by_run(url, out)
    assert sorted(runs) == sorted(NAMES)
    stopped = runs.pop(victim.name)
    if sig == signal.SIGKILL:
        assert f"worker {number} (PID {pid}) was killed by SIGKILL" in stderr
        assert [t.state.name for t in stopped] == ["FAIL", "COMPLETE"], stopped  # lost, then done by the other
    else:  # handed back: the same trial, waiting again, then done by the other worker; nothing new started
        assert f"worker {number}: [" in stderr and "stopped by SIGTERM and handed back" in stderr
        assert f"worker {number}: error: stopped by SIGTERM during [" in stderr
        assert [t.state.name for t in stopped] == ["COMPLETE"], stopped
        assert not [t for trials in runs.values() for t in trials if t.user_attrs["worker"]["number"] == number
                    and t.datetime_start > stopped[0].datetime_start]
    done = stopped[-1]
    assert done.user_attrs["outcome"] == "resumed" and done.user_attrs["resumed_from"] >= 10
    assert done.user_attrs["worker"]["number"] != number
    assert all(trainings(trials) == ["trained"] for trials in runs.values()), runs  # the others: once each
    assert all((out / name / "summary.json").exists() for name in NAMES)
    status = invoke("sweep", tmp_path / "grid.yaml", "-o", out, "--status", *storage)
    assert status.exit_code == 0, status.output
    assert "4 runs: 4 done, 0 running, 0 pruned, 0 failed, 0 waiting" in status.stdout
    assert f"done     {victim.name}" in status.stdout and "(resumed)" in status.stdout


def test_a_killed_worker_s_run_is_resumed_by_the_other_on_sqlite(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stop_a_worker_mid_run(tmp_path, data, [], signal.SIGKILL)


def test_a_killed_worker_s_run_is_resumed_by_the_other_on_postgresql(tmp_path, data, postgres_url, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stop_a_worker_mid_run(tmp_path, data, ["--storage", postgres_url], signal.SIGKILL)


def test_a_worker_stopped_by_sigterm_hands_its_run_back_and_starts_nothing(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    stop_a_worker_mid_run(tmp_path, data, [], signal.SIGTERM)


# ----------------------------------------------------------------------------- the study's own guarantees

def test_concurrent_first_starts_queue_each_run_once_and_claims_never_collide(tmp_path, data):
    write_grid(tmp_path, data, grid={"seed": list(range(1, 25))}, output="out")
    # Both processes past their imports, then at once: each says it is ready and waits for the other's word.
    script = (
        "import sys, time; from pathlib import Path; from bertner.sweep import load_sweep, open_sweep; "
        "from bertner.sweep_worker import worker_identity\nsweep = load_sweep('grid.yaml'); number = int(sys.argv[2])\n"
        "Path(f'ready{number}').touch()\n"
        "while not Path(f'ready{3 - number}').exists(): time.sleep(0.001)\n"
        "store = open_sweep(sweep, None); claimed = []\n"
        # Both prepared before either claims: a run completed here has no finished folder, so a start preparing
        # after it would rightly queue it again (as a sweep does a run whose folder was deleted).
        "Path(f'prepared{number}').touch()\n"
        "while not Path(f'prepared{3 - number}').exists(): time.sleep(0.001)\n"
        "while (claim := store.claim(worker_identity(number))) is not None:\n"
        "    claimed.append(claim.run); store.complete(claim, 0.5)\n"
        "print(' '.join(claimed))\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    starts = [subprocess.Popen([sys.executable, "-c", script, "-", str(n)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in (1, 2)]
    outputs = [start.communicate(timeout=300) for start in starts]
    assert all(start.returncode == 0 for start in starts), outputs
    claimed = [out.split() for out, _ in outputs]
    runs = trials_by_run(default_storage_url(tmp_path / "out"), tmp_path / "out")
    assert len(runs) == 24 and all(len(trials) == 1 for trials in runs.values())  # queued once
    assert sorted(claimed[0] + claimed[1]) == sorted(runs)  # each claimed by exactly one process


def test_a_start_reads_which_runs_are_finished_with_the_storage_lock_held(tmp_path, data, monkeypatch):
    # Read before the lock, a run that a worker finishes in between would be queued again: a second trial.
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_grid(tmp_path, data, output="out"))
    lock_file = Path(default_storage_url(tmp_path / "out").removeprefix("sqlite:///") + ".lock")
    seen: list[bool] = []

    def status_seeing_the_lock(run) -> str:
        if not lock_file.exists():
            seen.append(False)
            return TODO
        with open(lock_file, "a") as other:  # another open file: flock conflicts with the start's own
            try:
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(other, fcntl.LOCK_UN)
                seen.append(False)
            except BlockingIOError:
                seen.append(True)
        return TODO

    monkeypatch.setattr(type(sweep.runs[0]), "status", status_seeing_the_lock)
    open_sweep(sweep, None)
    assert seen == [True] * len(NAMES)


def test_a_lost_machine_s_run_is_queued_again_after_three_silent_heartbeats(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_grid(tmp_path, data, output="out"))
    store = open_sweep(sweep, None, heartbeat=1)
    elsewhere = {**worker_identity(1), "host": "node-7", "machine": "node-7/boot", "pid": 1}
    lost = store.claim(elsewhere)
    assert lost.run == NAMES[0]
    here = worker_identity(2)
    others = [store.claim(here) for _ in range(3)]
    assert [c.run for c in others] == NAMES[1:] and store.claim(here) is None  # node-7's run is still its own
    status = store.status(NAMES)
    assert status.runs[0].state == "running" and status.runs[0].worker["host"] == "node-7"
    time.sleep(4.5)  # node-7 never beats again: after 3 heartbeats of silence its run is queued again
    retry = store.claim(here)
    assert retry is not None and retry.run == NAMES[0] and retry.number > lost.number
    assert [t.state.name for t in trials_by_run(default_storage_url(tmp_path / "out"), tmp_path / "out")[NAMES[0]]] == \
        ["FAIL", "RUNNING"]


def test_a_stopped_sweep_hands_its_run_back_and_the_next_start_resumes_it(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, data, grid={"seed": [1, 2]}, max_steps=8, save_every=2, output="out")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tracking.Tracker, "step", signalling_step(3))  # SIGTERM after step 3 of the first run
        stopped = invoke("sweep", grid)
    assert_one_line_error(stopped, "sweep stopped by SIGTERM during [1/2] tiny-softmax-seed1",
                          "tiny-softmax-seed1 goes on from its checkpoint")
    assert not (tmp_path / "out" / "tiny-softmax-seed2").exists()  # nothing new was started
    status = sweep_status(grid)
    assert [r.state for r in status.runs] == ["waiting", "waiting"]
    assert (tmp_path / "out" / "tiny-softmax-seed1" / "checkpoint" / "trainer_state.pt").exists()

    result = run_sweep(grid)
    assert result.trained == ["tiny-softmax-seed1", "tiny-softmax-seed2"] and not result.failed
    runs = trials_by_run(default_storage_url(tmp_path / "out"), tmp_path / "out")
    first = runs["tiny-softmax-seed1"]
    assert len(first) == 1 and first[0].user_attrs["outcome"] == "resumed" and first[0].user_attrs["resumed_from"] == 3


# ----------------------------------------------------------------------------- bad input: one line, nothing written

@pytest.mark.parametrize("url,message", [
    ("not a url", "is not a storage URL"),
    ("mysql://u@h/db", "mysql is not supported"),
    ("sqlite://", "SQLite needs a file"),
    ("sqlite:////nonexistent-folder/x/sweep.db", "cannot create the storage's lock file"),
    ("postgresql://nobody@127.0.0.1:9/none", "cannot use the sweep's storage postgresql://nobody@127.0.0.1:9/none"),
])
def test_a_bad_storage_is_one_line_before_any_folder_is_made(tmp_path, data, url, message):
    grid = write_grid(tmp_path, data, output=str(tmp_path / "out"))
    assert_one_line_error(invoke("sweep", grid, "--storage", url), message)
    assert not (tmp_path / "out").exists()


def test_another_grid_is_refused_by_the_folder_and_by_the_storage(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, data, output="out")
    store = open_sweep(load_sweep(grid), None)
    assert store.status(NAMES).counts()["waiting"] == 4
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    other = write_grid(tmp_path, data, grid={"seed": [1, 2, 3]}, output="out")
    assert_one_line_error(invoke("sweep", other), "out holds the runs of another grid (grid.yaml, 4 runs",
                          "this one (grid.yaml, 3 runs) differs")
    # The same study name in a shared storage, reached from another folder: refused by the study.
    (tmp_path / "out" / "sweep.json").rename(tmp_path / "sweep.json.saved")
    assert_one_line_error(invoke("sweep", other, "--storage", default_storage_url(tmp_path / "out")),
                          "holds another grid (4 runs, from grid.yaml); this one (3 runs, grid.yaml) differs")
    assert not (tmp_path / "out" / "sweep.json").exists()  # nothing recorded for the refused grid
    (tmp_path / "sweep.json.saved").rename(tmp_path / "out" / "sweep.json")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()} == before


def test_a_worker_that_cannot_write_the_runs_folder_claims_nothing(tmp_path, data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    grid = write_grid(tmp_path, data, output="out")
    store = open_sweep(load_sweep(grid), None)
    (tmp_path / "out").chmod(0o555)
    try:
        result = invoke("sweep", grid, "--worker", "1")
    finally:
        (tmp_path / "out").chmod(0o755)
    assert_one_line_error(result, "not writable")
    assert store.status(NAMES).counts()["waiting"] == 4  # no run claimed, none lost


def test_status_before_any_start_is_one_line_and_creates_nothing(tmp_path, data):
    grid = write_grid(tmp_path, data, output=str(tmp_path / "out"))
    assert_one_line_error(invoke("sweep", grid, "--status"), "no such storage file; no sweep has started")
    assert not (tmp_path / "out").exists()


def test_worker_settings_are_checked(tmp_path, data):
    grid = write_grid(tmp_path, data, output=str(tmp_path / "out"))
    assert_one_line_error(invoke("sweep", grid, "--workers", "0"), "--workers must be from 1 to 256, got 0")
    assert_one_line_error(invoke("sweep", grid, "--heartbeat", "0"), "--heartbeat must be from 1 to 3600 seconds")
    assert_one_line_error(invoke("sweep", grid, "--status", "--dry-run"), "different modes")
    assert not (tmp_path / "out").exists()


def test_a_storage_that_needs_a_password_never_shows_it(tmp_path, data):
    grid = write_grid(tmp_path, data, output=str(tmp_path / "out"))
    line = assert_one_line_error(invoke("sweep", grid, "--storage", "postgresql://me:s3cret@127.0.0.1:9/db"),
                                 "cannot use the sweep's storage")
    assert "s3cret" not in line and "me:***@127.0.0.1:9/db" in line
