"""Output formats for predictions: jsonl, brat, conll, html, and a pretty terminal view.

Each writer takes `Prediction`s (document text + spans in document offsets) and renders them;
none of them knows about models or tokens.
"""

from __future__ import annotations

import json
from typing import Iterable, Sequence

from bertner.predict import Prediction
from bertner.spans import Span

FORMATS = ("pretty", "jsonl", "brat", "conll", "html")
# Written by `predict --format brat` beside the .ann files: the run, its discontinuous policy (so
# `evaluate PRED GOLD` reads gold as `evaluate RUN GOLD` does) and the documents it wrote.
BRAT_RECORD = "bertner_predict.json"


def jsonl_line(prediction: Prediction) -> str:
    entities = [
        {"start": s.start, "end": s.end, "label": s.label, "text": prediction.text[s.start : s.end], "score": round(score, 4)}
        for s, score in zip(prediction.spans, prediction.scores)
    ]
    return json.dumps({"doc": prediction.doc, "entities": entities}, ensure_ascii=False) + "\n"


def brat_fragments(text: str, span: Span) -> list[tuple[int, int]]:
    """A span as brat fragments: pieces split at line breaks, since a .ann line cannot hold one.

    Reading the fragments back with the `merge` policy gives the original span exactly.
    """
    fragments, start = [], None
    for i in range(span.start, span.end):
        if text[i] in "\r\n":
            if start is not None:
                fragments.append((start, i))
                start = None
        elif start is None:
            start = i
    if start is not None:
        fragments.append((start, span.end))
    return fragments or [(span.start, span.end)]


def brat_ann(prediction: Prediction) -> str:
    lines = []
    for number, span in enumerate(prediction.spans, start=1):
        fragments = brat_fragments(prediction.text, span)
        offsets = ";".join(f"{s} {e}" for s, e in fragments)
        surface = " ".join(prediction.text[s:e] for s, e in fragments)
        lines.append(f"T{number}\t{span.label} {offsets}\t{surface}\n")
    return "".join(lines)


def conll_lines(prediction: Prediction) -> Iterable[str]:
    """One character and its BIO tag a line, a blank line after each line of text.

    Whitespace has no token in CoNLL, so it is left out; use jsonl or brat for exact offsets.
    """
    from bertner.tags import spans_to_tags

    tags = spans_to_tags(len(prediction.text), prediction.spans)
    yield f"-DOCSTART- {prediction.doc}\n\n"
    pending = False
    for char, tag in zip(prediction.text, tags):
        if char == "\n":
            if pending:
                yield "\n"
            pending = False
        elif not char.isspace():
            yield f"{char}\t{tag}\n"
            pending = True
    if pending:
        yield "\n"


def print_pretty(predictions: list[Prediction], max_chars: int = 2000, labels: Sequence[str] | None = None) -> None:
    """The text with entities highlighted by label, then a table of the entities.

    `labels` (all the run's labels) keeps each label's colour the same from one call to the next.
    """
    from rich.table import Table
    from rich.text import Text

    from bertner.console import out, plural

    palette = ["cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta",
               "bright_green", "bright_yellow", "bright_blue", "bright_red", "orange3", "purple", "turquoise2"]
    labels = sorted(set(labels or ()) | {s.label for p in predictions for s in p.spans})
    colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    for p in predictions:
        out.rule(f"{p.doc}: {plural(len(p.spans), 'entity')}", style="dim")
        shown = p.text[:max_chars]
        text = Text(shown)
        for s in p.spans:
            if s.end <= len(shown):
                text.stylize(f"bold {colour[s.label]} underline", s.start, s.end)
        out.print(text)
        if len(p.text) > max_chars:
            out.print(f"[dim]... {len(p.text) - max_chars:,} more characters (use --format jsonl for all)[/dim]")
        if p.spans:
            table = Table(show_edge=False, pad_edge=False)
            for column in ("start", "end", "label", "text", "score"):
                table.add_column(column, justify="right" if column in ("start", "end", "score") else "left")
            for s, score in zip(p.spans, p.scores):
                table.add_row(str(s.start), str(s.end), f"[{colour[s.label]}]{s.label}[/]", p.text[s.start : s.end], f"{score:.2f}")
            out.print(table)


def html_head(labels: Sequence[str]) -> str:
    """The page up to the documents: title and colour legend (every label of the run, so colours are stable)."""
    from bertner.html_spans import label_colours, legend, page_head

    return (page_head("bertner predictions") + "<h1>bertner predictions</h1>\n"
            '<p class="muted">Hover over an entity for its label and score.</p>\n' + legend(label_colours(labels)) + "\n")


def html_document(prediction: Prediction, labels: Sequence[str]) -> str:
    """One document: its id, entity count, and its text with the entities highlighted (offsets exact)."""
    from bertner.console import plural
    from bertner.html_spans import escape, highlight, label_colours

    marked = highlight(prediction.text, prediction.spans, label_colours(labels), prediction.scores)
    return (f'<section class="document"><h2>{escape(prediction.doc)}</h2>'
            f'<p class="muted">{plural(len(prediction.spans), "entity")}</p>\n<div class="text">{marked}</div></section>\n')


def html_tail() -> str:
    from bertner.html_spans import page_tail

    return page_tail()
