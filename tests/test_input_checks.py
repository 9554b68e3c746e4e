"""Issue 12 for the data readers, through the CLI: nothing lost, nothing silently wrong.

Each broken input ends in one `error:` line, a non-zero exit and no output (not even a temporary
folder); each odd but valid one reads completely. No model is trained here: `predict` checks its
inputs before it loads the run, so a stub run directory is enough.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli_helpers import assert_nothing_written, assert_one_line_error, invoke
from bertner.data.jsonl import read_windows


TEXT, ANN = "患者有高血压。服用阿司匹林。", "T1\tDisease 3 6\t高血压\nT2\tDrug 9 13\t阿司匹林\n"








def write_files(folder: Path, files: dict[str, str | bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return folder


def brat_corpus(folder: Path, extra: dict[str, str | bytes] | None = None) -> Path:
    """Two good documents plus the files in `extra`."""
    return write_files(folder, {"a.txt": TEXT, "a.ann": ANN, "b.txt": TEXT, "b.ann": ANN, **(extra or {})})


def preprocess(raw: Path, out: Path, *args):
    return invoke("preprocess", raw, "-o", out, "--dev-ratio", "0", "--no-group-by-prefix", *args)


# ----------------------------------------------------------------------------- item 4: .ann line ends

def test_cr_only_ann_keeps_every_entity(tmp_path):
    raw = brat_corpus(tmp_path / "raw", {"cr.txt": TEXT, "cr.ann": ANN.replace("\n", "\r")})
    out = tmp_path / "out"
    result = preprocess(raw, out, "--strict")
    assert result.exit_code == 0, result.output
    assert "differ" not in result.output
    spans = sorted((w.offset + s.start, w.offset + s.end, s.label) for w in read_windows(out / "train.jsonl") if w.doc == "cr" for s in w.spans)
    assert spans == [(3, 6, "Disease"), (9, 13, "Drug")]


def test_text_column_cut_at_a_line_end_is_an_error_without_strict(tmp_path):
    raw = brat_corpus(tmp_path / "raw", {"cut.txt": "患者有高血\n压。", "cut.ann": "T1\tDisease 3 7\t高血\n"})
    out = tmp_path / "out"
    assert_one_line_error(preprocess(raw, out), "cut.ann:1:", "across a line end")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- item 5: CoNLL tag column

def test_conll_trailing_tab_keeps_the_tag(tmp_path):
    raw = write_files(tmp_path / "raw", {"x.bio": "糖\tB-Disease\t\n尿\tI-Disease\t\n病\tI-Disease\t\n\n"})
    out = tmp_path / "out"
    result = preprocess(raw / "x.bio", out)
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["read"]["entities"] == 1 and stats["splits"]["train"]["entities"] == {"Disease": 1}


def test_conll_empty_tag_column_is_an_error_with_file_and_line(tmp_path):
    raw = write_files(tmp_path / "raw", {"x.bio": "糖\tB-Disease\n尿\t\n"})
    out = tmp_path / "out"
    assert_one_line_error(preprocess(raw / "x.bio", out), "x.bio:2:", "non-empty tag")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- item 6: one label rule for every reader

BAD_LABELS = [None, ["Disease"], {"a": 1}, "", "Dis\tease", "Dis\nease", "Dis\rease", "Dis\x00ease"]


@pytest.mark.parametrize("label", BAD_LABELS, ids=repr)
def test_jsonl_bad_label_is_one_line_at_read_time(tmp_path, label):
    good = {"id": "g#0", "doc": "g", "offset": 0, "text": "高血压", "entities": [{"start": 0, "end": 3, "label": "Disease"}]}
    bad = {**good, "id": "b#0", "doc": "b", "entities": [{"start": 0, "end": 3, "label": label}]}
    raw = write_files(tmp_path / "raw", {"train.jsonl": json.dumps(good) + "\n" + json.dumps(bad) + "\n"})
    out = tmp_path / "out"
    assert_one_line_error(preprocess(raw / "train.jsonl", out), "train.jsonl:2: label")
    assert_nothing_written(out)


@pytest.mark.parametrize("label", ["Dis\x0bease", "Dis\x1fease", "Dis\u2028ease", "Dis\ufeffease"], ids=repr)
@pytest.mark.parametrize("reader", ["brat", "conll"])
def test_brat_and_conll_labels_follow_the_same_rule(tmp_path, label, reader):
    files = {"x.txt": TEXT, "x.ann": f"T1\t{label} 3 6\t高血压\n"} if reader == "brat" else {"x.bio": f"糖\tO\n病\tB-{label}\n"}
    raw = write_files(tmp_path / "raw", files)
    out = tmp_path / "out"
    where = "x.ann:1:" if reader == "brat" else "x.bio:2:"
    assert_one_line_error(preprocess(raw, out), where, "label", "holds U+")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- .ann offsets: ASCII digits only

@pytest.mark.parametrize("offsets", ["² 6", "3 ²", "٣ ٦", "３ ６", "३ 6", "𝟑 6", "3 6;٩ ١٣", "3 6;9 1３"])
def test_non_ascii_digit_offsets_are_one_line(tmp_path, offsets):
    raw = brat_corpus(tmp_path / "raw", {"bad.txt": TEXT, "bad.ann": f"T1\tDisease {offsets}\t高血压\n"})
    out = tmp_path / "out"
    assert_one_line_error(preprocess(raw, out), "bad.ann:1:", "malformed offsets", "ASCII digits")
    assert_nothing_written(out)


# ----------------------------------------------------------------------------- inputs that are no file

def make_odd(path: Path, kind: str) -> None:
    if kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text(TEXT, encoding="utf-8")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "broken-link":
        path.symlink_to("nowhere")
    else:  # a pipe: opening one to read would wait for a writer forever
        os.mkfifo(path)


ODD_KINDS = ["folder", "loop", "broken-link", "pipe"]
ODD_MESSAGE = {"folder": "is a folder", "loop": "a link that loops", "broken-link": "a link to nothing", "pipe": "not a regular file"}


@pytest.mark.parametrize("kind", ODD_KINDS)
@pytest.mark.parametrize("corpus, name", [("brat", "odd.txt"), ("brat", "odd.ann"), ("conll", "odd.bio"), ("jsonl", "odd.jsonl")])
def test_preprocess_refuses_an_input_named_like_a_file_that_is_none(tmp_path, kind, corpus, name):
    if corpus == "brat":
        raw = brat_corpus(tmp_path / "raw")
    elif corpus == "conll":
        raw = write_files(tmp_path / "raw", {"x.bio": "糖\tB-Disease\n"})
    else:
        row = {"id": "g#0", "doc": "g", "offset": 0, "text": "高血压", "entities": []}
        raw = write_files(tmp_path / "raw", {"x.jsonl": json.dumps(row) + "\n"})
    make_odd(raw / name, kind)
    out = tmp_path / "out"
    assert_one_line_error(preprocess(raw, out, "--format", corpus), f"{raw / name}:", ODD_MESSAGE[kind])
    assert_nothing_written(out)


@pytest.mark.parametrize("kind", ["loop", "broken-link", "pipe"])
def test_preprocess_input_itself_no_file(tmp_path, kind):
    odd = tmp_path / "odd.bio"
    make_odd(odd, kind)
    out = tmp_path / "out"
    assert_one_line_error(preprocess(odd, out), str(odd), ODD_MESSAGE[kind])
    assert_nothing_written(out)


def stub_run(folder: Path) -> Path:
    """A run directory complete enough to pass the check `predict` makes before reading inputs."""
    for name in ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("", encoding="utf-8")
    (folder / "summary.json").write_text('{"format": 1}', encoding="utf-8")
    return folder


@pytest.mark.parametrize("kind", ["loop", "broken-link", "pipe"])
def test_predict_refuses_an_input_named_like_a_file_that_is_none(tmp_path, kind):
    notes = write_files(tmp_path / "notes" / "deeper", {"a.txt": TEXT}).parent
    make_odd(notes / "deeper" / "odd.txt", kind)
    result = invoke("predict", stub_run(tmp_path / "run"), notes, "--format", "jsonl")
    assert_one_line_error(result, str(notes / "deeper" / "odd.txt"), ODD_MESSAGE[kind])


def test_predict_searches_a_folder_named_like_a_file_and_never_follows_folder_links(tmp_path):
    from bertner.predict import gather_documents

    notes = write_files(tmp_path / "notes", {"a.txt": TEXT})
    make_odd(notes / "sub.txt", "folder")  # a folder called sub.txt holding inside.txt
    (notes / "again").symlink_to(notes)  # a folder link that loops
    assert [d.id for d in gather_documents([str(notes)])] == ["a", "sub.txt/inside"]


@pytest.mark.parametrize("kind", ODD_KINDS)
@pytest.mark.parametrize("side", ["predicted", "gold"])
def test_evaluate_refuses_an_input_named_like_a_file_that_is_none(tmp_path, kind, side):
    predicted, gold = brat_corpus(tmp_path / "predicted"), brat_corpus(tmp_path / "gold")
    odd = (predicted if side == "predicted" else gold) / "odd.ann"
    make_odd(odd, kind)
    assert_one_line_error(invoke("evaluate", predicted, gold), f"{odd}:", ODD_MESSAGE[kind])


# ----------------------------------------------------------------------------- outputs that cannot be written

@pytest.mark.parametrize("below", ["out", "deeper/out"])
def test_preprocess_output_under_a_file_is_one_line_before_reading(tmp_path, below):
    raw = brat_corpus(tmp_path / "raw", {"bad.txt": TEXT, "bad.ann": "T1\tDisease 3 99\t高血压\n"})  # would fail if read
    blocker = tmp_path / "file"
    blocker.write_text("a file", encoding="utf-8")
    out = blocker / below
    assert_one_line_error(preprocess(raw, out), f"cannot write {out}: {blocker} is a file, not a folder")
    assert blocker.read_text() == "a file"


@pytest.mark.parametrize("fmt, name", [("jsonl", "out.jsonl"), ("brat", "out")])
def test_predict_output_under_a_file_is_one_line_before_tagging(tmp_path, fmt, name):
    notes = write_files(tmp_path / "notes", {"a.txt": TEXT})
    blocker = tmp_path / "file"
    blocker.write_text("a file", encoding="utf-8")
    out = blocker / name
    result = invoke("predict", stub_run(tmp_path / "run"), notes, "--format", fmt, "-o", out)  # the stub run cannot tag
    assert_one_line_error(result, f"cannot write {out}: {blocker} is a file, not a folder")


@pytest.mark.parametrize("kind", ["loop", "broken-link"])
def test_preprocess_output_that_is_a_broken_link_is_one_line(tmp_path, kind):
    out = tmp_path / "out"
    make_odd(out, kind)
    assert_one_line_error(preprocess(brat_corpus(tmp_path / "raw"), out), f"cannot write {out}: it is a broken link or a link that loops")
    assert out.is_symlink() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


@pytest.mark.parametrize("exists", [True, False])
def test_preprocess_output_folder_not_writable_is_one_line(tmp_path, exists):
    raw, parent = brat_corpus(tmp_path / "raw"), tmp_path / "locked"
    parent.mkdir()
    out = parent / "out"
    locked = out if exists else parent
    if exists:
        out.mkdir()
    locked.chmod(0o555)  # refused for root too: no write bit at all is read-only by intent
    try:
        assert_one_line_error(preprocess(raw, out), f"cannot write {out}: {locked} is not writable")
        assert_nothing_written(out)
    finally:
        locked.chmod(0o755)


@pytest.mark.parametrize("failing", [2, 5])  # 2: writing dev.jsonl in the temporary folder; 5: moving the first file into place
def test_preprocess_write_failing_midway_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, failing):
    from bertner import fileio

    real_replace, calls = os.replace, []

    def replace(source, target):
        calls.append(target)
        if len(calls) == failing:
            raise PermissionError(13, "Permission denied")
        return real_replace(source, target)

    monkeypatch.setattr(fileio.os, "replace", replace)
    out = tmp_path / "out"
    assert_one_line_error(preprocess(brat_corpus(tmp_path / "raw"), out), f"cannot write {out}: Permission denied; nothing was written")
    assert len(calls) == failing
    assert_nothing_written(out)
