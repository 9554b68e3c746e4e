"""Run directory integrity: locks, symbolic links, data folders as output, data fingerprints, file modes,
broken checkpoints and tokenizers.

One finished tiny run and one run stopped at step 2 (with its checkpoint) are trained per module;
each case works on a copy. Errors must be one line and a non-zero exit, and change nothing.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from synthetic import write_synthetic
from torch import nn

from cli_helpers import TINY_RUN as SETTINGS
from cli_helpers import assert_one_line_error as one_line_error, invoke, snapshot, train_finished, train_stopped
from bertner.lock import LOCK_FILE, FolderLock
from bertner.sweep import load_sweep, open_sweep



@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("integrity") / "data", n_train=48, n_dev=8, seed=4)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    return train_finished(data, tmp_path_factory.mktemp("finished") / "run")


@pytest.fixture(scope="module")
def stopped(data, tmp_path_factory) -> Path:
    """A run stopped by SIGTERM after step 2: a checkpoint to resume from, no summary yet."""
    return train_stopped(data, tmp_path_factory.mktemp("stopped") / "run", 2)


def copy_of(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(run, target, symlinks=True)
    return target


# ----------------------------------------------------------------------------- item 2: one trainer per folder

def test_a_second_trainer_is_refused_naming_the_holder(data, stopped, tmp_path):
    run = copy_of(stopped, tmp_path)
    before = snapshot(run)
    with FolderLock.acquire(run, "training a run"):  # the first trainer, as far as the folder can tell
        result = invoke("train", "-o", run, "--resume")
        one_line_error(result, f"{run} is locked by PID {os.getpid()} (training a run)", LOCK_FILE)
        fresh = invoke("train", data, "-o", run, *SETTINGS, "--force")  # --force must not clear it either
        one_line_error(fresh, f"is locked by PID {os.getpid()}")
    assert snapshot(run) == before  # nothing resumed, nothing cleared, no lock file left behind


def test_the_lock_holds_across_processes(tmp_path):
    folder = tmp_path / "runs"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from bertner.lock import FolderLock; "
         "lock = FolderLock.acquire(sys.argv[1], 'running a sweep'); print('held', flush=True); time.sleep(60)", str(folder)],
        stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[1],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        from bertner.errors import LockedError

        with pytest.raises(LockedError, match=f"locked by PID {holder.pid} \\(running a sweep\\)"):
            FolderLock.acquire(folder, "training a run")
    finally:
        holder.kill()
        holder.wait()
    # Killed: the kernel dropped its lock, and its PID is dead, so the stale lock file is taken over.
    with FolderLock.acquire(folder, "training a run") as lock:
        assert lock.held and (folder / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    assert not (folder / LOCK_FILE).exists()


def test_a_stale_lock_from_a_killed_process_is_taken_over(data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(f"{dead.pid}\n")
    result = invoke("train", data, "-o", run, *SETTINGS, "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert f"PID {dead.pid}, which held it, is no longer running" in result.output
    assert (run / "summary.json").exists() and not (run / LOCK_FILE).exists()


def test_a_second_grid_in_the_same_sweep_folder_is_refused(data, tmp_path):
    # Starts of one grid share the folder's queue (sweep.json, sweep.db: tests/test_sweep_workers.py); another
    # grid there would mix its runs with the first one's.
    out = tmp_path / "sweep"
    settings = f"data: {data}\nmodel: tiny\ntiny_layers: 1\ntiny_hidden: 32\nmax_steps: 1\nnum_threads: 1\noutput: {out}\n"
    first, second = tmp_path / "s.yaml", tmp_path / "t.yaml"
    first.write_text(settings + "grid:\n  seed: [1, 2]\n", encoding="utf-8")
    second.write_text(settings + "grid:\n  seed: [1, 2, 3]\n", encoding="utf-8")
    open_sweep(load_sweep(first), None)  # the first grid's sweep has started
    before = snapshot(out)
    one_line_error(invoke("sweep", second), f"{out} holds the runs of another grid (s.yaml, 2 runs")
    assert snapshot(out) == before and not [p for p in out.iterdir() if p.is_dir()]  # no run was started


# ----------------------------------------------------------------------------- item 8: a data folder is not a run folder

def test_output_into_the_preprocessed_data_folder_is_refused(data, tmp_path):
    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    before = snapshot(folder)
    for extra in ([], ["--force"]):
        result = invoke("train", data, "-o", folder, *SETTINGS, *extra)  # another data folder
        one_line_error(result, f"{folder} holds preprocessed data (train.jsonl, dev.jsonl)", "choose another --output")
        result = invoke("train", folder, "-o", folder, *SETTINGS, *extra)  # its own input (check_output_place)
        one_line_error(result, f"cannot write {folder}: it is the input {folder}")
    assert snapshot(folder) == before  # the data's labels.json is untouched


def test_a_data_folder_whose_labels_json_a_run_replaced_still_reads(data, tmp_path):
    """Older bertner let `train -o DATA` write the run's labels.json there: its fields sit under `data`."""
    from bertner.engine.trainer import data_info

    folder = tmp_path / "data"
    shutil.copytree(data, folder)
    (folder / "labels.json").write_text(json.dumps(
        {"labels": ["Drug"], "tags": ["O", "B-Drug", "I-Drug"], "scheme": "BIO", "data": {"discontinuous": "split", "max_chars": 64}}))
    assert data_info(folder) == {"discontinuous": "split", "max_chars": 64}


