"""brat reader: fragments, ignored lines, CRLF, BOM, encodings and every bad input."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import RUIJIN_TRAIN, need

from bertner.data.brat import read_brat_folder
from bertner.errors import DataError


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


# ----------------------------------------------------------------------------- issue 12: nothing lost, nothing silently wrong

TEXT = "患者有高血压。服用阿司匹林。"


@pytest.mark.parametrize("line_end", ["\r", "\r\n", "\n"])
def test_every_line_end_keeps_every_entity(tmp_path, line_end):
    ann = line_end.join(["T1\tDisease 3 6\t高血压", "#1\tAnnotatorNotes T1\tnote", "T2\tDrug 9 13\t阿司匹林", ""])
    pair(tmp_path, "a", TEXT, ann)
    docs, report = read_brat_folder(tmp_path)
    assert [(e.id, e.label, e.fragments, e.line) for e in docs[0].entities] == [
        ("T1", "Disease", ((3, 6),), 1), ("T2", "Drug", ((9, 13),), 3)
    ]
    assert report.ignored == {"note": 1} and not report.text_mismatches and not report.warnings


@pytest.mark.parametrize("text, ann", [
    ("患者有高血\n压。", "T1\tDisease 3 7\t高血\n"),  # the text column stops at the .txt's line end: the line was cut
    (TEXT, "T1\tDisease 3 6\t高血压\x85T2\tDrug 9 13\t阿司匹林\n"),  # a line end open() keeps swallowed T2
])
def test_text_column_differing_across_a_line_end_is_an_error(tmp_path, text, ann):
    pair(tmp_path, "a", text, ann)
    with pytest.raises(DataError, match=r"a\.ann:1: T1 text .* differs from the \.txt slice .* across a line end"):
        read_brat_folder(tmp_path)


def test_text_column_with_a_space_for_a_line_end_is_only_a_warning(tmp_path):
    pair(tmp_path, "a", "患者有高血\n压。", "T1\tDisease 3 7\t高血 压\n")
    docs, report = read_brat_folder(tmp_path)
    assert docs[0].entities[0].fragments == ((3, 7),) and len(report.text_mismatches) == 1


@pytest.mark.parametrize("digit", ["²", "٣", "３", "३", "𝟑", "①", "³", "1" * 5000], ids=lambda d: d if len(d) == 1 else "5000-digits")
@pytest.mark.parametrize("where", ["start", "end"])
def test_offsets_are_ascii_digits_only(tmp_path, digit, where):
    offsets = f"{digit} 6" if where == "start" else f"3 {digit}"
    pair(tmp_path, "a", TEXT, f"T1\tDisease {offsets}\t高血压\n")
    with pytest.raises(DataError, match=r"a\.ann:1: malformed offsets .*ASCII digits"):
        read_brat_folder(tmp_path)


@pytest.mark.parametrize("label", ["Dis\x0bease", "Dis\x1cease", "Dis\x85ease", "Dis\u3000ease", "Dis\u200bease", "Dis\x7fease"])
def test_label_with_whitespace_or_control_character_is_an_error(tmp_path, label):
    pair(tmp_path, "a", TEXT, f"T1\t{label} 3 6\t高血压\n")
    with pytest.raises(DataError, match=r"a\.ann:1: label .* holds U\+"):
        read_brat_folder(tmp_path)


@pytest.mark.parametrize("make", ["folder", "loop", "broken-link"])
@pytest.mark.parametrize("suffix", [".txt", ".ann"])
def test_entry_named_like_an_input_that_is_no_file_is_refused(tmp_path, make, suffix):
    pair(tmp_path, "a", TEXT, "T1\tDisease 3 6\t高血压\n")
    odd = tmp_path / f"odd{suffix}"
    if make == "folder":
        odd.mkdir()
    else:
        odd.symlink_to(odd.name if make == "loop" else "nowhere")
    expected = {"folder": "is a folder", "loop": "a link that loops", "broken-link": "a link to nothing"}[make]
    with pytest.raises(DataError, match=rf"odd\{suffix}: .*{expected}"):
        read_brat_folder(tmp_path)
