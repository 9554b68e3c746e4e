"""Our JSONL window format, written by `preprocess` and read by `train`, `evaluate` and `preprocess`.

One object a line: `{"id", "doc", "offset", "text", "entities": [{"start", "end", "label", "text"}]}`
with entity offsets relative to the window `text`; `offset` is where the window starts in its document.
Offsets are JSON integers (not booleans) and labels obey the shared label rule (`bertner.data.labels`),
both checked as each line is read.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterable

from bertner.data.labels import check_label
from bertner.errors import DataError, shown
from bertner.fileio import decode_utf8, parse_json, split_lines, write_jsonl
from bertner.spans import Document, Entity, Span, Window


# The longest document a window may belong to (100 MB of text): reassembling a document pads the gaps
# between its windows, so an offset of 3,000,000,000 would allocate 3 GB.
MAX_DOCUMENT_CHARS = 100_000_000


def window_to_row(window: Window) -> dict:
    return {
        "id": window.id,
        "doc": window.doc,
        "offset": window.offset,
        "text": window.text,
        "entities": [{"start": s.start, "end": s.end, "label": s.label, "text": window.text[s.start:s.end]} for s in window.spans],
    }


def is_index(value: object) -> bool:
    # JSON true/false are Python bools, which are ints: `"start": true` must not read as 1.
    return isinstance(value, int) and not isinstance(value, bool)


def row_to_window(row: object, path: Path | str = "<row>", line: int | None = None) -> Window:
    """A validated `Window` from one parsed line; DataError naming path:line otherwise."""
    if not isinstance(row, dict):
        raise DataError("expected a JSON object", path, line)
    try:
        text, doc, offset = row["text"], str(row.get("doc", row.get("id", ""))), row.get("offset", 0)
        if not isinstance(text, str) or not is_index(offset) or offset < 0:
            raise DataError("'text' must be a string and 'offset' a non-negative integer", path, line)
        if offset + len(text) > MAX_DOCUMENT_CHARS:
            raise DataError(f"offset {offset:,} puts this window past {MAX_DOCUMENT_CHARS:,} characters into its document, "
                            "longer than any document bertner reads", path, line)
        spans = []
        for entity in row.get("entities", []):
            start, end, label = entity["start"], entity["end"], entity["label"]
            if not (is_index(start) and is_index(end) and 0 <= start < end <= len(text)):
                raise DataError(f"entity offsets {start}-{end} are out of range for a text of {len(text)} characters", path, line)
            if "text" in entity and entity["text"] != text[start:end]:
                raise DataError(f"entity text {shown(entity['text'])} differs from text[{start}:{end}] = {shown(text[start:end])}", path, line)
            spans.append(Span(start, end, check_label(label, path, line)))
    except (KeyError, TypeError) as e:
        raise DataError(f"missing or wrong field {e}: expected id, doc, offset, text, entities[start, end, label, text]", path, line) from None
    ordered = sorted(spans)
    for first, second in zip(ordered, ordered[1:]):
        if first.overlaps(second):
            # A tag sequence holds one entity per character: preprocess resolves overlaps, a window must not hold any.
            raise DataError(f"entities {first.start}-{first.end} and {second.start}-{second.end} overlap", path, line)
    return Window(id=str(row.get("id", f"{doc}#{offset}")), doc=doc, offset=offset, text=text, spans=spans)


def write_windows(path: str | Path, windows: Iterable[Window]) -> None:
    write_jsonl(path, [window_to_row(w) for w in windows])


def read_windows(path: str | Path) -> list[Window]:
    path = Path(path)
    windows = []
    for number, raw in enumerate(split_lines(decode_utf8(path)), start=1):
        if not raw.strip():
            continue
        try:
            row = parse_json(raw)
        except json.JSONDecodeError as e:
            raise DataError(f"not valid JSON ({e.msg} at column {e.colno})", path, number) from None
        except ValueError as e:  # an integer of over 4300 digits, nesting too deep
            raise DataError(f"cannot read this JSON ({str(e).split(':')[0]})", path, number) from None
        windows.append(row_to_window(row, path, number))
    return windows


def windows_to_documents(windows: Iterable[Window], source: str = "") -> list[Document]:
    """Regroup windows into documents by `doc`, in `offset` order; gaps (skipped blank windows) become spaces."""
    by_doc: dict[str, list[Window]] = defaultdict(list)
    for w in windows:
        by_doc[w.doc].append(w)
    documents = []
    for doc_id, parts in by_doc.items():
        parts.sort(key=lambda w: w.offset)
        pieces, entities, end = [], [], 0
        for w in parts:
            if w.offset < end:
                raise DataError(f"windows of document {doc_id!r} overlap at offset {w.offset}", source or None)
            pieces.append(" " * (w.offset - end) + w.text)
            end = w.offset + len(w.text)
            for s in w.spans:
                entities.append(Entity(f"T{len(entities) + 1}", s.label, ((s.start + w.offset, s.end + w.offset),)))
        documents.append(Document(id=doc_id, text="".join(pieces), entities=entities, source=source))
    return documents


def read_jsonl_documents(path: str | Path) -> list[Document]:
    return windows_to_documents(read_windows(path), str(path))
