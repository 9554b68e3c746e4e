"""The attack of issue 22, families 15 to 18: silently wrong results, tracebacks, unclear messages, other.

Each family is tested through several of its variants (every command, every run file, every input
kind), since the fixes are at the root: one reader with bounded nesting, one input decoder for files
and standard input, one path check, one place that names temporaries, one place that turns a failed
write into a line. Errors must be one `error:` line, a non-zero exit and nothing written or lost.
"""

from __future__ import annotations

import builtins
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from study_runs import dev_windows, hits_per_document, study_run
from synthetic import write_synthetic
from test_compare import fake_run

from cli_helpers import TINY_RUN as SETTINGS
from cli_helpers import assert_nothing_written, assert_one_line_error, invoke, runner, snapshot, train_finished, train_stopped
from bertner.cli import app
from bertner.compare import compare_runs
from bertner.data.formats import read_corpus
from bertner.data.jsonl import read_windows
from bertner.lock import LOCK_FILE
from bertner.significance import compare_to_baseline
from bertner.spans import Window
from bertner.sweep import load_sweep

NOTE = "患者有高血压，服用二甲双胍。"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("attack") / "data", n_train=48, n_dev=8, seed=4)


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    return train_finished(data, tmp_path_factory.mktemp("finished") / "run")


@pytest.fixture(scope="module")
def stopped(data, tmp_path_factory) -> Path:
    """A run stopped by SIGTERM after step 1: a checkpoint to resume from, no summary yet."""
    return train_stopped(data, tmp_path_factory.mktemp("stopped") / "run", 1)


def copy_of(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


@pytest.fixture
def note(tmp_path) -> Path:
    path = tmp_path / "note.txt"
    path.write_text(NOTE, encoding="utf-8")
    return path


# ============================================================================= 15: silently wrong

def test_resume_on_changed_data_is_refused_and_changes_nothing(stopped, data, tmp_path):
    run = copy_of(stopped, tmp_path / "run")
    changed = copy_of(data, tmp_path / "data")
    with open(changed / "dev.jsonl", "a", encoding="utf-8") as f:  # a re-split moved a document into dev
        f.write(json.dumps({"id": "t0#0", "doc": "t0", "offset": 0, "text": "患者有高血压。", "entities": []}) + "\n")
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**config, "data": str(changed)}))
    before = snapshot(run)
    result = invoke("train", "-o", run, "--resume")
    assert_one_line_error(result, "dev.jsonl", "changed since", "data_fingerprint.json")
    assert snapshot(run) == before and not (run / LOCK_FILE).exists()


def test_resume_on_the_same_data_still_works(stopped, tmp_path):
    run = copy_of(stopped, tmp_path / "run")
    result = invoke("train", "-o", run, "--resume")
    assert result.exit_code == 0, result.output
    assert (run / "summary.json").exists()


