"""brat standoff reader: a folder of `.txt` + `.ann` pairs -> `Document`s.

Offsets count characters (code points) of the `.txt` as decoded, `\\r` included (the brat
convention), so text is decoded from bytes and never newline-translated: CRLF stays two characters.
The `.ann` is split at `\\r\\n`, `\\r` and `\\n` alike (universal line ends), so a CR-only file loses
no line. Only `T` lines become entities; every fragment of a discontinuous entity is kept, in text
order whatever order the line gives them in. An entity id used twice in one `.ann`, a label that
breaks the shared label rule (`bertner.data.labels`),
offsets that are not ASCII digits, a text column that differs from the `.txt` across a line end and
a file holding NUL bytes (binary) are errors.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bertner.data.labels import check_label
from bertner.errors import DataError, shown
from bertner.fileio import decode_utf8, input_files, split_lines
from bertner.spans import Document, Entity

BOM = "\ufeff"
# Annotation kinds we read past, counted by kind so the user sees what was not used.
IGNORED_KINDS = {
    "R": "relation", "E": "event", "A": "attribute", "M": "attribute",
    "N": "normalization", "*": "equivalence", "#": "note",
}
# An offset is ASCII digits only: str.isdigit() also takes '²' (which int() refuses) and '٣' or
# '３' (which int() reads as 3), so a corrupted file would crash or shift entities silently.
OFFSET = re.compile(r"[0-9]+")
# Every character str.splitlines() breaks at: a text column that differs from the .txt across one
# of these means the .ann line was cut (or swallowed the next one), not a typo.
LINE_BREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


@dataclass
class BratReport:
    """Counts and warnings of one folder read."""

    files: int = 0  # .txt/.ann pairs read
    characters: int = 0
    entities: int = 0
    discontinuous: int = 0
    labels: Counter = field(default_factory=Counter)
    ignored: Counter = field(default_factory=Counter)  # kind -> lines
    text_mismatches: list[str] = field(default_factory=list)  # "file:line"
    unpaired: list[str] = field(default_factory=list)
    bom_files: list[str] = field(default_factory=list)
    crlf_files: int = 0
    warnings: list[str] = field(default_factory=list)


@dataclass
class AnnEntity:
    entity: Entity
    text: str | None  # the text column of the .ann line, if present


def parse_offset(text: str) -> int | None:
    """`text` as an offset when it is ASCII digits, else None."""
    if not OFFSET.fullmatch(text):
        return None
    try:
        return int(text)
    except ValueError:  # more digits than int() converts (4300): no text is that long anyway
        return None


def parse_fragments(field_text: str, path: Path, line: int) -> tuple[tuple[int, int], ...]:
    """`"10 14;15 20"` -> `((10, 14), (15, 20))`."""
    fragments = []
    for part in field_text.split(";"):
        offsets = [parse_offset(bit) for bit in part.split()]
        if len(offsets) != 2 or None in offsets:
            shown = part.strip()[:60] + ("..." if len(part.strip()) > 60 else "")
            raise DataError(f"malformed offsets {shown!r}: expected 'START END' pairs of ASCII digits separated by ';'", path, line)
        start, end = offsets
        if start >= end:
            raise DataError(f"empty or reversed fragment {start} {end}", path, line)
        fragments.append((start, end))
    return tuple(fragments)


def parse_ann(text: str, path: Path, ignored: Counter) -> list[AnnEntity]:
    """Entities of one `.ann`; other annotation lines are counted in `ignored` by kind."""
    entities: list[AnnEntity] = []
    first_line: dict[str, int] = {}  # entity id -> line that defined it
    for number, line in enumerate(split_lines(text), start=1):
        if not line.strip():
            continue
        kind = line[0]
        if kind in IGNORED_KINDS:
            ignored[IGNORED_KINDS[kind]] += 1
            continue
        parts = line.split("\t", 2)
        if kind != "T" or len(parts) < 2:
            raise DataError(f"malformed annotation line {line[:60]!r}: expected 'T<n>\\t<label> <start> <end>\\t<text>'", path, number)
        label, _, offsets = parts[1].partition(" ")
        if not label or not offsets.strip():
            raise DataError(f"malformed entity line {line[:60]!r}: missing label or offsets", path, number)
        if not offsets.split()[0].lstrip("-").isdigit():  # any script's digits: a word here is part of the label
            raise DataError(
                f"malformed entity line {line[:60]!r}: a label is one word (no spaces) followed by 'START END' offsets",
                path, number,
            )
        check_label(label, path, number)
        if parts[0] in first_line:
            raise DataError(f"entity id {parts[0]} is used twice (first on line {first_line[parts[0]]}); ids must be unique", path, number)
        first_line[parts[0]] = number
        fragments = parse_fragments(offsets, path, number)
        entities.append(AnnEntity(Entity(parts[0], label, fragments, number), parts[2] if len(parts) > 2 else None))
    return entities


def fragment_text(text: str, fragments: tuple[tuple[int, int], ...]) -> str:
    """What brat writes in the text column: the fragments joined by one space."""
    return " ".join(text[s:e] for s, e in fragments)


def choose_bom_base(text: str, entities: list[AnnEntity]) -> tuple[int, int, int]:
    """After stripping a BOM: offset shift (0 or 1) that makes more `.ann` texts match, and both counts."""
    def matches(shift: int) -> int:
        n = 0
        for a in entities:
            frags = tuple((s - shift, e - shift) for s, e in a.entity.fragments)
            if a.text is not None and min(s for s, _ in frags) >= 0 and fragment_text(text, frags) == a.text:
                n += 1
        return n

    without, with_bom = matches(0), matches(1)
    return (1 if with_bom > without else 0), without, with_bom


def check_text_column(column: str, sliced: str, entity: Entity, ann_path: Path, strict: bool) -> None:
    """A text column that differs from the `.txt` slice: an error with `strict` or when the two differ
    across a line end (the `.ann` line was cut there, or swallowed the lines after it); else the
    caller counts it and warns. A column with spaces for the slice's line ends is only a warning.
    """
    across_line_end = bool(LINE_BREAK.search(column) or LINE_BREAK.search(sliced))
    if across_line_end and LINE_BREAK.sub(" ", column) != LINE_BREAK.sub(" ", sliced):
        raise DataError(
            f"{entity.id} text {shown(column)} differs from the .txt slice {shown(sliced)} across a line end: the .ann line is cut "
            f"or runs into the next one (an entity over a line end is written as fragments, one per line)",
            ann_path, entity.line,
        )
    if strict:
        raise DataError(f"{entity.id} text {shown(column)} differs from the .txt slice {shown(sliced)}", ann_path, entity.line)


def read_pair(txt_path: Path, ann_path: Path, strict: bool, report: BratReport) -> Document:
    """One document; checks offsets and the `.ann` text column against the `.txt` slice."""
    text = decode_utf8(txt_path)
    ann_text = decode_utf8(ann_path)
    if ann_text.startswith(BOM):
        ann_text = ann_text[1:]
    found = parse_ann(ann_text, ann_path, report.ignored)
    if text.startswith(BOM):
        text = text[1:]
        shift, without, with_bom = choose_bom_base(text, found)
        report.bom_files.append(txt_path.name)
        base = "counting the BOM as character 0" if shift else "after the BOM"
        report.warnings.append(
            f"{txt_path}: UTF-8 BOM stripped; offsets read as counted {base} "
            f"({without} of {len(found)} .ann texts match after the BOM, {with_bom} when counting it)"
        )
        if shift:
            for a in found:
                frags = tuple((s - 1, e - 1) for s, e in a.entity.fragments)
                a.entity = Entity(a.entity.id, a.entity.label, frags, a.entity.line)
    if "\r\n" in text:
        report.crlf_files += 1

    entities = []
    for a in found:
        entity = a.entity
        if min(s for s, _ in entity.fragments) < 0 or max(e for _, e in entity.fragments) > len(text):
            raise DataError(
                f"offsets {entity.fragments} of {entity.id} go past the end of {txt_path.name} ({len(text)} characters)",
                ann_path, entity.line,
            )
        if a.text is not None and fragment_text(text, entity.fragments) != a.text:
            check_text_column(a.text, fragment_text(text, entity.fragments), entity, ann_path, strict)
            report.text_mismatches.append(f"{ann_path}:{entity.line}")
        # Fragments in text order from here on (a `9 13;3 6` entity starts at 3); the text column above
        # was checked in the order the line gives them, as brat writes it.
        entity = Entity(entity.id, entity.label, tuple(sorted(entity.fragments)), entity.line)
        entities.append(entity)
        report.labels[entity.label] += 1
        report.discontinuous += entity.discontinuous
    report.files += 1
    report.characters += len(text)
    report.entities += len(entities)
    return Document(id=txt_path.stem, text=text, entities=entities, source=str(txt_path))


def pair_files(folder: Path, strict: bool, report: BratReport) -> list[tuple[Path, Path]]:
    """`(txt, ann)` pairs by stem; an unpaired file is a warning, or an error with `strict`."""
    txts = {p.stem: p for p in input_files(folder, (".txt",))}
    anns = {p.stem: p for p in input_files(folder, (".ann",))}
    for stem in sorted(txts.keys() ^ anns.keys()):
        lone, other = (txts[stem], ".ann") if stem in txts else (anns[stem], ".txt")
        if strict:
            raise DataError(f"has no matching {other} file (--strict)", lone)
        report.unpaired.append(lone.name)
        report.warnings.append(f"{lone}: no matching {other} file; skipped")
    pairs = [(txts[s], anns[s]) for s in sorted(txts.keys() & anns.keys())]
    if not pairs:
        raise DataError("no brat .txt + .ann pairs found", folder)
    return pairs


def read_brat_folder(folder: str | Path, strict: bool = False) -> tuple[list[Document], BratReport]:
    """All documents of a brat folder (sorted by name) and what reading them found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError("not a folder", folder)
    report = BratReport()
    documents = [read_pair(txt, ann, strict, report) for txt, ann in pair_files(folder, strict, report)]
    if report.text_mismatches:
        report.warnings.append(
            f"{len(report.text_mismatches)} .ann texts differ from their .txt slice; the .txt is used "
            f"(first: {report.text_mismatches[0]}; --strict makes this an error)"
        )
    return documents, report
