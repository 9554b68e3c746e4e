"""Cutting documents into windows a model can read, never inside an entity.

Windows end at sentence ends (after `。！？；` and after a newline) and pack whole sentences
greedily up to `max_chars`. A sentence longer than the limit is cut at the safe position nearest
to the limit (a comma-like character in the last quarter is preferred). A position `p` is safe iff
no span has `start < p < end`; an entity longer than the limit is kept whole in a longer window.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Sequence

from bertner.errors import BertnerError
from bertner.spans import Span, Window

SENTENCE_END = re.compile(r"[。！？；]|\n")
COMMA_LIKE = frozenset("，,、：: ")


@dataclass
class WindowReport:
    """What windowing had to do, summed over documents with `add`."""

    windows: int = 0
    whitespace_skipped: int = 0
    cut_inside_sentence: int = 0
    overlong_entities: int = 0
    overlong_examples: list[str] = field(default_factory=list)  # "doc:start-end label", a few
    longest_window: int = 0

    def add(self, other: "WindowReport") -> None:
        self.windows += other.windows
        self.whitespace_skipped += other.whitespace_skipped
        self.cut_inside_sentence += other.cut_inside_sentence
        self.overlong_entities += other.overlong_entities
        self.overlong_examples.extend(other.overlong_examples[: max(0, 5 - len(self.overlong_examples))])
        self.longest_window = max(self.longest_window, other.longest_window)


class CutPoints:
    """Answers 'is position p safe to cut?' with the interiors of all spans merged into disjoint ranges."""

    def __init__(self, spans: Sequence[Span]):
        starts: list[int] = []
        ends: list[int] = []
        for span in sorted(spans):
            if span.end - span.start < 2:
                continue  # a one-character span has no inside position
            if starts and span.start < ends[-1]:
                ends[-1] = max(ends[-1], span.end)
            else:
                starts.append(span.start)
                ends.append(span.end)
        self.starts, self.ends = starts, ends

    def covering(self, p: int) -> tuple[int, int] | None:
        """The merged range `(s, e)` with `s < p < e`, if any."""
        i = bisect_left(self.starts, p) - 1  # last range starting before p
        if i >= 0 and self.ends[i] > p:
            return self.starts[i], self.ends[i]
        return None

    def is_safe(self, p: int) -> bool:
        return self.covering(p) is None


def sentence_ends(text: str, cuts: CutPoints) -> list[int]:
    """Safe positions right after a sentence end, plus the end of the text."""
    ends = [m.end() for m in SENTENCE_END.finditer(text)]
    ends = [p for p in ends if cuts.is_safe(p)]
    if not ends or ends[-1] != len(text):
        ends.append(len(text))
    return ends


def cut_long_sentence(text: str, start: int, end: int, max_chars: int, cuts: CutPoints) -> tuple[list[int], int]:
    """Cut positions inside `text[start:end]` so pieces fit `max_chars` where entities allow.

    Returns the cut positions (not including `start`/`end`) and how many over-long pieces had to stay.
    """
    points: list[int] = []
    overlong = 0
    pos = start
    while end - pos > max_chars:
        limit = pos + max_chars
        inside = cuts.covering(limit)
        best = limit if inside is None else inside[0]
        if best <= pos:
            # An entity longer than the limit starts at pos: keep it whole, cut right after it.
            overlong += 1
            best = inside[1]
        else:
            quarter = limit - max_chars // 4
            for q in range(best, max(pos, quarter), -1):
                if text[q - 1] in COMMA_LIKE and cuts.is_safe(q):
                    best = q
                    break
        if best >= end:
            break
        points.append(best)
        pos = best
    return points, overlong


def make_windows(doc_id: str, text: str, spans: Sequence[Span] = (), max_chars: int = 256) -> tuple[list[Window], WindowReport]:
    """Windows of `text` with their spans relative to the window; works with no spans too."""
    if max_chars < 1:
        raise BertnerError(f"--max-chars must be at least 1, not {max_chars}")
    report = WindowReport()
    cuts = CutPoints(spans)

    # 1. Pieces: sentences, with sentences longer than the limit cut inside.
    pieces: list[int] = []  # end positions
    previous = 0
    for end in sentence_ends(text, cuts):
        if end - previous > max_chars:
            inner, _ = cut_long_sentence(text, previous, end, max_chars, cuts)
            pieces.extend(inner)
            report.cut_inside_sentence += len(inner)
        pieces.append(end)
        previous = end

    # 2. Pack whole pieces greedily up to the limit.
    bounds: list[tuple[int, int]] = []
    window_start = 0
    last_end = 0
    for end in pieces:
        if end - window_start > max_chars and last_end > window_start:
            bounds.append((window_start, last_end))
            window_start = last_end
        last_end = end
    if last_end > window_start:
        bounds.append((window_start, last_end))

    # 3. Windows with their spans.
    ordered = sorted(spans)
    span_starts = [s.start for s in ordered]
    windows: list[Window] = []
    for start, end in bounds:
        lo, hi = bisect_left(span_starts, start), bisect_left(span_starts, end)
        inside = [s.shifted(-start) for s in ordered[lo:hi]]
        piece = text[start:end]
        if not inside and not piece.strip():
            report.whitespace_skipped += 1  # nothing to learn from, nothing to predict
            continue
        windows.append(Window(id=f"{doc_id}#{len(windows)}", doc=doc_id, offset=start, text=piece, spans=inside))
        report.longest_window = max(report.longest_window, end - start)
    report.windows = len(windows)
    for span in ordered:
        if span.end - span.start > max_chars:
            report.overlong_entities += 1
            if len(report.overlong_examples) < 5:
                report.overlong_examples.append(f"{doc_id}:{span.start}-{span.end} {span.label} ({span.end - span.start} chars)")
    return windows, report
