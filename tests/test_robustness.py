"""Hostile inputs through the CLI: broken corpora, broken run directories, odd text to tag, output folders.

Every case ends in one clear line and a non-zero exit (never a traceback), or in a correct result;
never in a half-written output. One tiny run is trained per module and copied for each broken case.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from pathlib import Path

import pytest
from synthetic import LEXICON, write_synthetic

from bertner.cli import app
from cli_helpers import assert_nothing_written, assert_one_line_error, invoke, runner
from bertner.config import TrainConfig
from bertner.data.jsonl import read_windows
from bertner.engine.trainer import train










# ----------------------------------------------------------------------------- broken corpora

GOOD_TEXT, GOOD_ANN = "患者有高血压。服用阿司匹林。", "T1\tDisease 3 6\t高血压\nT2\tDrug 9 13\t阿司匹林\n"


def corpus(folder: Path, extra: dict[str, str | bytes]) -> Path:
    """Three good documents plus the files in `extra` (name -> text or raw bytes)."""
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"good{i}.txt").write_text(GOOD_TEXT, encoding="utf-8")
        (folder / f"good{i}.ann").write_text(GOOD_ANN, encoding="utf-8")
    for name, data in extra.items():
        (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return folder


BROKEN_CORPORA = {
    "truncated-offsets": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tDisease 3 6\t高血压\nT2\tDrug 9"},
                          ["bad.ann:2:", "malformed offsets '9'"]),
    "truncated-label": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tDisease 3 6\t高血压\nT2\tDr"},
                        ["bad.ann:2:", "missing label or offsets"]),
    "truncated-id": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tDisease 3 6\t高血压\nT2"}, ["bad.ann:2:", "malformed annotation line"]),
    "offsets-past-end": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tDisease 3 60\t高血压\n"},
                         ["bad.ann:1:", "go past the end of bad.txt (14 characters)"]),
    "latin-1-txt": ({"bad.txt": "Patient café, hypertension".encode("latin-1"), "bad.ann": "T1\tDisease 0 7\tPatient\n"},
                    ["bad.txt:1:", "not UTF-8 (byte 0xe9", "re-save the file as UTF-8"]),
    "gbk-txt": ({"bad.txt": GOOD_TEXT.encode("gbk"), "bad.ann": GOOD_ANN}, ["bad.txt:1:", "not UTF-8"]),
    "gbk-ann": ({"bad.txt": GOOD_TEXT, "bad.ann": GOOD_ANN.encode("gbk")}, ["bad.ann:1:", "not UTF-8"]),
    "binary-txt": ({"bad.txt": bytes(range(256)) * 8, "bad.ann": ""}, ["bad.txt:1:", "looks like a binary file"]),
    "binary-valid-utf8": ({"bad.txt": b"abc\x00\x01\x02", "bad.ann": ""}, ["bad.txt:1:", "looks like a binary file"]),
    "label-with-space": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tChronic Disease 3 6\t高血压\n"},
                         ["bad.ann:1:", "a label is one word (no spaces)"]),
    "duplicate-id": ({"bad.txt": GOOD_TEXT, "bad.ann": "T1\tDisease 3 6\t高血压\nT1\tDrug 9 13\t阿司匹林\n"},
                     ["bad.ann:2:", "entity id T1 is used twice (first on line 1)"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN_CORPORA))
def test_broken_corpus_file_is_one_clear_line(tmp_path, case):
    extra, expected = BROKEN_CORPORA[case]
    out = tmp_path / "out"
    result = invoke("preprocess", corpus(tmp_path / "raw", extra), "-o", out)
    assert_one_line_error(result, *expected)
    assert_nothing_written(out)


def preprocess_ok(raw: Path, out: Path, *args) -> list:
    result = invoke("preprocess", raw, "-o", out, "--dev-ratio", "0", "--no-group-by-prefix", *args)
    assert result.exit_code == 0, result.output
    return read_windows(out / "train.jsonl")


def doc_spans(windows, doc: str) -> list[tuple[int, int, str, str]]:
    """A document's spans in document offsets, with their text, from its windows."""
    return sorted((w.offset + s.start, w.offset + s.end, s.label, w.text[s.start : s.end]) for w in windows if w.doc == doc for s in w.spans)