# ----------------------------------------------------------------------------- item 9: never write through a link

def test_resume_refuses_a_symlink_planted_in_the_run(stopped, tmp_path):
    run = copy_of(stopped, tmp_path)
    target = tmp_path / "elsewhere.txt"
    target.write_text("not yours\n")
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").symlink_to(target)
    one_line_error(invoke("train", "-o", run, "--resume"), f"{run / 'metrics.jsonl'} is a symbolic link")
    assert target.read_text() == "not yours\n"
    assert (run / "checkpoint" / "trainer_state.pt").exists() and not (run / LOCK_FILE).exists()


def test_append_never_follows_a_link(tmp_path):
    from bertner.errors import BertnerError
    from bertner.fileio import append_text

    target = tmp_path / "target"
    target.write_text("x")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(BertnerError, match="is a symbolic link"):
        append_text(tmp_path / "link", "appended")
    assert target.read_text() == "x"


# ----------------------------------------------------------------------------- item 10: what data the run saw

def test_the_run_records_its_data_and_evaluate_warns_about_trained_documents(finished, data):
    from bertner.runs import file_sha256

    fingerprint = json.loads((finished / "data_fingerprint.json").read_text())
    assert fingerprint["train"]["sha256"] == file_sha256(data / "train.jsonl")
    assert fingerprint["train"]["documents"] == sorted(f"t{i}" for i in range(48))
    assert fingerprint["dev"]["documents"] == sorted(f"d{i}" for i in range(8))

    clean = invoke("evaluate", finished, data / "dev.jsonl", "--json")
    assert clean.exit_code == 0 and "training data" not in clean.stderr
    assert "trained_on_documents" not in json.loads(clean.stdout)
    seen = invoke("evaluate", finished, data / "train.jsonl", "--json")
    assert seen.exit_code == 0, seen.output
    assert "warning: 48 of the 48 documents" in " ".join(seen.stderr.split())
    assert json.loads(seen.stdout)["trained_on_documents"] == 48


# ----------------------------------------------------------------------------- item 12: file modes

def test_weights_get_the_umask_mode_like_every_other_file(finished, tmp_path):
    from bertner.engine.checkpoint import save_weights

    mask = os.umask(0o022)
    try:
        save_weights(nn.Linear(2, 2), tmp_path / "model.safetensors")
    finally:
        os.umask(mask)
    assert (tmp_path / "model.safetensors").stat().st_mode & 0o777 == 0o644
    modes = {(finished / name).stat().st_mode & 0o777 for name in ("model.safetensors", "config.yaml", "summary.json")}
    assert len(modes) == 1  # the weights like the rest


