"""CoNLL reader: joining, columns, schemes, stray I- tags, folders with a given split."""

from __future__ import annotations

import pytest
from conftest import MSRA, need

from bertner.data.conll import read_conll, read_conll_file
from bertner.errors import DataError
from bertner.spans import Entity

CHARS = "中\tB-ORG\n共\tI-ORG\n在\tO\n北\tB-LOC\n京\tI-LOC\n\n张\tB-PER\n\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_one_char_tokens_join_without_space(tmp_path):
    docs, report = read_conll_file(write(tmp_path, "x.bio", CHARS))
    assert [d.id for d in docs] == ["x-1", "x-2"]
    assert docs[0].text == "中共在北京"
    assert [(e.label, e.fragments) for e in docs[0].entities] == [("ORG", ((0, 2),)), ("LOC", ((3, 5),))]
    assert docs[0].entities[1].line == 4
    assert report.sentences == 2 and report.entities == 3


def test_words_join_with_space_middle_columns_and_docstart(tmp_path):
    text = "-DOCSTART- -X- O O\n\nEU NNP B-ORG\nrejects VBZ O\nGerman JJ B-MISC\ncall NN O\n\nPeter\tNNP\tB-PER\nBlackburn\tNNP\tI-PER\n"
    docs, _ = read_conll_file(write(tmp_path, "en.conll", text))
    assert docs[0].text == "EU rejects German call"
    spans = [(docs[0].text[s:e], e_.label) for e_ in docs[0].entities for s, e in e_.fragments]
    assert spans == [("EU", "ORG"), ("German", "MISC")]
    assert docs[1].text == "Peter Blackburn" and docs[1].entities[0].fragments == ((0, 15),)


def test_bioes(tmp_path):
    text = "a S-X\nbb B-Y\nc E-Y\nd O\n"
    docs, _ = read_conll_file(write(tmp_path, "x.tsv", text), scheme="BIOES")
    assert [e.fragments for e in docs[0].entities] == [((0, 1),), ((2, 6),)]


def test_stray_inside_tag_is_an_error_with_hint(tmp_path):
    path = write(tmp_path, "bad.bio", "我\tO\n\n他\tO\n北\tI-LOC\n京\tI-LOC\n")
    with pytest.raises(DataError, match=r"bad\.bio:4: tag I-LOC does not continue an entity.*--scheme IOB1.*--repair-tags"):
        read_conll_file(path)
    docs, report = read_conll_file(path, scheme="IOB1")
    assert docs[1].entities == [Entity("T1", "LOC", ((1, 3),), 4)]
    docs, report = read_conll_file(path, repair=True)
    assert docs[1].entities[0].fragments == ((1, 3),) and report.repaired_tags == 1


def test_malformed_line_and_tag(tmp_path):
    with pytest.raises(DataError, match=r"x\.bio:2: malformed line"):
        read_conll_file(write(tmp_path, "x.bio", "a O\nlonely\n"))
    with pytest.raises(DataError, match=r"y\.bio:1: malformed tag"):
        read_conll_file(write(tmp_path, "y.bio", "a Q-X\n"))


def test_folder_with_given_split(tmp_path):
    write(tmp_path, "train.bio", CHARS)
    write(tmp_path, "test.bio", "京\tB-LOC\n")
    write(tmp_path, "notes.md", "ignored: not a column file")
    by_split, report = read_conll(tmp_path)
    assert sorted(by_split) == ["test", "train"] and len(by_split["train"]) == 2
    write(tmp_path, "extra.txt", "a O\n")
    _, report = read_conll(tmp_path)
    assert any("extra.txt" in w for w in report.warnings)


def test_folder_without_split_reads_every_column_file(tmp_path):
    write(tmp_path, "a.bio", CHARS)
    write(tmp_path, "b.tsv", "x O\n")
    by_split, report = read_conll(tmp_path)
    assert list(by_split) == ["all"] and [d.id for d in by_split["all"]] == ["a-1", "a-2", "b-1"]


def test_msra_stray_tags_need_repair():
    msra = need(MSRA)
    with pytest.raises(DataError, match="test.bio:29083"):
        read_conll_file(msra / "test.bio")
    docs, report = read_conll_file(msra / "test.bio", repair=True)
    assert len(docs) == 4631 and report.repaired_tags == 11
    assert all(len(t) == 1 for d in docs[:50] for t in d.text)  # joined without spaces


# ----------------------------------------------------------------------------- issue 12: nothing lost, nothing silently wrong

@pytest.mark.parametrize("after_tag", ["\t", "\t\t", " ", "\t \t", "\u3000"])
def test_whitespace_after_the_tag_is_not_a_column(tmp_path, after_tag):
    text = f"糖\tB-Disease{after_tag}\n尿\tI-Disease{after_tag}\n病\tI-Disease\n\n"
    docs, report = read_conll_file(write(tmp_path, "x.bio", text))
    assert [(e.label, e.fragments) for e in docs[0].entities] == [("Disease", ((0, 3),))]
    assert report.entities == 1


@pytest.mark.parametrize("line", ["尿\t", "尿\t\t", "尿 \t ", "尿\t\u3000"])
def test_empty_tag_column_is_an_error_with_file_and_line(tmp_path, line):
    with pytest.raises(DataError, match=r"x\.bio:2: malformed line .*non-empty tag"):
        read_conll_file(write(tmp_path, "x.bio", f"糖\tB-Disease\n{line}\n病\tO\n"))


@pytest.mark.parametrize("line_end", ["\r", "\r\n"])
def test_cr_and_crlf_line_ends(tmp_path, line_end):
    docs, report = read_conll_file(write(tmp_path, "x.bio", CHARS.replace("\n", line_end)))
    assert [d.text for d in docs] == ["中共在北京", "张"] and report.entities == 3
    assert docs[0].entities[1].line == 4


@pytest.mark.parametrize("tag", ["B-Dis\u200bease", "B-Dis\x0bease", "B-Dis\x85ease", "S-Dis\u3000ease"])
def test_label_with_whitespace_or_control_character_is_an_error(tmp_path, tag):
    with pytest.raises(DataError, match=r"x\.bio:2: label .* holds U\+"):
        read_conll_file(write(tmp_path, "x.bio", f"糖\tO\n病\t{tag}\n"), scheme="BIOES")


@pytest.mark.parametrize("make", ["folder", "loop"])
def test_entry_named_like_a_column_file_that_is_no_file_is_refused(tmp_path, make):
    write(tmp_path, "train.bio", CHARS)
    odd = tmp_path / "dev.bio"
    odd.mkdir() if make == "folder" else odd.symlink_to("dev.bio")
    with pytest.raises(DataError, match=r"dev\.bio: " + ("is a folder" if make == "folder" else "cannot read: a link that loops")):
        read_conll(tmp_path)