def test_empty_txt_and_ann_is_read_as_an_empty_document(tmp_path):
    windows = preprocess_ok(corpus(tmp_path / "raw", {"empty.txt": "", "empty.ann": ""}), tmp_path / "out")
    assert not [w for w in windows if w.doc == "empty"]
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["read"]["files"] == 4 and stats["check"]["adds_up"]


def test_mixed_crlf_and_lf_offsets_count_the_carriage_returns(tmp_path):
    text = "第一行\r\n患者有高血压\n服用胰岛素\r\n复查肌酐。"
    starts = {w: text.index(w) for w in ("高血压", "胰岛素", "肌酐")}
    assert starts == {"高血压": 8, "胰岛素": 14, "肌酐": 21}  # \r counted: 3 + \r\n + 3 ...
    ann = "".join(f"T{i}\t{label} {starts[w]} {starts[w] + len(w)}\t{w}\n"
                  for i, (label, w) in enumerate([("Disease", "高血压"), ("Drug", "胰岛素"), ("Test", "肌酐")], 1))
    windows = preprocess_ok(corpus(tmp_path / "raw", {"mixed.txt": text, "mixed.ann": ann}), tmp_path / "out", "--strict")
    assert doc_spans(windows, "mixed") == [(8, 11, "Disease", "高血压"), (14, 17, "Drug", "胰岛素"), (21, 23, "Test", "肌酐")]
    mixed = [w for w in windows if w.doc == "mixed"]
    assert mixed and all(w.text == text[w.offset : w.offset + len(w.text)] for w in mixed)  # \r kept, offsets exact


def test_unicode_label_works(tmp_path):
    extra = {"zh.txt": GOOD_TEXT, "zh.ann": "T1\t疾病 3 6\t高血压\nT2\t药物_β 9 13\t阿司匹林\n"}
    windows = preprocess_ok(corpus(tmp_path / "raw", extra), tmp_path / "out")
    assert doc_spans(windows, "zh") == [(3, 6, "疾病", "高血压"), (9, 13, "药物_β", "阿司匹林")]
    assert set(json.loads((tmp_path / "out" / "labels.json").read_text())["labels"]) == {"Disease", "Drug", "疾病", "药物_β"}


def test_one_megabyte_single_line_is_windowed_quickly(tmp_path):
    rng = random.Random(7)
    text = "".join(rng.choice("患者今日复诊自述良好无不适建议继续观察饮食控制运动") for _ in range(1_000_000))
    positions = range(17, len(text) - 10, 9973)
    text = list(text)
    for p in positions:
        text[p : p + 3] = "高血压"
    text = "".join(text)
    ann = "".join(f"T{i}\tDisease {p} {p + 3}\t高血压\n" for i, p in enumerate(positions, 1))
    start = time.perf_counter()
    windows = preprocess_ok(corpus(tmp_path / "raw", {"big.txt": text, "big.ann": ann}), tmp_path / "out", "--max-chars", "256")
    assert time.perf_counter() - start < 20
    big = sorted((w for w in windows if w.doc == "big"), key=lambda w: w.offset)
    assert len(big) >= len(text) // 256 and max(len(w.text) for w in big) <= 256
    assert "".join(w.text for w in big) == text  # cut, never changed
    assert doc_spans(windows, "big") == [(p, p + 3, "Disease", "高血压") for p in positions]  # none lost or cut