# ----------------------------------------------------------------------------- item 1: the tokenizer a run trained with

@pytest.mark.parametrize("missing", ["tokenizer.json", "bertner_encoder.json:vocab_size"])
def test_a_run_without_its_tokenizer_is_refused(finished, data, tmp_path, missing):
    run = copy_of(finished, tmp_path)
    if missing == "tokenizer.json":
        (run / "encoder" / "tokenizer.json").unlink()
    else:  # an older run (no recorded size) missing its tokenizer: checked against the embeddings
        (run / "encoder" / "tokenizer.json").unlink()
        meta = json.loads((run / "encoder" / "bertner_encoder.json").read_text())
        del meta["vocab_size"]
        (run / "encoder" / "bertner_encoder.json").write_text(json.dumps(meta))
    one_line_error(invoke("evaluate", run, data / "dev.jsonl"), f"{run / 'encoder'}: its tokenizer has 5 tokens",
                   "a tokenizer file (tokenizer.json, vocab.txt) is missing" if missing == "tokenizer.json" else "embeddings")


def test_a_bilstm_encoder_without_its_tokenizer_is_refused(tmp_path):
    from bertner.errors import ModelError
    from bertner.models.encoder import (
        RecurrentShape,
        build_bilstm_encoder,
        encoder_from_folder,
        save_encoder,
    )

    bundle = build_bilstm_encoder(["患者有高血压，服用二甲双胍。"] * 3, RecurrentShape(hidden=8, char_dim=8, bigram_dim=4))
    folder = save_encoder(bundle, tmp_path / "encoder")
    assert len(encoder_from_folder(folder).tokenizer) == bundle.model.config.vocab_size
    (folder / "tokenizer.json").unlink()
    with pytest.raises(ModelError, match=r"its tokenizer has 5 tokens, but the run was saved with \d+"):
        encoder_from_folder(folder)


# ----------------------------------------------------------------------------- broken checkpoints: one line

class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _edit_state(change):
    def breaker(file: Path) -> None:
        state = torch.load(file, weights_only=True)
        change(state)
        torch.save(state, file)

    return breaker


BROKEN_STATES = {
    "a-list": (lambda f: torch.save([1, 2], f), "expected a mapping of training state, found list"),
    "no-keys": (lambda f: torch.save({"step": 3}, f), "no optimizer, scheduler, scaler, loop, rng state in it"),
    "step-not-a-number": (_edit_state(lambda s: s["loop"].update(step="3")), "loop.step is '3'"),
    "optimizer-of-another-model": (_edit_state(lambda s: s["optimizer"].update(param_groups=[])),
                                   "the checkpoint does not fit this run"),
    "pickle-with-code": (lambda f: torch.save({"loop": RunsCode()}, f), "loading them could run code; refused"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_STATES))
def test_a_broken_checkpoint_is_one_line(stopped, tmp_path, monkeypatch, case):
    breaker, expected = BROKEN_STATES[case]
    run = copy_of(stopped, tmp_path)
    breaker(run / "checkpoint" / "trainer_state.pt")
    monkeypatch.chdir(tmp_path)
    one_line_error(invoke("train", "-o", run, "--resume"), f"{run / 'checkpoint' / 'trainer_state.pt'}", expected)
    assert not (tmp_path / "PWNED").exists() and not (run / "summary.json").exists()


def test_weights_of_another_shape_are_one_line_naming_the_tensor(finished, data, tmp_path):
    run = copy_of(finished, tmp_path)
    labels = json.loads((run / "labels.json").read_text())
    labels["labels"].append("Extra")
    labels["tags"] += ["B-Extra", "I-Extra"]
    (run / "labels.json").write_text(json.dumps(labels))
    one_line_error(invoke("evaluate", run, data / "dev.jsonl"),
                   "model.safetensors: weights do not fit the model: classifier.bias is [7] in the file but [9]",
                   "(2 tensor(s) differ)")
