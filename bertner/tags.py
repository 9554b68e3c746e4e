"""Tag schemes: character spans <-> per-position tags (BIO, IOB1, BIOES).

Decoding is lenient in the conlleval way: an `I-X` that does not continue an `X` entity starts
a new one. Readers that must reject such input call `stray_inside_tags` first.
"""

from __future__ import annotations

from typing import Sequence

from bertner.errors import BertnerError
from bertner.spans import Span

SCHEMES = ("BIO", "IOB1", "BIOES")


def check_scheme(scheme: str) -> str:
    scheme = scheme.upper()
    if scheme == "IOB2":
        scheme = "BIO"
    if scheme not in SCHEMES:
        raise BertnerError(f"unknown tag scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    return scheme


def split_tag(tag: str) -> tuple[str, str]:
    """`'B-Drug'` -> `('B', 'Drug')`; `'O'` -> `('O', '')`."""
    if tag == "O" or not tag:
        return "O", ""
    prefix, sep, label = tag.partition("-")
    if not sep or prefix not in ("B", "I", "E", "S") or not label:
        raise BertnerError(f"malformed tag {tag!r}: expected O or B-/I-/E-/S- followed by a label")
    return prefix, label


def spans_to_tags(length: int, spans: Sequence[Span], scheme: str = "BIO") -> list[str]:
    """Tags for `length` positions. Spans must not overlap: the readers resolve overlaps, so one here is a bug (ValueError)."""
    scheme = check_scheme(scheme)
    tags = ["O"] * length
    previous: Span | None = None
    for span in sorted(spans):
        if span.start < 0 or span.end > length or span.start >= span.end:
            raise ValueError(f"span {span} is outside a text of length {length}")
        if previous is not None and previous.overlaps(span):
            raise ValueError(f"spans {previous} and {span} overlap; a tag sequence cannot hold both")
        n = span.end - span.start
        for i in range(span.start, span.end):
            tags[i] = f"I-{span.label}"
        if scheme == "BIO":
            tags[span.start] = f"B-{span.label}"
        elif scheme == "IOB1":
            # IOB1 uses B- only where an entity directly follows another of the same type.
            if previous is not None and previous.end == span.start and previous.label == span.label:
                tags[span.start] = f"B-{span.label}"
        else:  # BIOES
            if n == 1:
                tags[span.start] = f"S-{span.label}"
            else:
                tags[span.start] = f"B-{span.label}"
                tags[span.end - 1] = f"E-{span.label}"
        previous = span
    return tags


def tags_to_spans(tags: Sequence[str], scheme: str = "BIO") -> list[Span]:
    """Spans from tags of any of our schemes; stray I-/E- tags start a new entity."""
    check_scheme(scheme)  # all three decode with the same rules below
    spans: list[Span] = []
    start: int | None = None
    label = ""

    def close(end: int) -> None:
        nonlocal start
        if start is not None:
            spans.append(Span(start, end, label))
        start = None

    for i, tag in enumerate(tags):
        prefix, tag_label = split_tag(tag)
        if prefix == "O":
            close(i)
        elif prefix in ("B", "S"):
            close(i)
            start, label = i, tag_label
        else:  # I or E
            if start is None or tag_label != label:
                close(i)
                start, label = i, tag_label
        if prefix in ("S", "E"):
            close(i + 1)
    close(len(tags))
    return spans


def stray_inside_tags(tags: Sequence[str], scheme: str = "BIO") -> list[int]:
    """Positions of I-/E- tags that do not continue an entity of their type (invalid in BIO/BIOES)."""
    scheme = check_scheme(scheme)
    if scheme == "IOB1":
        return []
    stray: list[int] = []
    current = ""
    for i, tag in enumerate(tags):
        prefix, label = split_tag(tag)
        if prefix in ("I", "E") and current != label:
            stray.append(i)
        current = label if prefix in ("B", "I") else ""
    return stray


def label_set_to_tags(labels: Sequence[str], scheme: str = "BIO") -> list[str]:
    """The full tag inventory for some entity labels, `O` first (tag id 0 is always `O`)."""
    scheme = check_scheme(scheme)
    prefixes = ("B", "I", "E", "S") if scheme == "BIOES" else ("B", "I")
    return ["O"] + [f"{p}-{label}" for label in labels for p in prefixes]


def allowed_transitions(tags: Sequence[str], scheme: str = "BIO") -> tuple[list[bool], list[list[bool]], list[bool]]:
    """Which tag sequences are well-formed: (may start with, may follow [prev][next], may end with).

    BIO: `I-X` only after `B-X` or `I-X`. BIOES adds: `B-X`/`I-X` must be followed by `I-X`/`E-X`,
    and a sequence cannot start inside or end inside an entity. IOB1 allows everything.
    """
    scheme = check_scheme(scheme)
    parts = [split_tag(t) for t in tags]

    def continues(prev: tuple[str, str], nxt: tuple[str, str]) -> bool:
        return prev[0] in ("B", "I") and prev[1] == nxt[1]

    def may_follow(prev: tuple[str, str], nxt: tuple[str, str]) -> bool:
        if scheme == "IOB1":
            return True
        if nxt[0] in ("I", "E"):
            return continues(prev, nxt)
        if scheme == "BIOES" and prev[0] in ("B", "I"):
            return False  # an open entity must go on with I- or close with E-
        return True

    start = [scheme == "IOB1" or p[0] not in ("I", "E") for p in parts]
    end = [scheme != "BIOES" or p[0] not in ("B", "I") for p in parts]
    follow = [[may_follow(prev, nxt) for nxt in parts] for prev in parts]
    return start, follow, end
