"""Entities highlighted in HTML: shared by `predict --format html` and `bertner report`.

Pages are self-contained: inline CSS, images as data URIs, and a Content-Security-Policy that
forbids every other source, so nothing is fetched and no script runs. Text is always escaped.
"""

from __future__ import annotations

import html
from typing import Iterable, Sequence

from bertner.spans import Span

# Backgrounds that keep black text readable (contrast at least 8:1) and stay apart from one another: 20 colours,
# any two at least 14 CIEDE2000 units apart (picked farthest-first from an sRGB grid, so a study with few types
# gets the most distinct ones; Ruijin has 15). A label keeps its colour for the whole page.
PALETTE = ("#00b868", "#e88838", "#f870c0", "#20a8f8", "#e0d050", "#00e8f0", "#c0b8f8", "#a8a098", "#c8f8c0",
           "#f8a8a0", "#80a8a0", "#f8d0a8", "#a0a870", "#f8d0e8", "#a8d8f8", "#00f0c0", "#b898a8", "#d0a038",
           "#d0d0b8", "#00b0c8")

CSS = """
body { font: 15px/1.55 system-ui, -apple-system, "Segoe UI", "Noto Sans", "PingFang SC", sans-serif;
       color: #1f2328; background: #fafafa; margin: 0; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid #ddd; }
h3 { font-size: 15px; margin: 16px 0 6px; }
.muted { color: #6a737d; font-size: 13px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13.5px; background: #fff; }
th, td { border: 1px solid #e1e4e8; padding: 4px 9px; text-align: right; }
th { background: #f3f4f6; font-weight: 600; } td.name, th.name { text-align: left; }
img { max-width: 100%; background: #fff; border: 1px solid #e1e4e8; }
.text { white-space: pre-wrap; word-break: break-word; background: #fff; border: 1px solid #e1e4e8;
        border-radius: 4px; padding: 10px 12px; font-size: 15px; }
.ent { border-radius: 3px; padding: 0 1px; box-shadow: inset 0 -2px 0 rgba(0, 0, 0, 0.25); }
.legend span.ent { display: inline-block; margin: 2px 6px 2px 0; padding: 1px 7px; font-size: 13px; }
.show-labels:checked ~ * mark.ent[data-label]::after {
  content: attr(data-label); font-size: 10px; font-weight: 600; vertical-align: 1px; margin-left: 3px;
  padding: 0 3px; border-radius: 2px; background: rgba(255, 255, 255, 0.75); color: #1f2328; }
label.toggle { font-size: 13px; color: #6a737d; user-select: none; }
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 14px; }
.better { color: #1a7f37; font-weight: 600; } .worse { color: #cf222e; font-weight: 600; }
ul.sentences li { margin: 3px 0; }
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def label_colours(labels: Iterable[str]) -> dict[str, str]:
    """A background colour per label, by sorted label, so a label's colour is the same on every page of a run."""
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(sorted(set(labels)))}


def escape(text: str) -> str:
    # A literal carriage return would become a line feed in the browser's DOM; as a reference it stays itself.
    return html.escape(text, quote=True).replace("\r", "&#13;")


def highlight(text: str, spans: Sequence[Span], colours: dict[str, str], scores: Sequence[float] | None = None) -> str:
    """The text escaped, each span a <mark> with its label (and score) on hover and, with `label_toggle` checked,
    after it; the text of the page is `text` exactly (a shown label is CSS, not text).

    A span overlapping an earlier one is left unmarked (spans here never nest).
    """
    order = sorted(range(len(spans)), key=lambda i: (spans[i].start, -spans[i].end))
    pieces, position = [], 0
    for i in order:
        span = spans[i]
        if span.start < position:
            continue
        title = span.label if scores is None else f"{span.label} {scores[i]:.2f}"
        colour = colours.get(span.label, PALETTE[-1])
        pieces.append(escape(text[position : span.start]))
        pieces.append(f'<mark class="ent" style="background:{colour}" title="{escape(title)}" '
                      f'data-label="{escape(span.label)}">{escape(text[span.start : span.end])}</mark>')
        position = span.end
    pieces.append(escape(text[position:]))
    return "".join(pieces)


def label_toggle() -> str:
    """A checkbox that shows each entity's label after it (checked at first). Pure CSS, as the page runs no script:
    it acts on the entities that follow it in the same parent, so it goes before them."""
    return ('<input type="checkbox" class="show-labels" id="show-labels" checked>'
            '<label class="toggle" for="show-labels"> show labels</label>')


def legend(colours: dict[str, str]) -> str:
    items = "".join(f'<span class="ent" style="background:{colour}">{escape(label)}</span>'
                    for label, colour in colours.items())
    return f'<div class="legend">{items}</div>'


def page_head(title: str) -> str:
    """Everything up to and including <main>; `page_tail()` closes it."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n")


def page_tail() -> str:
    return "</main>\n</body>\n</html>\n"
