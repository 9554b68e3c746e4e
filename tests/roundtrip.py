"""The tests' proof that preprocessing loses nothing: gold spans -> windows -> JSONL rows -> tags -> spans -> document spans.

An empty difference list means every gold span (after the policy and the overlap rule) comes back
exactly, at the same document offsets, with the same label.
"""

from __future__ import annotations

from typing import Iterable

from bertner.data.jsonl import row_to_window, window_to_row
from bertner.data.policies import apply_policy
from bertner.data.windows import make_windows
from bertner.spans import Document, Span
from bertner.tags import spans_to_tags, tags_to_spans


def document_round_trip(doc: Document, policy: str, max_chars: int, scheme: str = "BIO") -> list[str]:
    gold, _ = apply_policy(doc.entities, policy)
    windows, _ = make_windows(doc.id, doc.text, gold, max_chars)
    back: list[Span] = []
    differences: list[str] = []
    for window in windows:
        window = row_to_window(window_to_row(window))  # through the JSONL format as written
        if doc.text[window.offset:window.offset + len(window.text)] != window.text:
            differences.append(f"{doc.id}: window at {window.offset} does not match the document text")
        tags = spans_to_tags(len(window.text), window.spans, scheme)
        back.extend(s.shifted(window.offset) for s in tags_to_spans(tags, scheme))
    gold_set, back_set = set(gold), set(back)
    differences += [f"{doc.id}: lost {s} {doc.text[s.start:s.end]!r}" for s in sorted(gold_set - back_set)]
    differences += [f"{doc.id}: gained {s} {doc.text[s.start:s.end]!r}" for s in sorted(back_set - gold_set)]
    return differences


def round_trip_check(documents: Iterable[Document], policy: str = "merge", max_chars: int = 256, scheme: str = "BIO") -> list[str]:
    """Differences between gold spans and spans after windowing and tagging (empty = exact)."""
    return [d for doc in documents for d in document_round_trip(doc, policy, max_chars, scheme)]
