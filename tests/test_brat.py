"""brat reader: fragments, ignored lines, CRLF, BOM, encodings and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from bertner.data.brat import read_brat_folder
from bertner.errors import DataError
from conftest import RUIJIN_TRAIN, need


def pair(folder: Path, name: str, text: str | bytes, ann: str | bytes) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.txt").write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    (folder / f"{name}.ann").write_bytes(ann if isinstance(ann, bytes) else ann.encode("utf-8"))


def test_entities_fragments_and_ignored_lines(tmp_path):
    text = "患者有2型糖尿病和高血压。"
    ann = (
        "T1\tDisease 3 8\t2型糖尿病\n"
        "T2\tDisease 3 4;5 8\t2 糖尿病\n"
        "R1\tRel Arg1:T1 Arg2:T2\n"
        "A1\tNegated T1\n"
        "#1\tAnnotatorNotes T1\tnote\n"
        "N1\tReference T1 db:1\tx\n"
        "*\tEquiv T1 T2\n"
        "E1\tEvent:T1\n"
        "M1\tNegation T1\n"
    )
    pair(tmp_path, "a", text, ann)
    docs, report = read_brat_folder(tmp_path)
    entity = docs[0].entities[1]
    assert entity.fragments == ((3, 4), (5, 8)) and entity.discontinuous and entity.line == 2
    assert report.entities == 2 and report.discontinuous == 1
    assert report.ignored == {"relation": 1, "attribute": 2, "note": 1, "normalization": 1, "equivalence": 1, "event": 1}
    assert not report.text_mismatches


def test_crlf_counts_two_characters(tmp_path):
    text = "第一行\r\n高血压\r\n"
    pair(tmp_path, "a", text, "T1\tDisease 5 8\t高血压\n")  # 5 = 3 chars + \r + \n
    docs, report = read_brat_folder(tmp_path)
    assert docs[0].text == text and report.crlf_files == 1
    assert docs[0].text[5:8] == "高血压" and not report.text_mismatches


@pytest.mark.parametrize("offset_base", [0, 1])
def test_bom_is_stripped_and_offset_base_detected(tmp_path, offset_base):
    text = "高血压病史"
    start = 0 + offset_base
    pair(tmp_path, "a", "\ufeff" + text, f"T1\tDisease {start} {start + 3}\t高血压\n")
    docs, report = read_brat_folder(tmp_path)
    assert docs[0].text == text
    assert docs[0].entities[0].fragments == ((0, 3),)
    assert not report.text_mismatches
    assert report.bom_files == ["a.txt"] and "BOM" in report.warnings[0]


def test_not_utf8_names_file_and_line(tmp_path):
    pair(tmp_path, "a", "ok\n".encode() + "高血压".encode("gbk"), "")
    with pytest.raises(DataError, match=r"a\.txt:2: not UTF-8"):
        read_brat_folder(tmp_path)


def test_offsets_past_end(tmp_path):
    pair(tmp_path, "a", "短文", "T1\tDisease 0 1\t短\nT2\tDisease 1 9\t文\n")
    with pytest.raises(DataError, match=r"a\.ann:2: .*past the end"):
        read_brat_folder(tmp_path)


@pytest.mark.parametrize("line", ["T1\tDisease 0 x\t短", "T1\tDisease\t短", "X1\tfoo", "T1 Disease 0 1 短", "T1\tDisease 2 1\t短"])
def test_malformed_line(tmp_path, line):
    pair(tmp_path, "a", "短文", f"T0\tDisease 0 1\t短\n{line}\n")
    with pytest.raises(DataError, match=r"a\.ann:2: "):
        read_brat_folder(tmp_path)


def test_text_mismatch_warns_or_fails_with_strict(tmp_path):
    pair(tmp_path, "a", "高血压", "T1\tDisease 0 3\t低血压\n")
    docs, report = read_brat_folder(tmp_path)
    assert docs[0].entities[0].fragments == ((0, 3),)
    assert len(report.text_mismatches) == 1 and "1 .ann texts differ" in report.warnings[-1]
    with pytest.raises(DataError, match=r"a\.ann:1: T1 text '低血压' differs"):
        read_brat_folder(tmp_path, strict=True)


def test_unpaired_files_warn_or_fail(tmp_path):
    pair(tmp_path, "a", "高血压", "T1\tDisease 0 3\t高血压\n")
    (tmp_path / "b.txt").write_text("x", encoding="utf-8")
    (tmp_path / "c.ann").write_text("", encoding="utf-8")
    docs, report = read_brat_folder(tmp_path)
    assert [d.id for d in docs] == ["a"] and report.unpaired == ["b.txt", "c.ann"]
    with pytest.raises(DataError, match=r"b\.txt: has no matching \.ann"):
        read_brat_folder(tmp_path, strict=True)


def test_empty_folder(tmp_path):
    with pytest.raises(DataError, match="no brat .txt \\+ .ann pairs"):
        read_brat_folder(tmp_path)


def test_ruijin_reference_numbers():
    docs, report = read_brat_folder(need(RUIJIN_TRAIN))
    assert len(docs) == 291 and report.files == 291
    assert report.characters == 2_559_357
    assert report.entities == 110_593 and len(report.labels) == 15
    assert report.discontinuous == 9_913
    assert len(report.text_mismatches) == 6
    assert report.crlf_files == 0 and report.bom_files == []