def brat_corpus(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return folder


def document_spans(out: Path, doc: str) -> list[tuple[int, int, str]]:
    windows = read_windows(out / "train.jsonl")
    return sorted((w.offset + s.start, w.offset + s.end, s.label) for w in windows if w.doc == doc for s in w.spans)


@pytest.mark.parametrize("policy,expected", [
    ("merge", [(3, 13, "Disease")]),
    ("first", [(3, 6, "Disease")]),
    ("split", [(3, 6, "Disease"), (9, 13, "Disease")]),
])
def test_discontinuous_fragments_given_right_to_left_are_read_in_text_order(tmp_path, policy, expected):
    text = "患者有高血压。服用阿司匹林。"
    ann = f"T1\tDisease 9 13;3 6\t{text[9:13]} {text[3:6]}\n"  # the text column in the order the line gives
    raw = brat_corpus(tmp_path / "raw", {"a.txt": text, "a.ann": ann})
    out = tmp_path / "out"
    result = invoke("preprocess", raw, "-o", out, "--dev-ratio", "0", "--discontinuous", policy, "--strict")
    assert result.exit_code == 0, result.output
    assert document_spans(out, "a") == expected


@pytest.mark.parametrize("label", ["Drug-", "-Drug", "Drug--"])
def test_labels_the_tag_scheme_cannot_carry_are_refused_by_every_reader(tmp_path, label):
    text = "患者有高血压。服用阿司匹林。"
    raw = brat_corpus(tmp_path / "raw", {"a.txt": text, "a.ann": f"T1\tDrug 9 13\t阿司匹林\nT2\t{label} 3 6\t高血压\n"})
    out = tmp_path / "out"
    assert_one_line_error(invoke("preprocess", raw, "-o", out), "a.ann:2:", repr(label), "'-'")
    assert_nothing_written(out)
    conll = tmp_path / "c.conll"
    conll.write_text(f"高\tB-{label}\n血\tI-{label}\n压\tI-{label}\n\n", encoding="utf-8")
    assert_one_line_error(invoke("preprocess", conll, "-o", out), "c.conll:1:", "'-'")
    jsonl = tmp_path / "j.jsonl"
    jsonl.write_text(json.dumps({"id": "a", "text": text, "entities": [{"start": 3, "end": 6, "label": label}]}) + "\n")
    assert_one_line_error(invoke("preprocess", jsonl, "-o", out), "j.jsonl:1:", "'-'")
    assert_nothing_written(out)


def test_a_run_whose_labels_the_scheme_cannot_carry_is_refused(finished, tmp_path, note):
    run = copy_of(finished, tmp_path / "run")
    info = json.loads((run / "labels.json").read_text())
    info["labels"] = [label + "-" for label in info["labels"]]
    info["tags"] = ["O"] + [f"{p}-{label}" for label in info["labels"] for p in "BI"]
    (run / "labels.json").write_text(json.dumps(info))
    assert_one_line_error(invoke("predict", run, note), "labels.json is corrupt", "'-'")


STDIN_CASES = {
    "gbk": (NOTE.encode("gbk"), ["<stdin>:1:", "not UTF-8"]),
    "utf-16": (NOTE.encode("utf-16"), ["<stdin>", "UTF-16", "iconv -f UTF-16 -t UTF-8"]),
    "utf-16le-ascii": ("Patient has diabetes mellitus.\n".encode("utf-16-le"), ["<stdin>", "UTF-16LE"]),
    "nul": (b"abc\x00def" + NOTE.encode(), ["<stdin>:1:", "binary"]),
}


@pytest.mark.parametrize("case", sorted(STDIN_CASES))
def test_standard_input_is_checked_exactly_as_a_file(finished, tmp_path, case):
    data, expected = STDIN_CASES[case]
    result = runner.invoke(app, ["predict", str(finished), "-", "-f", "jsonl"], input=data)
    assert_one_line_error(result, *expected)
    path = tmp_path / "same.txt"  # the same bytes as a file: the same message, naming the file
    path.write_bytes(data)
    file_error = assert_one_line_error(invoke("predict", finished, path, "-f", "jsonl"), str(path))
    assert file_error.replace(str(path), "<stdin>").split(";")[0] == assert_one_line_error(result).split(";")[0]


def test_a_byte_order_mark_on_standard_input_is_dropped_with_the_warning(finished):
    result = runner.invoke(app, ["predict", str(finished), "-", "-f", "jsonl"], input=NOTE.encode("utf-8-sig"))
    assert result.exit_code == 0, result.output
    assert "<stdin>: has a UTF-8 byte-order mark" in result.stderr
    row = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(NOTE[e["start"]:e["end"]] == e["text"] for e in row["entities"])


def write_sweep(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path


def finished_run(folder: Path, **config) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps({"best_f1": 0.5}))
    return folder


def test_a_sweep_does_not_adopt_another_models_run_under_an_old_name(tmp_path):
    out = tmp_path / "runs"
    spec = write_sweep(tmp_path / "s.yaml", output=str(out), model="tiny", grid={"crf": [False, True], "seed": [1]})
    # `bert-...` was every transformer's old name: this one is an ALBERT run, and the CRF one a tiny run.
    finished_run(out / "bert-softmax-seed1", model="models/albert-tiny-chinese", crf=False, gru=False, seed=1)
    kept = finished_run(out / "bert-crf-seed1", model="tiny", crf=True, gru=False, seed=1)
    sweep = load_sweep(spec)
    assert [r.name for r in sweep.runs] == ["tiny-softmax-seed1", "bert-crf-seed1"]
    assert sweep.runs[0].run_dir == out / "tiny-softmax-seed1" and sweep.runs[0].status() == "to train"
    assert sweep.runs[1].run_dir == kept and sweep.runs[1].status() == "done"


def test_compare_baseline_refuses_to_test_runs_scored_on_different_gold(tmp_path):
    windows, hits = dev_windows(), hits_per_document()
    # The same dev documents, but one label removed from the CRF runs' gold (their dev.jsonl was edited).
    fewer = [Window(w.id, w.doc, w.offset, w.text, [s for s in w.spans if s.label != "Drug"]) for w in windows]
    for seed in (1, 2):
        study_run(tmp_path / f"softmax-seed{seed}", windows, hits, f1=0.6 + 0.01 * seed, seed=seed)
        study_run(tmp_path / f"crf-seed{seed}", fewer, [1] * len(fewer), f1=0.9 + 0.01 * seed, crf=True, seed=seed)
    row = compare_to_baseline(compare_runs(tmp_path), "bert+softmax", resamples=200).differences[0]
    assert row.verdict() == "not comparable" and row.seeds is None and row.documents is None
    assert "different gold entities for the same dev documents" in row.sentence()
    result = invoke("compare", tmp_path, "--baseline", "bert+softmax", "--resamples", "200")
    assert result.exit_code == 0, result.output
    assert "not comparable" in result.stdout and "better" not in result.stdout
    assert "warning: bert+crf vs bert+softmax: not tested" in result.stderr


@pytest.mark.parametrize("field,value", [("best_f1", 5.0), ("best_f1", -0.1), ("best_precision", 1.5), ("best_recall", 1.01)])
def test_a_score_outside_zero_to_one_in_summary_json_is_not_shown_or_averaged(tmp_path, field, value):
    fake_run(tmp_path / "good-seed1", seed=1, f1=0.6)
    fake_run(tmp_path / "good-seed2", seed=2, f1=0.62)
    broken = fake_run(tmp_path / "broken", seed=3, f1=0.7)
    summary = json.loads((broken / "summary.json").read_text())
    (broken / "summary.json").write_text(json.dumps({**summary, field: value}))
    comparison = compare_runs(tmp_path)
    assert [r.name for r in comparison.runs] == ["good-seed2", "good-seed1"]
    assert comparison.groups[0].mean_f1 == pytest.approx(0.61)
    assert "not a fraction in [0, 1]" in comparison.incomplete[0].reason


def test_a_per_type_score_outside_zero_to_one_is_refused(tmp_path):
    fake_run(tmp_path / "good", f1=0.6)
    fake_run(tmp_path / "broken", f1=0.6, per_type={"Disease": 7.0})
    assert [i.name for i in compare_runs(tmp_path).incomplete] == ["broken"]


def test_preprocess_force_without_a_test_split_removes_the_stale_test_file(tmp_path):
    raw = brat_corpus(tmp_path / "raw", {f"d{i}.txt": "患者有高血压。" for i in range(10)}
                      | {f"d{i}.ann": "T1\tDisease 3 6\t高血压\n" for i in range(10)})
    out = tmp_path / "out"
    assert invoke("preprocess", raw, "-o", out, "--test-ratio", "0.3", "--no-group-by-prefix").exit_code == 0
    assert (out / "test.jsonl").exists()
    result = invoke("preprocess", raw, "-o", out, "--force", "--no-group-by-prefix")
    assert result.exit_code == 0, result.output
    assert not (out / "test.jsonl").exists() and "removed" in result.output
    train = {w.doc for w in read_windows(out / "train.jsonl")}
    dev = {w.doc for w in read_windows(out / "dev.jsonl")}
    assert len(train | dev) == 10  # every document in the new split, none left in an old test set


# ============================================================================= 16: no tracebacks

DEEP_JSON = "[" * 100_000 + "]" * 100_000
RUN_FILES = ["summary.json", "labels.json", "data_fingerprint.json", "encoder/bertner_encoder.json",
             "encoder/config.json", "config.yaml", "metrics.jsonl", "dev_predictions.jsonl"]


def assert_fine_or_one_line(result) -> None:
    """A command that may succeed (it does not read the broken file) or fail, but never with a traceback."""
    if result.exit_code != 0 or result.exception is not None:
        assert_one_line_error(result)


def deeply_nested(run: Path, name: str, levels: int) -> None:
    value = "[" * levels + "]" * levels
    if name == "config.yaml":
        (run / name).write_text(f"model: tiny\ncrf: false\ngru: false\ndropout: {value}\n")
    elif name.endswith(".jsonl"):
        with open(run / name, "a", encoding="utf-8") as f:  # one more line, nested too deep
            f.write(value + "\n")
    else:
        (run / name).write_text(value)


@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize("command", ["evaluate", "predict", "predict-best", "compare", "export"])
def test_a_deeply_nested_run_file_is_one_line(finished, data, tmp_path, note, name, command):
    runs = tmp_path / "runs"
    run = copy_of(finished, runs / "run")
    deeply_nested(run, name, 100_000)
    args = {"evaluate": ["evaluate", run, data / "dev.jsonl"], "predict": ["predict", run, note, "-f", "jsonl"],
            "predict-best": ["predict", note, "--runs", runs, "-f", "jsonl"], "compare": ["compare", runs],
            "export": ["export", run, tmp_path / "hf"]}[command]
    assert_fine_or_one_line(invoke(*args))


@pytest.mark.parametrize("levels", [100_000, 150])
@pytest.mark.parametrize("name", ["summary.json", "config.yaml", "metrics.jsonl", "dev_predictions.jsonl"])
def test_deeply_nested_run_files_never_reach_a_traceback_in_compare_or_report(finished, tmp_path, name, levels):
    runs = tmp_path / "runs"
    run = copy_of(finished, runs / "run")
    deeply_nested(run, name, levels)
    assert_fine_or_one_line(invoke("compare", runs, "--baseline", "tiny+softmax", "--resamples", "100"))
    pytest.importorskip("matplotlib")
    assert_fine_or_one_line(invoke("report", runs, "-o", tmp_path / "r.html", "--resamples", "100"))


@pytest.mark.parametrize("deep", ["a: " + "[" * 100_000, "a: " + "[" * 150 + "]" * 150, "- " * 3000 + "x"],
                         ids=["recursion", "150-levels", "block-list"])
def test_a_deeply_nested_config_or_grid_is_one_line(data, tmp_path, deep):
    config = tmp_path / "c.yaml"
    config.write_text(deep, encoding="utf-8")
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", data, "-o", out, "--config", config), str(config))
    assert_one_line_error(invoke("sweep", config, "--dry-run"), str(config))
    assert not out.exists()


def test_a_deeply_nested_data_labels_json_is_one_line(data, tmp_path):
    copy = copy_of(data, tmp_path / "data")
    (copy / "labels.json").write_text(DEEP_JSON)
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", copy, "-o", out, *SETTINGS), "labels.json")
    assert not out.exists()


def config_file(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / "c.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "gbk":
        path.write_bytes("model: tiny  # 模型\n".encode("gbk"))
    elif kind == "utf-16":
        path.write_bytes("model: tiny\n".encode("utf-16"))
    elif kind == "binary":
        path.write_bytes(b"model: tiny\x00\x01")
    elif kind == "link-loop":
        path.symlink_to(path)
    elif kind == "unreadable":
        path.write_text("model: tiny\n")
        path.chmod(0)
        if os.access(path, os.R_OK):  # root reads anything: a link to nothing cannot be read by anyone
            path.unlink()
            path.symlink_to(tmp_path / "missing-target")
    return path


@pytest.mark.parametrize("kind", ["folder", "gbk", "utf-16", "binary", "link-loop", "unreadable"])
def test_a_config_or_grid_that_cannot_be_read_is_one_line(data, tmp_path, kind):
    path = config_file(tmp_path, kind)
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", data, "-o", out, "--config", path), str(path))
    assert_one_line_error(invoke("sweep", path, "--dry-run"), str(path))
    assert not out.exists()


LONG = "n" * 300


def long_name_commands(finished: Path, data: Path, note: Path, tmp: Path) -> dict[str, list]:
    long = tmp / LONG
    return {
        "preprocess-input": ["preprocess", long], "preprocess-output": ["preprocess", data, "-o", long],
        "train-data": ["train", long, *SETTINGS], "train-output": ["train", data, "-o", long, *SETTINGS],
        "train-config": ["train", data, "--config", long], "train-model": ["train", data, "--model", long, "-o", tmp / "r"],
        "train-nested-output": ["train", data, "-o", long / "run", *SETTINGS],
        "evaluate-run": ["evaluate", long, data / "dev.jsonl"], "evaluate-data": ["evaluate", finished, long],
        "predict-run-or-input": ["predict", long], "predict-input": ["predict", finished, long],
        "predict-output": ["predict", finished, note, "-o", long], "predict-runs": ["predict", note, "--runs", long],
        "export-run": ["export", long, tmp / "hf"], "export-output": ["export", finished, long],
        "compare": ["compare", long], "compare-plot": ["compare", finished, "--plot", long / "plot.png"],
        "report-runs": ["report", long], "report-output": ["report", finished, "-o", long],
        "sweep": ["sweep", long], "sweep-output": ["sweep", long, "-o", long],
    }


@pytest.mark.parametrize("case", sorted(long_name_commands(Path(), Path(), Path(), Path())))
def test_a_path_with_a_name_over_255_bytes_is_one_line_in_every_command(finished, data, note, tmp_path, case):
    args = long_name_commands(finished, data, note, tmp_path)[case]
    assert_one_line_error(invoke(*args), "is 300 bytes long", "at most 255")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt"]


def test_a_long_path_in_a_config_file_is_one_line(data, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(f"output: {tmp_path / LONG / 'run'}\n")
    assert_one_line_error(invoke("train", data, "--config", config, *SETTINGS), "300 bytes")


def test_a_sweep_whose_run_names_would_be_too_long_is_one_line_before_training(data, tmp_path):
    spec = write_sweep(tmp_path / "s.yaml", data=str(data), output=str(tmp_path / "runs"),
                       grid={"model": ["m" * 250], "seed": [1]})  # the folder bert-softmax-mmm...-seed1
    assert_one_line_error(invoke("sweep", spec, "--dry-run"), "too long")
    assert_one_line_error(invoke("sweep", spec), "too long")
    assert not (tmp_path / "runs").exists()


# -- a full disk: every command that writes says so in one line and leaves its output as it was

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"
TORCH_FULL = "[enforce fail at inline_container.cc:626] . PytorchStreamWriter failed writing file data/0: file write failed"


def full_disk(monkeypatch, owner: object, name: str, error: Exception) -> None:
    """The writer `owner.name` fails as that library does on a full disk."""
    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(owner, name, fail)


def train_writers() -> dict[str, tuple[object, str, Exception, str]]:
    """Where training writes, each failing as its library fails on a full disk: (owner, name, error, message)."""
    import torch
    from torch.utils.tensorboard import SummaryWriter

    from bertner import runs
    from bertner.engine import checkpoint

    full = OSError(28, "No space left on device")
    return {
        "weights (safetensors)": (checkpoint, "save_file", RuntimeError(SAFETENSORS_FULL), "No space left on device"),
        "checkpoint (torch.save)": (torch, "save", RuntimeError(TORCH_FULL), "is the disk full"),
        "encoder (transformers)": (runs, "save_encoder", full, "No space left on device; training did not start"),
        "labels.json": (runs, "write_json", full, "No space left on device"),
        "tensorboard": (SummaryWriter, "add_scalar", full, "No space left on device; the run is unfinished"),
    }


@pytest.mark.parametrize("writer", ["weights (safetensors)", "checkpoint (torch.save)", "encoder (transformers)",
                                    "labels.json", "tensorboard"])
def test_train_on_a_full_disk_is_one_line(data, tmp_path, monkeypatch, writer):
    owner, name, error, message = train_writers()[writer]
    full_disk(monkeypatch, owner, name, error)
    out = tmp_path / "run"
    result = invoke("train", data, "-o", out, *SETTINGS, "--max-steps", "2", "--save-every", "1")
    assert_one_line_error(result, str(out), message)


def test_export_on_a_full_disk_is_one_line_and_writes_nothing(finished, tmp_path, monkeypatch):
    from transformers import modeling_utils

    full_disk(monkeypatch, modeling_utils, "safe_save_file", RuntimeError(SAFETENSORS_FULL))  # save_pretrained's writer
    out = tmp_path / "hf"
    assert_one_line_error(invoke("export", finished, out), f"cannot write {out}", "No space left on device",
                          "nothing was written")
    assert_nothing_written(out)


@pytest.mark.parametrize("command", ["report", "compare-plot"])
def test_report_and_plot_on_a_full_disk_are_one_line(tmp_path, monkeypatch, command):
    pytest.importorskip("matplotlib")
    windows, hits = dev_windows(), hits_per_document()
    runs = tmp_path / "runs"
    study_run(runs / "a", windows, hits, f1=0.6)
    real_replace = os.replace

    def replace(source, target, *args, **kwargs):
        if str(target).endswith((".html", ".png")):
            raise OSError(28, "No space left on device")
        return real_replace(source, target, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    out = tmp_path / ("page.html" if command == "report" else "plot.png")
    args = ["report", runs, "-o", out] if command == "report" else ["compare", runs, "--plot", out]
    assert_one_line_error(invoke(*args), f"cannot write {out}: No space left on device; nothing was written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no temporary left


def tmpfs(size: str, folder: Path) -> bool:
    """Whether a `size` tmpfs can be mounted at `folder` in a private mount namespace (unshare)."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs {folder}"],
                           capture_output=True)
    return probe.returncode == 0


def test_train_on_a_really_full_disk_is_one_line(data, tmp_path):
    """A real full disk (a 100 KiB tmpfs): the weights do not fit, whichever library writes them."""
    disk = tmp_path / "disk"
    if shutil.which("unshare") is None or not tmpfs("100k", disk):
        pytest.skip("no private mount namespace here to make a small disk in")
    script = (f"mount -t tmpfs -o size=100k tmpfs {disk} && {sys.executable} -m bertner train {data} -o {disk}/run "
              + " ".join(SETTINGS) + " --max-steps 2")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "No space left on device" in errors[0], result.stderr


def test_train_into_an_unwritable_parent_is_one_line(data, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    try:
        assert_one_line_error(invoke("train", data, "-o", locked / "run", *SETTINGS), "not writable")
        assert_one_line_error(invoke("train", data, "-o", blocker / "run", *SETTINGS), f"{blocker} is a file")
        spec = write_sweep(tmp_path / "s.yaml", data=str(data), output=str(locked / "runs"), grid={"seed": [1]})
        assert_one_line_error(invoke("sweep", spec), "not writable")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o755)


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    """A tiny BERT folder as transformers saves one: config, tokenizer, model.safetensors."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("model") / "bert"
    folder.mkdir()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(NOTE + "患者今日复诊糖尿病胰岛素阿司匹林肌酐血压"))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(folder / "vocab.txt")).save_pretrained(str(folder))
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(folder))
    return folder


class Pickled:
    def __reduce__(self):
        return (print, ("this ran",))


def broken_weights(model_folder: Path, tmp_path: Path, kind: str) -> Path:
    import torch

    folder = copy_of(model_folder, tmp_path / kind)
    weights = folder / "model.safetensors"
    if kind == "truncated":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif kind == "empty":
        weights.write_bytes(b"")
    elif kind == "pickled":
        weights.unlink()
        torch.save({"x": Pickled()}, folder / "pytorch_model.bin")
    elif kind == "truncated-bin":
        weights.unlink()
        torch.save({"x": torch.zeros(3)}, folder / "pytorch_model.bin")
        (folder / "pytorch_model.bin").write_bytes((folder / "pytorch_model.bin").read_bytes()[:100])
    return folder


@pytest.mark.parametrize("kind", ["truncated", "empty", "pickled", "truncated-bin"])
@pytest.mark.parametrize("option", ["--model", "--init-embeddings"])
def test_broken_weights_in_a_model_folder_are_one_line(model_folder, data, tmp_path, kind, option, capfd):
    folder = broken_weights(model_folder, tmp_path, kind)
    out = tmp_path / "run"
    extra = ["--model", "bilstm", "--init-embeddings", folder] if option == "--init-embeddings" else ["--model", folder]
    result = invoke("train", data, "-o", out, *extra, "--max-steps", "1", "--num-threads", "1")
    assert_one_line_error(result, str(folder))
    if kind == "pickled":
        assert "refused" in result.output and "this ran" not in result.output + capfd.readouterr().out
    assert not out.exists()


@pytest.mark.parametrize("command", ["report", "compare-plot"])
def test_an_output_file_that_is_a_folder_is_one_line_before_any_work(tmp_path, command):
    runs = tmp_path / "runs"
    fake_run(runs / "a")
    out = tmp_path / ("page.html" if command == "report" else "plot.png")
    out.mkdir()
    (out / "kept").write_text("x")
    for force in ([], ["--force"]) if command == "report" else ([],):
        args = ["report", runs, "-o", out, *force] if command == "report" else ["compare", runs, "--plot", out]
        assert_one_line_error(invoke(*args), f"cannot write {out}: it is a folder")
    assert sorted(p.name for p in out.iterdir()) == ["kept"]


@pytest.mark.parametrize("offset", [4_000_000_000_000, 10**30, 99_999_999])  # 3e9 itself: 3 GB on main
def test_a_huge_jsonl_offset_is_one_line_not_gigabytes(finished, tmp_path, offset):
    data = tmp_path / "dev.jsonl"
    data.write_text(json.dumps({"id": "a#1", "doc": "a", "offset": offset, "text": "患者有高血压。", "entities": []}) + "\n")
    start = time.perf_counter()
    assert_one_line_error(invoke("evaluate", finished, data), f"{data}:1:", "offset")
    out = tmp_path / "out"
    assert_one_line_error(invoke("preprocess", data, "-o", out), f"{data}:1:", "offset")
    assert time.perf_counter() - start < 30 and not out.exists()


def test_ctrl_c_while_the_commands_import_is_one_line(monkeypatch, capsys):
    import runpy

    import bertner.cli

    real_import = builtins.__import__

    def interrupted(name, globals=None, locals=None, fromlist=(), level=0):
        if name == "bertner.cli" and fromlist and "preprocess" in fromlist:  # torch is loading
            raise KeyboardInterrupt
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as stop:
        runpy.run_path(bertner.cli.__file__, run_name="bertner.cli")
    assert stop.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_a_real_ctrl_c_while_the_command_starts_is_one_line():
    root = Path(__file__).resolve().parents[1]
    # -X importtime reports each import as it ends: once typer's is done, the commands are loading.
    process = subprocess.Popen([sys.executable, "-X", "importtime", "-m", "bertner", "--help"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.split("|")[-1].strip() == "typer":
            process.send_signal(signal.SIGINT)
            break
    rest, stderr = process.communicate(timeout=300)
    if process.returncode == 0:
        pytest.skip("the commands had loaded before the signal arrived")
    messages = [line for line in stderr.splitlines() if not line.startswith("import time:")]
    assert process.returncode == 130 and messages == ["error: interrupted"], stderr[-2000:]


def test_ctrl_c_in_a_command_is_one_error_line(finished, note, monkeypatch):
    from bertner import predict

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(predict.Predictor, "from_run", interrupted)
    result = invoke("predict", finished, note, "-f", "jsonl")
    assert result.exit_code == 130
    assert_one_line_error(result, "interrupted")


# ============================================================================= 17: clear messages

@pytest.mark.parametrize("encoding,named", [("utf-16", "UTF-16"), ("utf-16-be", "UTF-16BE"), ("utf-32", "UTF-32")])
def test_a_utf16_text_is_named_with_the_iconv_command(finished, tmp_path, encoding, named):
    text = "Patient 患者 has hypertension 高血压.\n"
    raw = brat_corpus(tmp_path / "raw", {"a.txt": text.encode(encoding), "a.ann": ""})
    out = tmp_path / "out"
    line = assert_one_line_error(invoke("preprocess", raw, "-o", out), f"is {named} text, not UTF-8",
                                 f"iconv -f {named} -t UTF-8 {raw / 'a.txt'}")
    assert "binary" not in line
    assert_one_line_error(invoke("predict", finished, raw / "a.txt", "-f", "jsonl"), f"is {named} text")
    assert_nothing_written(out)


NAME_251 = "p" * 247 + ".out"  # 251 characters: a name the file system takes


@pytest.mark.parametrize("command", ["predict-jsonl", "predict-brat", "preprocess", "export", "report"])
def test_an_output_name_of_251_characters_is_written(finished, data, note, tmp_path, command):
    if command == "report":
        pytest.importorskip("matplotlib")
    out = tmp_path / NAME_251
    args = {"predict-jsonl": ["predict", finished, note, "-f", "jsonl", "-o", out],
            "predict-brat": ["predict", finished, note, "-f", "brat", "-o", out],
            "preprocess": ["preprocess", data / "train.jsonl", "-o", out], "export": ["export", finished, out],
            "report": ["report", finished, "-o", out]}[command]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_partial_output_of_a_251_character_name_is_kept(finished, tmp_path, monkeypatch):
    from bertner import writers

    notes = tmp_path / "notes"
    notes.mkdir()
    for name in ("a", "b"):
        (notes / f"{name}.txt").write_text(NOTE, encoding="utf-8")
    real = writers.jsonl_line

    def second_crashes(prediction):
        if prediction.doc == "b":
            raise RuntimeError("a bug")
        return real(prediction)

    monkeypatch.setattr(writers, "jsonl_line", second_crashes)
    out = tmp_path / NAME_251
    invoke("predict", finished, notes, "-f", "jsonl", "-o", out)
    partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert len(partial) == 1 and len(os.fsencode(partial[0].name)) <= 255 and not out.exists()


@pytest.mark.parametrize("content,expected", [
    ("", "config.yaml is empty"),
    ("# nothing\n", "config.yaml is empty"),
    ("crf: false\n", "config.yaml is incomplete (no model, gru"),
])
@pytest.mark.parametrize("command", ["predict", "evaluate", "export"])
def test_an_empty_or_cut_config_yaml_in_a_run_says_so(finished, data, note, tmp_path, content, expected, command):
    run = copy_of(finished, tmp_path / "run")
    (run / "config.yaml").write_text(content)
    args = {"predict": ["predict", run, note], "evaluate": ["evaluate", run, data / "dev.jsonl"],
            "export": ["export", run, tmp_path / "hf"]}[command]
    line = assert_one_line_error(invoke(*args), expected)
    assert "weights do not fit" not in line


def test_predict_on_a_full_disk_says_nothing_was_written_and_keeps_no_partial(finished, tmp_path, monkeypatch):
    from bertner import writers

    notes = tmp_path / "notes"
    notes.mkdir()
    for name in ("a", "b", "c"):
        (notes / f"{name}.txt").write_text(NOTE, encoding="utf-8")
    real = writers.jsonl_line

    def disk_fills(prediction):
        if prediction.doc == "c":
            raise OSError(28, "No space left on device")
        return real(prediction)

    monkeypatch.setattr(writers, "jsonl_line", disk_fills)
    for fmt, name in (("jsonl", "pred.jsonl"), ("brat", "pred")):
        out = tmp_path / name
        if fmt == "brat":
            monkeypatch.setattr(writers, "brat_ann", lambda p: disk_fills(p) and "")
        assert_one_line_error(invoke("predict", finished, notes, "-f", fmt, "-o", out),
                              f"cannot write {out}: No space left on device; nothing was written")
        assert not out.exists() and not (tmp_path / f"{name}.partial").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes"]


def test_a_lock_naming_a_reused_pid_is_taken_over(data, tmp_path):
    if b"bertner" in Path("/proc/1/cmdline").read_bytes():
        pytest.skip("PID 1 runs bertner here")
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text(f"1 {socket.gethostname()} training a run\n")
    result = invoke("train", data, "-o", run, *SETTINGS, "--max-steps", "1")
    assert result.exit_code == 0, result.output
    assert "PID 1, which held it, now belongs to another program; taking the lock over" in result.output
    assert (run / "summary.json").exists() and not (run / LOCK_FILE).exists()


def test_a_lock_naming_a_process_started_after_it_was_written_is_taken_over(data, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    lock = run / LOCK_FILE
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # bertner"])
    try:
        lock.write_text(f"{later.pid} {socket.gethostname()} training a run\n")
        os.utime(lock, (time.time() - 3600, time.time() - 3600))  # written an hour before that process began
        result = invoke("train", data, "-o", run, *SETTINGS, "--max-steps", "1")
    finally:
        later.kill()
        later.wait()
    assert result.exit_code == 0, result.output
    assert f"PID {later.pid}, which held it, now belongs to another program" in result.output


# ============================================================================= 18: other

@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_folders_that_commands_write_get_the_umask_mode(finished, data, note, tmp_path, mask):
    previous = os.umask(mask)
    try:
        outputs = {"preprocess": tmp_path / "pre", "brat": tmp_path / "pred", "export": tmp_path / "hf"}
        assert invoke("preprocess", data / "train.jsonl", "-o", outputs["preprocess"]).exit_code == 0
        assert invoke("predict", finished, note, "-f", "brat", "-o", outputs["brat"]).exit_code == 0
        assert invoke("export", finished, outputs["export"]).exit_code == 0
    finally:
        os.umask(previous)
    for folder in outputs.values():
        assert stat.S_IMODE(folder.stat().st_mode) == 0o777 & ~mask, folder
        for file in folder.iterdir():
            assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask, file


HUGE = "100000000000000000"


@pytest.mark.parametrize("command,option,value,expected", [
    ("compare", "--resamples", HUGE, "--resamples must be at least 100 and at most 100000"),
    ("compare", "--resamples", "-1", "--resamples must be at least 100"),
    ("report", "--resamples", HUGE, "--resamples must be at least 100 and at most 100000"),
    ("report", "--documents", "-1", "--documents must be at least 0"),
    ("evaluate", "--errors", "-1", "--errors must be at least 0"),
    ("evaluate", "--errors", HUGE, "--errors must be at least 0 and at most 5"),
])
def test_counts_out_of_range_are_one_line(finished, data, tmp_path, command, option, value, expected):
    page = tmp_path / "r.html"
    args = {"compare": ["compare", finished, "--baseline", "tiny+softmax"], "report": ["report", finished, "-o", page],
            "evaluate": ["evaluate", finished, data / "dev.jsonl"]}[command]
    start = time.perf_counter()
    assert_one_line_error(invoke(*args, option, value), expected)
    assert time.perf_counter() - start < 20 and not page.exists()


def test_a_500000_run_grid_is_refused_at_once(tmp_path):
    spec = write_sweep(tmp_path / "s.yaml", data="d", grid={"seed": list(range(500)), "lr": [1e-5 * (i + 1) for i in range(100)],
                                                             "dropout": [0.01 * i for i in range(10)]})
    start = time.perf_counter()
    assert_one_line_error(invoke("sweep", spec, "--dry-run"), "500,000 combinations", "at most 10,000")
    assert time.perf_counter() - start < 10


def test_a_time_budget_too_short_for_one_step_still_trains_one(data, tmp_path):
    out = tmp_path / "run"
    result = invoke("train", data, "-o", out, *SETTINGS, "--time-budget", "1e-9")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] >= 1 and summary["stopped_by"] == "time_budget"


@pytest.mark.parametrize("name", ["a\nb", "a\rb", "tab\there", "back\\slash", "esc\x1b[2J"])
def test_conll_output_of_a_file_name_with_a_line_break_reads_back(finished, tmp_path, name):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / f"{name}.txt").write_text(NOTE, encoding="utf-8")
    (notes / "plain.txt").write_text(NOTE, encoding="utf-8")
    out = tmp_path / "pred.conll"
    assert invoke("predict", finished, notes, "-f", "conll", "-o", out).exit_code == 0
    starts = [line for line in out.read_text(encoding="utf-8").split("\n") if line.startswith("-DOCSTART-")]
    assert len(starts) == 2
    corpus = read_corpus(out, "conll")  # bertner reads its own output back
    tokens = sum(len(d.text) for d in corpus.all_documents())
    assert tokens == 2 * len([c for c in NOTE if not c.isspace()])
    assert invoke("evaluate", finished, out).exit_code == 0
