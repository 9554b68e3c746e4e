"""CoNLL column reader: token first, optional middle columns, tag last; a blank line ends a sentence.

Each sentence becomes a `Document` (`id` = `<file stem>-<n>`, n from 1). Its text is the tokens
joined with "" when every token in the file is one character (Chinese char-per-line, like MSRA),
else with one space; spans are mapped from token positions to character offsets. Lines end at
`\\r\\n`, `\\r` or `\\n`; whitespace after the tag is dropped, so a trailing tab never makes the tag
an empty column (read as O); a line without a tag and a label that breaks the shared label rule
(`bertner.data.labels`) are errors naming file:line.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertner.data.brat import BOM
from bertner.data.labels import check_label
from bertner.errors import BertnerError, DataError
from bertner.fileio import decode_utf8, input_files, missing_input, split_lines
from bertner.spans import Document, Entity
from bertner.tags import check_scheme, split_tag, stray_inside_tags, tags_to_spans

COLUMN_SUFFIXES = (".bio", ".conll", ".txt", ".tsv")
SPLIT_NAMES = ("train", "dev", "test")


@dataclass
class ConllReport:
    files: int = 0
    sentences: int = 0
    tokens: int = 0
    characters: int = 0
    entities: int = 0
    labels: Counter = field(default_factory=Counter)
    repaired_tags: int = 0  # stray I-/E- read as the start of an entity (--repair-tags)
    warnings: list[str] = field(default_factory=list)


@dataclass
class Sentence:
    tokens: list[str]
    tags: list[str]
    lines: list[int]  # line number of each token


def split_columns(line: str) -> list[str]:
    """Columns of a non-blank line, trailing whitespace columns dropped (`糖\\tB-X\\t` has its tag last)."""
    line = line.rstrip()  # the token is first, so only whitespace after the tag goes
    # Tabs when the file has them, so a token that is a (full-width) space survives; else any whitespace.
    return line.split("\t") if "\t" in line else line.split()


def parse_sentences(text: str, path: Path, report: ConllReport) -> list[Sentence]:
    sentences: list[Sentence] = []
    current = Sentence([], [], [])
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if current.tokens:
                sentences.append(current)
                current = Sentence([], [], [])
            continue
        columns = split_columns(line)
        if len(columns) < 2 or not columns[0]:
            # An empty tag column is a broken line, never an O token.
            raise DataError(f"malformed line {line[:60]!r}: expected a token and a non-empty tag separated by whitespace", path, number)
        tag = columns[-1].strip()
        try:
            _, label = split_tag(tag)
        except BertnerError as e:
            raise DataError(str(e), path, number) from None
        if label:
            check_label(label, path, number)
        current.tokens.append(columns[0])
        current.tags.append(tag)
        current.lines.append(number)
    if current.tokens:
        sentences.append(current)
    return sentences


def sentence_document(sentence: Sentence, doc_id: str, joiner: str, scheme: str, repair: bool, path: Path, report: ConllReport) -> Document:
    stray = stray_inside_tags(sentence.tags, scheme)
    if stray and not repair:
        i = stray[0]
        raise DataError(
            f"tag {sentence.tags[i]} does not continue an entity (a stray I-/E- tag is invalid in {scheme}); "
            f"if the file is IOB1 use --scheme IOB1, or --repair-tags to read stray I-/E- as the start of an entity",
            path, sentence.lines[i],
        )
    report.repaired_tags += len(stray)
    starts, pos = [], 0
    for token in sentence.tokens:
        starts.append(pos)
        pos += len(token) + len(joiner)
    text = joiner.join(sentence.tokens)
    entities = []
    for n, span in enumerate(tags_to_spans(sentence.tags, scheme), start=1):
        end_token = span.end - 1
        start, end = starts[span.start], starts[end_token] + len(sentence.tokens[end_token])
        entities.append(Entity(f"T{n}", span.label, ((start, end),), sentence.lines[span.start]))
        report.labels[span.label] += 1
    report.entities += len(entities)
    report.characters += len(text)
    return Document(id=doc_id, text=text, entities=entities, source=f"{path}:{sentence.lines[0]}")


def read_conll_file(path: str | Path, scheme: str = "BIO", repair: bool = False, report: ConllReport | None = None) -> tuple[list[Document], ConllReport]:
    """Documents (one per sentence) of one column file."""
    path = Path(path)
    scheme = check_scheme(scheme)
    report = report if report is not None else ConllReport()
    text = decode_utf8(path)
    if text.startswith(BOM):
        text = text[1:]
    sentences = parse_sentences(text, path, report)
    one_char = all(len(t) == 1 for s in sentences for t in s.tokens)
    joiner = "" if one_char else " "
    documents = [
        sentence_document(s, f"{path.stem}-{n}", joiner, scheme, repair, path, report)
        for n, s in enumerate(sentences, start=1)
    ]
    report.files += 1
    report.sentences += len(sentences)
    report.tokens += sum(len(s.tokens) for s in sentences)
    return documents, report


def column_files(folder: Path) -> list[Path]:
    return input_files(folder, COLUMN_SUFFIXES, ignore_case=True)


def given_split_files(files: list[Path]) -> dict[str, Path]:
    """Files named train.* / dev.* / test.* (the folder's own split), by split name."""
    return {p.stem.lower(): p for p in files if p.stem.lower() in SPLIT_NAMES}


def read_conll(path: str | Path, scheme: str = "BIO", repair: bool = False) -> tuple[dict[str, list[Document]], ConllReport]:
    """A file -> `{"all": docs}`; a folder -> every column file, by given split when files are named so."""
    path = Path(path)
    report = ConllReport()
    if path.is_file():
        docs, _ = read_conll_file(path, scheme, repair, report)
        return {"all": docs}, report
    if not path.is_dir():
        raise missing_input(path)
    files = column_files(path)
    if not files:
        raise DataError(f"no column files ({', '.join(COLUMN_SUFFIXES)}) found", path)
    given = given_split_files(files)
    result: dict[str, list[Document]] = {}
    if given:
        for other in sorted(set(files) - set(given.values())):
            report.warnings.append(f"{other}: not named train/dev/test in a folder with a given split; ignored")
        for name, file in given.items():
            result[name], _ = read_conll_file(file, scheme, repair, report)
    else:
        result["all"] = [d for f in files for d in read_conll_file(f, scheme, repair, report)[0]]
    if report.repaired_tags:
        report.warnings.append(f"{report.repaired_tags} stray I-/E- tags read as the start of an entity (--repair-tags)")
    return result, report