# ----------------------------------------------------------------------------- run directories

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(run, data): one tiny run that finds the synthetic entities well enough for offsets to matter."""
    base = tmp_path_factory.mktemp("robust")
    data = write_synthetic(base / "data", n_train=160, n_dev=16, seed=2)
    run = base / "run"
    train(TrainConfig(
        data=str(data), output=str(run), model="tiny", epochs=4, batch_size=16, warmup_ratio=0.05, tiny_layers=1,
        tiny_hidden=32, tiny_heads=2, lr=5e-3, log_every=100, seed=1, num_threads=1, device="cpu",
    ))
    return run, data


@pytest.fixture
def broken_copy(trained, tmp_path):
    def make(breaker) -> Path:
        copy = tmp_path / "run"
        shutil.copytree(trained[0], copy)
        breaker(copy)
        return copy

    return make


def _summary_with(**changes):
    def breaker(run: Path) -> None:
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, **changes}))

    return breaker


def _config_with(**changes):
    def breaker(run: Path) -> None:
        import yaml

        config = yaml.safe_load((run / "config.yaml").read_text())
        (run / "config.yaml").write_text(yaml.safe_dump({**config, **changes}))

    return breaker


def _labels_with(data=None, **changes):
    def breaker(run: Path) -> None:
        labels = json.loads((run / "labels.json").read_text())
        labels.update(changes)
        if data is not None:
            labels["data"] = {**labels.get("data", {}), **data}
        (run / "labels.json").write_text(json.dumps(labels))

    return breaker


BROKEN_RUNS = {
    "no-model": (lambda r: (r / "model.safetensors").unlink(), "is not a complete run directory: missing model.safetensors"),
    "no-encoder-config": (lambda r: (r / "encoder" / "config.json").unlink(), "missing encoder/config.json"),
    "no-encoder-folder": (lambda r: shutil.rmtree(r / "encoder"), "missing encoder/config.json"),
    "no-summary": (lambda r: (r / "summary.json").unlink(), "missing summary.json"),
    "corrupt-summary": (lambda r: (r / "summary.json").write_text('{"format": 1, "best'), "summary.json is corrupt"),
    "summary-not-an-object": (lambda r: (r / "summary.json").write_text("[1, 2]"), "summary.json is corrupt (expected a JSON object"),
    "newer-format": (_summary_with(format=99), "was written by a newer bertner (run format 99, this one reads 1); upgrade bertner"),
    "format-not-a-number": (_summary_with(format="2"), "summary.json is corrupt (format '2' is not a number)"),
    "corrupt-model": (lambda r: (r / "model.safetensors").write_bytes(random.Random(0).randbytes(4096)),
                      "model.safetensors: cannot read weights"),
    "empty-model": (lambda r: (r / "model.safetensors").write_bytes(b""), "model.safetensors: cannot read weights"),
    "corrupt-config": (lambda r: (r / "config.yaml").write_text("crf: [true\n"), "config.yaml is corrupt ("),
    "labels-without-tags": (lambda r: (r / "labels.json").write_text('{"labels": ["Drug"]}'), "labels.json is corrupt (no list of tags)"),
    "corrupt-encoder-config": (lambda r: (r / "encoder" / "config.json").write_text("{"), "encoder"),
    # Edited run files: each value goes through the same checks as a YAML config or a data folder's labels.json.
    "no-tokenizer": (lambda r: (r / "encoder" / "tokenizer.json").unlink(), "encoder: its tokenizer has 5 tokens"),
    "config-max-length-text": (_config_with(max_length="abc"), "config.yaml: max_length must be a number, got 'abc'"),
    "config-max-length-negative": (_config_with(max_length=-5), "config.yaml: max_length must be at least 8, got -5"),
    "config-dropout-text": (_config_with(dropout="x"), "config.yaml: dropout must be a number, got 'x'"),
    "config-gru-hidden-text": (_config_with(gru_hidden="big"), "config.yaml: gru_hidden must be a number, got 'big'"),
    "config-crf-text": (_config_with(crf="yes"), "config.yaml: crf must be true or false"),
    "config-scheme-unknown": (_config_with(scheme="XYZ"), "config.yaml: scheme must be one of BIO, IOB1, BIOES"),
    "labels-max-chars-text": (_labels_with(data={"max_chars": "abc"}), "labels.json is corrupt (data: max_chars must be"),
    "labels-policy-unknown": (_labels_with(data={"discontinuous": "glue"}), "labels.json is corrupt (data: discontinuous must be"),
    "labels-tags-reordered": (_labels_with(tags=["O", "I-Disease", "B-Disease", "B-Drug", "I-Drug", "B-Test", "I-Test"]),
                              "labels.json is corrupt (its tags are not the BIO tags of its labels"),
    "summary-f1-text": (_summary_with(best_f1="0.9"), "summary.json is corrupt (best_f1 is '0.9'"),
    "encoder-meta-not-an-object": (lambda r: (r / "encoder" / "bertner_encoder.json").write_text("[]"), "bertner_encoder.json: corrupt"),
}


@pytest.mark.parametrize("case", sorted(BROKEN_RUNS))
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_broken_run_directory_is_one_clear_line(broken_copy, trained, tmp_path, case, command):
    breaker, expected = BROKEN_RUNS[case]
    run = broken_copy(breaker)
    text = tmp_path / "note.txt"
    text.write_text("患者有高血压，服用二甲双胍。", encoding="utf-8")
    target = text if command == "predict" else trained[1] / "dev.jsonl"
    result = invoke(command, run, target)
    assert_one_line_error(result, str(run), expected)


def test_no_checkpoint_but_unfinished_run_suggests_resume(broken_copy, tmp_path):
    def unfinished(run: Path) -> None:
        (run / "summary.json").unlink()
        (run / "checkpoint").mkdir()
        (run / "checkpoint" / "trainer_state.pt").write_bytes(b"")

    run = broken_copy(unfinished)
    (tmp_path / "note.txt").write_text("高血压", encoding="utf-8")
    result = invoke("predict", run, tmp_path / "note.txt")
    assert_one_line_error(result, "missing summary.json", f"training did not finish: bertner train --output {run} --resume")


# ----------------------------------------------------------------------------- options out of range

BAD_TRAIN_OPTIONS = {
    "log-every-0": (["--log-every", "0"], "--log-every must be at least 1, got 0"),
    "gru-layers-0": (["--gru", "--gru-layers", "0"], "--gru-layers must be at least 1, got 0"),
    "num-threads-negative": (["--num-threads", "-1"], "--num-threads must be at least 0"),
    "tiny-hidden-0": (["--tiny-hidden", "0"], "--tiny-hidden must be at least 1, got 0"),
    "tiny-heads-do-not-divide": (["--tiny-hidden", "30", "--tiny-heads", "4"], "--tiny-hidden 30 must be a multiple of --tiny-heads 4"),
    "device-bogus": (["--device", "bogus"], "--device must be auto, cpu, cuda or cuda:N, got 'bogus'"),
    "lr-nan": (["--lr", "nan"], "--lr must be a finite number"),
    "warmup-ratio-1": (["--warmup-ratio", "1"], "--warmup-ratio must be in [0, 1)"),
    "seed-negative": (["--seed", "-1"], "--seed must be at least 0"),
}


@pytest.mark.parametrize("case", sorted(BAD_TRAIN_OPTIONS))
def test_train_options_out_of_range_are_one_line_and_create_nothing(trained, tmp_path, case):
    options, expected = BAD_TRAIN_OPTIONS[case]
    out = tmp_path / "run"
    result = invoke("train", trained[1], "-o", out, "--tiny-layers", "1", "--tiny-hidden", "32", "--max-steps", "2",
                    "--num-threads", "1", *options)
    assert_one_line_error(result, expected)
    assert not out.exists()


@pytest.mark.parametrize("line,expected", [
    ("epochs: .inf", "epochs must be a finite number, got inf"),
    ("batch_size: .nan", "batch_size must be a finite number, got nan"),
    ("max_steps: -.inf", "max_steps must be a finite number"),
    ("seed: 1.0e+30", "seed must be at least 0 and at most"),
    ("log_every: 0", "log_every must be at least 1"),
])
def test_config_file_values_out_of_range_are_one_line(trained, tmp_path, line, expected):
    config = tmp_path / "c.yaml"
    config.write_text(line + "\n", encoding="utf-8")
    out = tmp_path / "run"
    result = invoke("train", trained[1], "-o", out, "--config", config, "--tiny-layers", "1", "--tiny-hidden", "32",
                    "--epochs", "1", "--max-steps", "2", "--num-threads", "1")  # a file value is checked even where a flag wins
    assert_one_line_error(result, f"{config}: " + expected)  # the file is named
    assert not out.exists()


@pytest.mark.parametrize("command", ["predict", "evaluate"])
@pytest.mark.parametrize("options,expected", [
    (["-b", "0"], "--batch-size must be at least 1, got 0"),
    (["-b", "-1"], "--batch-size must be at least 1, got -1"),
    (["--device", "bogus"], "--device must be auto, cpu, cuda or cuda:N"),
])
def test_predict_and_evaluate_options_out_of_range_are_one_line(trained, tmp_path, command, options, expected):
    note = tmp_path / "note.txt"
    note.write_text("患者有高血压，服用二甲双胍。", encoding="utf-8")
    target = note if command == "predict" else trained[1] / "dev.jsonl"
    extra = ["--format", "jsonl"] if command == "predict" else []
    result = invoke(command, trained[0], target, *extra, *options)
    assert_one_line_error(result, expected)
    assert result.stdout.strip() == ""  # nothing tagged, nothing printed


# ----------------------------------------------------------------------------- odd text to tag

def predict_jsonl(run: Path, *inputs: Path, extra=()) -> dict[str, dict]:
    result = invoke("predict", run, *inputs, "--format", "jsonl", *extra)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    return {row["doc"]: row for row in rows}


def assert_offsets_match(row: dict, text: str) -> None:
    for e in row["entities"]:
        assert 0 <= e["start"] < e["end"] <= len(text)
        assert text[e["start"] : e["end"]] == e["text"], e


ODD_TEXTS = {
    "emoji": "患者😀有高血压🩺，服用二甲双胍💊后复查肌酐。👨‍👩‍👧家属陪同。",
    "control": "患者\x07有高血压，\x1b[0m服用\u200b二甲双胍\x0c。复查\u200b肌酐\x00？",
    "mixed-scripts": "患者 patient مريض 有高血压 hypertension ارتفاع ضغط الدم 😀 服用二甲双胍 metformin，复查HbA1c。",
    "combining": "e\u0301患者有冠心病\ufe0f，Å服用胰岛素\u0301。",
    "crlf": "患者有高血压\r\n服用阿司匹林\r\n\r\n复查血压。",
}


def test_odd_text_gives_offsets_whose_text_matches(trained, tmp_path):
    run = trained[0]
    paths = []
    for name, text in ODD_TEXTS.items():
        if name == "control":
            text = text.replace("\x00", "")  # a NUL makes a file binary: see the binary test
        path = tmp_path / f"{name}.txt"
        path.write_bytes(text.encode("utf-8"))
        paths.append(path)
    rows = predict_jsonl(run, *paths)
    assert sorted(rows) == sorted(ODD_TEXTS)
    found = set()
    for name, row in rows.items():
        text = (tmp_path / f"{name}.txt").read_bytes().decode("utf-8")
        assert_offsets_match(row, text)
        found |= {(e["text"], e["label"]) for e in row["entities"]}
    # The model really tags through the odd characters (it learnt these words).
    assert {("二甲双胍", "Drug"), ("肌酐", "Test")} <= found


def test_whitespace_only_input_is_nothing_to_tag(trained, tmp_path):
    blank = tmp_path / "blank.txt"
    blank.write_text(" \n\t\r\n\u3000 ", encoding="utf-8")
    result = invoke("predict", trained[0], blank)
    assert_one_line_error(result, "nothing to tag")
    assert "empty, skipped" in result.output  # the warning names the file
    result = runner.invoke(app, ["predict", str(trained[0]), "-"], input="  \n ")
    assert_one_line_error(result, "standard input is empty")


def test_binary_input_to_predict_is_refused(trained, tmp_path):
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert_one_line_error(invoke("predict", trained[0], binary), "looks like a binary file")


def test_one_megabyte_single_line_document(trained, tmp_path):
    rng = random.Random(3)
    words = [w for ws in LEXICON.values() for w in ws]
    pieces, size = [], 0
    while size < 1_000_000:
        piece = "".join(rng.choice("患者今日复诊自述良好无不适建议继续观察") for _ in range(rng.randint(5, 40))) + rng.choice(words)
        pieces.append(piece)
        size += len(piece)
    text = "".join(pieces)
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    row = predict_jsonl(trained[0], path, extra=("--device", "cpu"))["big"]
    seconds = time.perf_counter() - start
    assert seconds < 120, seconds
    assert_offsets_match(row, text)
    assert len(row["entities"]) > 10_000  # about 40,000 words planted; tagged through the whole document
    assert row["entities"][-1]["end"] > len(text) - 1000  # to the very end


# ----------------------------------------------------------------------------- output folders

@pytest.fixture
def two_notes(tmp_path) -> Path:
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("患者有高血压。", encoding="utf-8")
    (notes / "b.txt").write_text("服用二甲双胍。", encoding="utf-8")
    return notes


def test_brat_output_into_a_non_empty_folder_needs_force(trained, two_notes, tmp_path):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "mine.txt").write_text("keep me", encoding="utf-8")
    result = invoke("predict", trained[0], two_notes, "--format", "brat", "-o", out)
    assert_one_line_error(result, f"{out} already exists; pass --force")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    result = invoke("predict", trained[0], two_notes, "--format", "brat", "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.ann", "a.txt", "b.ann", "b.txt", "bertner_predict.json", "mine.txt"]


def test_brat_output_onto_a_file_is_refused(trained, two_notes, tmp_path):
    out = tmp_path / "pred"
    out.write_text("a file", encoding="utf-8")
    for extra in ((), ("--force",)):
        assert_one_line_error(invoke("predict", trained[0], two_notes, "--format", "brat", "-o", out, *extra), "is a file")
    assert out.read_text() == "a file"


@pytest.mark.parametrize("failure", [KeyboardInterrupt, OSError(28, "No space left on device")])
@pytest.mark.parametrize("fmt", ["brat", "jsonl"])
def test_a_write_that_fails_midway_leaves_nothing(trained, two_notes, tmp_path, monkeypatch, failure, fmt):
    from bertner import writers

    real = writers.brat_ann if fmt == "brat" else writers.jsonl_line
    calls = []

    def second_fails(prediction):
        calls.append(prediction.doc)
        if len(calls) == 2:
            raise failure
        return real(prediction)

    monkeypatch.setattr(writers, "brat_ann" if fmt == "brat" else "jsonl_line", second_fails)
    out = tmp_path / ("pred" if fmt == "brat" else "pred.jsonl")
    result = invoke("predict", trained[0], two_notes, "--format", fmt, "-o", out)
    assert calls == ["a", "b"]
    if failure is KeyboardInterrupt:
        assert result.exit_code == 130 and "interrupted" in result.output and "Traceback" not in result.output
    else:
        assert_one_line_error(result, f"cannot write {out}: No space left on device; nothing was written")
    assert not out.exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}.")]


@pytest.fixture
def nested_notes(tmp_path) -> Path:
    """Notes in a folder with a subfolder: predict writes a.ann and sub/b.ann."""
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.txt").write_text("患者有高血压。", encoding="utf-8")
    (notes / "sub" / "b.txt").write_text("服用二甲双胍。", encoding="utf-8")
    return notes


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_force_replaces_only_what_predict_writes(trained, nested_notes, tmp_path):
    out = tmp_path / "pred"
    (out / "sub").mkdir(parents=True)
    (out / "sub" / "mine.txt").write_text("keep me", encoding="utf-8")
    (out / "other").mkdir()
    (out / "other" / "notes.md").write_text("keep me too", encoding="utf-8")
    (out / "a.ann").write_text("old", encoding="utf-8")
    result = invoke("predict", trained[0], nested_notes, "--format", "brat", "-o", out, "--force")
    assert result.exit_code == 0, result.output
    assert files_under(out) == ["a.ann", "a.txt", "bertner_predict.json", "other/notes.md", "sub/b.ann", "sub/b.txt", "sub/mine.txt"]
    assert (out / "sub" / "mine.txt").read_text(encoding="utf-8") == "keep me"
    assert (out / "a.ann").read_text(encoding="utf-8") != "old"


def test_a_path_component_that_is_a_file_stops_before_anything_is_written(trained, nested_notes, tmp_path):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "a.ann").write_text("old", encoding="utf-8")
    (out / "sub").write_text("a file where predict needs a folder", encoding="utf-8")
    result = invoke("predict", trained[0], nested_notes, "--format", "brat", "-o", out, "--force")
    assert_one_line_error(result, f"{out / 'sub'} is a file", "nothing was written")
    assert files_under(out) == ["a.ann", "sub"]
    assert (out / "a.ann").read_text(encoding="utf-8") == "old"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pred.")]


def test_jsonl_output_onto_a_folder_is_refused(trained, two_notes, tmp_path):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "mine.txt").write_text("keep me", encoding="utf-8")
    for extra in ((), ("--force",)):
        result = invoke("predict", trained[0], two_notes, "--format", "jsonl", "-o", out, *extra)
        assert_one_line_error(result, f"{out} is a folder")
        assert files_under(out) == ["mine.txt"]


def test_progress_shows_in_a_pipe_for_any_input(trained, two_notes, monkeypatch):
    from bertner.cli import _progress as progress

    monkeypatch.setattr(progress, "LINE_EVERY_S", 0.0)  # a line at every step instead of every few seconds
    result = invoke("predict", trained[0], two_notes, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["doc"] for line in result.stdout.splitlines()] == ["a", "b"]  # progress stays off stdout
    lines = [line for line in result.stderr.splitlines() if line.startswith("tagging:")]
    assert lines, result.stderr
    assert "14 / 14 characters (100%)" in lines[-1] and "2 / 2 documents" in lines[-1]


@pytest.fixture
def crashing_notes(tmp_path, monkeypatch):
    """40 notes, and a tagger that crashes on its second group of documents."""
    from bertner import predict

    notes = tmp_path / "many"
    notes.mkdir()
    for i in range(40):
        (notes / f"n{i:02d}.txt").write_text("患者有高血压，服用二甲双胍。", encoding="utf-8")
    real, calls = predict.tag_windows, []

    def second_group_crashes(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("a crash while tagging")
        return real(*args, **kwargs)

    monkeypatch.setattr(predict, "tag_windows", second_group_crashes)
    return notes


def test_stdout_keeps_the_documents_tagged_before_a_crash(trained, crashing_notes):
    """Streaming: documents are tagged in groups and each is written as soon as its group is done."""
    result = invoke("predict", trained[0], crashing_notes, "--format", "jsonl", "--batch-size", "1")
    assert isinstance(result.exception, RuntimeError), result.output
    written = [json.loads(line)["doc"] for line in result.stdout.splitlines()]
    assert 0 < len(written) < 40 and written == [f"n{i:02d}" for i in range(len(written))]


@pytest.mark.parametrize("fmt,name", [("jsonl", "out.jsonl"), ("conll", "out.conll"), ("html", "out.html"), ("brat", "out")])
def test_a_crash_with_output_keeps_the_finished_documents_as_partial(trained, crashing_notes, tmp_path, fmt, name):
    output = tmp_path / name
    result = invoke("predict", trained[0], crashing_notes, "--format", fmt, "--batch-size", "1", "-o", output)
    assert isinstance(result.exception, RuntimeError), result.output
    partial = tmp_path / f"{name}.partial"
    assert not output.exists() and f"they are in {partial}" in " ".join(result.stderr.split())
    if fmt == "jsonl":
        kept = [json.loads(line)["doc"] for line in partial.read_text(encoding="utf-8").splitlines()]
    elif fmt == "conll":
        kept = [line.split()[-1] for line in partial.read_text(encoding="utf-8").splitlines() if line.startswith("-DOCSTART-")]
    elif fmt == "html":
        kept = re.findall(r'<section class="document"><h2>([^<]*)</h2>', partial.read_text(encoding="utf-8"))
    else:
        kept = sorted(p.stem for p in partial.glob("*.ann"))
    assert 0 < len(kept) < 40 and kept == [f"n{i:02d}" for i in range(len(kept))]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary left behind

# ----------------------------------------------------------------------------- security checks

ROOT = Path(__file__).resolve().parents[1] / "bertner"


def sources() -> dict[str, str]:
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in ROOT.rglob("*.py")}


def test_torch_load_always_weights_only_and_yaml_always_safe():
    import re

    for name, source in sources().items():
        for call in re.findall(r"torch\.load\([^)]*\)", source):
            assert "weights_only=True" in call, f"{name}: {call}"
        assert not re.search(r"yaml\.(load|unsafe_load|full_load)\(", source), name
        assert not re.search(r"trust_remote_code\s*=\s*True", source), name
        assert "pickle.load" not in source, name


def test_run_directory_files_cannot_point_outside_it(broken_copy, tmp_path):
    """Loading a run opens fixed names inside it: paths written in its files are never followed."""
    missing = tmp_path / "does-not-exist"

    def hostile(run: Path) -> None:
        meta_path = run / "encoder" / "bertner_encoder.json"
        meta = json.loads(meta_path.read_text())
        meta_path.write_text(json.dumps({**meta, "name": f"{missing}/../../etc", "path": str(missing)}))
        config = (run / "config.yaml").read_text()
        config = "\n".join(line for line in config.splitlines() if not line.startswith(("data:", "output:", "model:")))
        (run / "config.yaml").write_text(f"{config}\ndata: {missing}\noutput: {missing}\nmodel: {missing}\n")
        labels = json.loads((run / "labels.json").read_text())
        (run / "labels.json").write_text(json.dumps({**labels, "data": {"source": str(missing)}}))

    run = broken_copy(hostile)
    note = tmp_path / "note.txt"
    note.write_text("患者有高血压，服用二甲双胍。", encoding="utf-8")
    rows = predict_jsonl(run, note)
    assert_offsets_match(rows["note"], note.read_text(encoding="utf-8"))
    assert not missing.exists()


def test_settings_that_have_no_effect_are_named(trained, tmp_path):
    result = invoke("train", trained[1], "-o", tmp_path / "run", "--tiny-layers", "1", "--tiny-hidden", "32",
                    "--max-steps", "1", "--num-threads", "1", "--gru-hidden", "8", "--rnn-hidden", "16", "--crf-lr-mult", "10")
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert ("have no effect here and are ignored: --gru-hidden (needs --gru), --rnn-hidden (needs --model bilstm), "
            "--crf-lr-mult (needs --crf)") in warning, warning
    quiet = invoke("train", trained[1], "-o", tmp_path / "run2", "--tiny-layers", "1", "--tiny-hidden", "32",
                   "--max-steps", "1", "--num-threads", "1", "--crf", "--crf-lr-mult", "10")
    assert quiet.exit_code == 0 and "no effect" not in quiet.stderr
