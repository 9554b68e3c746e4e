"""`bertner preprocess` end to end through the CLI: bad input, refusing to overwrite, Ruijin checks."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from conftest import MSRA, RUIJIN_TRAIN, need
from typer.testing import CliRunner

from bertner.cli import app
from bertner.data.jsonl import read_windows, write_windows
from bertner.errors import DataError
from bertner.spans import Span, Window

runner = CliRunner()



def brat(folder: Path, docs: dict[str, tuple[str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (text, ann) in docs.items():
        (folder / f"{name}.txt").write_text(text, encoding="utf-8", newline="")
        (folder / f"{name}.ann").write_text(ann, encoding="utf-8", newline="")
    return folder


GOOD = {f"{a}_{b}": ("患者有高血压。服用阿司匹林。", "T1\tDisease 3 6\t高血压\nT2\tDrug 9 13\t阿司匹林\n") for a in range(4) for b in range(2)}


def preprocess(*args: str):
    return runner.invoke(app, ["preprocess", *map(str, args)])


def assert_no_output(out: Path):
    assert not out.exists() or not any(out.iterdir())
    assert not any(p.name.startswith(f".{out.name}.") for p in out.parent.iterdir())  # no temp folder left


def test_good_corpus_writes_everything(tmp_path):
    out = tmp_path / "out"
    result = preprocess(brat(tmp_path / "raw", GOOD), "-o", out, "--dev-ratio", "0.25", "--test-ratio", "0.25")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["dev.jsonl", "labels.json", "stats.json", "test.jsonl", "train.jsonl"]
    assert f"to {out}" in result.output
    labels = json.loads((out / "labels.json").read_text())
    assert labels == {"labels": ["Disease", "Drug"], "source": str(tmp_path / "raw"), "format": "brat", "discontinuous": "merge", "max_chars": 256}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["check"]["adds_up"] and stats["read"]["files"] == 8
    assert {n: s["documents"] for n, s in stats["splits"].items()} == {"train": 4, "dev": 2, "test": 2}


def test_no_test_file_without_test_ratio_and_dev_always_written(tmp_path):
    out = tmp_path / "out"
    result = preprocess(brat(tmp_path / "raw", GOOD), "-o", out, "--dev-ratio", "0")
    assert result.exit_code == 0, result.output
    assert (out / "dev.jsonl").read_text() == "" and not (out / "test.jsonl").exists()


def test_default_output_is_data_processed(tmp_path, monkeypatch):
    raw = brat(tmp_path / "raw", GOOD)
    monkeypatch.chdir(tmp_path)
    result = preprocess(raw)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "processed" / "train.jsonl").exists() and "data/processed" in result.output


def test_refuses_output_with_data_unless_force(tmp_path):
    raw, out = brat(tmp_path / "raw", GOOD), tmp_path / "out"
    assert preprocess(raw, "-o", out).exit_code == 0
    result = preprocess(raw, "-o", out)
    assert result.exit_code == 1 and "already holds data" in result.output and "--force" in result.output
    assert preprocess(raw, "-o", out, "--force").exit_code == 0


@pytest.mark.parametrize(
    "docs, message",
    [
        ({"a": ("短文", "T1\tDisease 1 9\t文\n")}, "a.ann:1: offsets"),
        ({"a": ("短文", "T1\tDisease 0 1\t短\nT2 Disease 0 1 短\n")}, "a.ann:2: malformed"),
        ({"a": ("短文\r\n高血压", "T1\tDisease 4 7\t高血压\nT2\tDisease 4 9\t高血压\n")}, "a.ann:2: offsets"),
    ],
)
def test_bad_brat_fails_with_file_and_line_and_leaves_nothing(tmp_path, docs, message):
    out = tmp_path / "out"
    result = preprocess(brat(tmp_path / "raw", docs), "-o", out)
    assert result.exit_code == 1 and "error:" in result.output and message in result.output
    assert "Traceback" not in result.output
    assert_no_output(out)


def test_crlf_offsets(tmp_path):
    out = tmp_path / "out"
    raw = brat(tmp_path / "raw", {"a": ("短文\r\n高血压。", "T1\tDisease 4 7\t高血压\n")})
    result = preprocess(raw, "-o", out, "--dev-ratio", "0")
    assert result.exit_code == 0, result.output
    row = json.loads((out / "train.jsonl").read_text().splitlines()[-1])
    assert row["entities"][0]["text"] == "高血压" and row["offset"] + row["entities"][0]["start"] == 4


def test_bom_warns(tmp_path):
    raw = tmp_path / "raw"
    brat(raw, {"a": ("\ufeff高血压", "T1\tDisease 0 3\t高血压\n")})
    result = preprocess(raw, "-o", tmp_path / "out", "--dev-ratio", "0")
    assert result.exit_code == 0 and "BOM stripped" in result.output and "a.txt" in result.output


def test_non_utf8(tmp_path):
    raw = brat(tmp_path / "raw", {"a": ("x", "")})
    (raw / "a.txt").write_bytes("第一行\n高血压".encode("gb18030"))
    result = preprocess(raw, "-o", tmp_path / "out")
    assert result.exit_code == 1 and "a.txt:1: not UTF-8" in result.output


def test_txt_without_ann_warns_and_strict_fails(tmp_path):
    raw = brat(tmp_path / "raw", GOOD)
    (raw / "lonely.txt").write_text("x", encoding="utf-8")
    result = preprocess(raw, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "lonely.txt: no matching .ann file; skipped" in result.output
    out = tmp_path / "strict"
    result = preprocess(raw, "-o", out, "--strict")
    assert result.exit_code == 1 and "lonely.txt: has no matching .ann file" in result.output
    assert_no_output(out)


def test_ann_without_txt(tmp_path):
    raw = brat(tmp_path / "raw", GOOD)
    (raw / "orphan.ann").write_text("T1\tX 0 1\tx\n", encoding="utf-8")
    result = preprocess(raw, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "orphan.ann: no matching .txt file; skipped" in result.output
    assert preprocess(raw, "-o", tmp_path / "s", "--strict").exit_code == 1


def test_text_mismatch_warns_with_count_and_strict_fails(tmp_path):
    docs = dict(GOOD)
    docs["9_1"] = ("高血压。", "T1\tDisease 0 3\t低血压\n")
    raw = brat(tmp_path / "raw", docs)
    result = preprocess(raw, "-o", tmp_path / "out")
    assert result.exit_code == 0 and "1 .ann texts differ from their .txt slice" in result.output
    result = preprocess(raw, "-o", tmp_path / "strict", "--strict")
    assert result.exit_code == 1 and "9_1.ann:1: T1 text" in result.output


def test_empty_folder(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.ann").write_text("", encoding="utf-8")
    result = preprocess(tmp_path / "raw", "-o", tmp_path / "out")
    assert result.exit_code == 1 and "no brat .txt + .ann pairs found" in result.output


def test_conll_stray_inside_tag(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "x.bio").write_text("我\tO\n\n北\tI-LOC\n京\tI-LOC\n", encoding="utf-8")
    out = tmp_path / "out"
    result = preprocess(tmp_path / "raw" / "x.bio", "-o", out)
    assert result.exit_code == 1 and "x.bio:3: tag I-LOC" in result.output and "--repair-tags" in result.output
    assert_no_output(out)
    result = preprocess(tmp_path / "raw" / "x.bio", "-o", out, "--repair-tags", "--dev-ratio", "0")
    assert result.exit_code == 0 and "1  stray I-/E- tags" in result.output


def test_bad_options(tmp_path):
    raw = brat(tmp_path / "raw", GOOD)
    for args, message in [
        (["--dev-ratio", "0.6", "--test-ratio", "0.5"], "below 1"),
        (["--discontinuous", "glue"], "unknown --discontinuous"),
        (["--format", "xml"], "unknown --format"),
        (["--max-chars", "0"], "--max-chars"),
    ]:
        result = preprocess(raw, "-o", tmp_path / "out", *args)
        assert result.exit_code == 1 and message in result.output, (args, result.output)


def test_jsonl_reader_validates(tmp_path):
    path = tmp_path / "w.jsonl"
    write_windows(path, [Window("d#0", "d", 5, "高血压", [Span(0, 3, "Disease")])])
    assert read_windows(path)[0].spans == [Span(0, 3, "Disease")]
    good = path.read_text()
    for bad, message in [
        ("{not json\n", "w.jsonl:2: not valid JSON"),
        (good.replace('"text": "高血压"}', '"text": "低血压"}'), "w.jsonl:2: entity text"),
        (good.replace('"end": 3', '"end": 9'), "w.jsonl:2: entity offsets 0-9 are out of range"),
    ]:
        path.write_text(good + bad, encoding="utf-8")
        with pytest.raises(DataError, match=message):
            read_windows(path)


def test_jsonl_output_reads_back_as_input(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    assert preprocess(brat(tmp_path / "raw", GOOD), "-o", first, "--dev-ratio", "0.25").exit_code == 0
    result = preprocess(first, "-o", second, "--format", "jsonl")
    assert result.exit_code == 0, result.output
    assert "given by the input files" in result.output
    for name in ("train.jsonl", "dev.jsonl"):
        assert (first / name).read_text() == (second / name).read_text()


def test_ruijin_done_when(tmp_path):
    out = tmp_path / "out"
    result = preprocess(need(RUIJIN_TRAIN), "-o", out, "--dev-ratio", "0.2")
    assert result.exit_code == 0, result.output
    stats = json.loads((out / "stats.json").read_text())
    ids, prefixes, entities = {}, {}, {}
    for name in ("train", "dev"):
        rows = [json.loads(line) for line in (out / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
        for row in rows:
            for e in row["entities"]:
                assert e["text"] == row["text"][e["start"]:e["end"]]
        ids[name] = {r["doc"] for r in rows}
        prefixes[name] = {d.split("_")[0] for d in ids[name]}
        entities[name] = sum(len(r["entities"]) for r in rows)
        assert stats["splits"][name]["windows"] == len(rows)
        assert sum(stats["splits"][name]["entities"].values()) == entities[name]
    assert not ids["train"] & ids["dev"] and not prefixes["train"] & prefixes["dev"]
    assert stats["splits"]["train"]["documents"] + stats["splits"]["dev"]["documents"] == 291
    assert stats["splits"]["train"]["characters"] + stats["splits"]["dev"]["characters"] == 2_559_357
    check = stats["check"]
    assert check["adds_up"] and check["kept"] == entities["train"] + entities["dev"]
    assert check["entities_read"] == 110_593 and stats["read"]["text_mismatches"] == 6
    assert stats["changes"]["discontinuous_merged"] == 9_913


def test_msra_folder_uses_given_split(tmp_path):
    out = tmp_path / "out"
    result = preprocess(need(MSRA), "-o", out, "--repair-tags")
    assert result.exit_code == 0, result.output
    assert "given by the input files" in result.output
    stats = json.loads((out / "stats.json").read_text())
    assert stats["splits"]["test"]["documents"] == 4631 and stats["read"]["repaired_tags"] == 17


# ----------------------------------------------------------------------------- issue 12: nothing lost, nothing silently wrong

@pytest.mark.parametrize("label, message", [
    (None, "label null is not a string"),
    (["Disease"], 'label ["Disease"] is not a string'),
    (7, "label 7 is not a string"),
    ("", "label '' is empty"),
    ("Dis\tease", "label 'Dis\\tease' holds U+0009"),
    ("Dis\nease", "label 'Dis\\nease' holds U+000A"),
    ("Dis ease", "label 'Dis ease' holds U+0020"),
    ("\ud800", "label '\\ud800' holds U+D800 (a lone surrogate)"),
])
def test_jsonl_labels_are_checked_as_read(tmp_path, label, message):
    path = tmp_path / "w.jsonl"
    row = {"id": "d#0", "doc": "d", "offset": 0, "text": "高血压", "entities": [{"start": 0, "end": 3, "label": label}]}
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"w\.jsonl:1: " + re.escape(message)):
        read_windows(path)


@pytest.mark.parametrize("field", ["start", "end", "offset"])
def test_jsonl_booleans_are_not_offsets(tmp_path, field):
    row = {"id": "d#0", "doc": "d", "offset": 0, "text": "高血压", "entities": [{"start": 0, "end": 3, "label": "X"}]}
    if field == "offset":
        row["offset"] = False
    else:
        row["entities"][0][field] = True  # a bool is an int in Python: it would read as 1
    path = tmp_path / "w.jsonl"
    path.write_text(json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"w\.jsonl:1: "):
        read_windows(path)


def test_jsonl_cr_only_line_ends(tmp_path):
    path = tmp_path / "w.jsonl"
    write_windows(path, [Window(f"d{i}#0", f"d{i}", 0, "高血压", [Span(0, 3, "Disease")]) for i in range(3)])
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r"))
    assert [w.doc for w in read_windows(path)] == ["d0", "d1", "d2"]


@pytest.mark.parametrize("line, message", [
    ('{"text": "abc", "offset": ' + "9" * 5000 + "}", "Exceeds the limit"),
    ("[" * 100_000 + "]" * 100_000, "nested more than 100 levels deep"),
])
def test_jsonl_that_python_cannot_hold_is_one_error(tmp_path, line, message):
    path = tmp_path / "w.jsonl"
    path.write_text(line + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"w\.jsonl:1: cannot read this JSON \(" + message):
        read_windows(path)
