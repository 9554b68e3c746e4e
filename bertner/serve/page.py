"""GET /: a page to paste text into and see its entities, rendered as `predict --format html` renders them.

A plain HTML form, no script: the text goes to POST / and comes back highlighted by the same code
as predict's page (`writers.html_document`: legend, label and score on hover, text escaped). The
page's policy forbids scripts and every outside source, and forms may post only to this server.
"""

from __future__ import annotations

from typing import Sequence

from bertner.html_spans import escape, label_colours, legend, page_head, page_tail
from bertner.predict import Prediction
from bertner.writers import html_document

# Sent as a header too: the meta tag cannot say where forms may go or who may frame the page.
PAGE_POLICY = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; form-action 'self'; "
               "frame-ancestors 'none'; base-uri 'none'")

FORM_CSS = """
form textarea { box-sizing: border-box; width: 100%; min-height: 9em; font: inherit; padding: 8px 10px;
                border: 1px solid #d0d7de; border-radius: 4px; background: #fff; }
form button { margin: 8px 0 0; padding: 6px 16px; font: inherit; cursor: pointer; }
.error { color: #cf222e; font-weight: 600; }
"""


def page(run_name: str, variant: str, labels: Sequence[str], max_chars: int, text: str = "",
         prediction: Prediction | None = None, message: str | None = None) -> str:
    """The whole page: the form (holding `text`), and the entities of `prediction` or a `message` below it."""
    parts = [
        page_head(f"bertner: {run_name}"),
        f"<style>{FORM_CSS}</style>\n",
        f"<h1>bertner</h1>\n<p class=\"muted\">Run {escape(run_name)} ({escape(variant)}). Paste a text and press "
        "Find entities; hover over an entity for its label and score.</p>\n",
        legend(label_colours(labels)), "\n",
        '<form method="post">\n'
        # The parser drops a line break right after <textarea>: this one, so that the text keeps its own.
        f'<textarea name="text" maxlength="{max_chars}" aria-label="text" autofocus>\n{escape(text)}</textarea>\n'
        '<button type="submit">Find entities</button>\n</form>\n',
    ]
    if message is not None:
        parts.append(f'<p class="error">{escape(message)}</p>\n')
    if prediction is not None:
        parts.append(html_document(prediction, labels))
    parts.append(page_tail())
    return "".join(parts)
