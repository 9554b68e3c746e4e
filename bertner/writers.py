"""Output formats for predictions: jsonl, brat, conll, html (the pretty terminal view is `bertner.cli.predict`'s).

Each writer takes `Prediction`s (document text + spans in document offsets) and renders them;
none of them knows about models or tokens. Writers own their whole output: a file or a folder,
written through a temporary name so that nothing half-written is ever left.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import unicodedata
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TextIO

from bertner.errors import BertnerError, OutputExistsError
from bertner.fileio import atomic_dir, atomic_path, check_writable, sibling_name, write_failure, write_json
from bertner.html_spans import escape, highlight, label_colours, label_toggle, legend, page_head, page_tail
from bertner.predict import Prediction, TextInput
from bertner.spans import Span
from bertner.tags import spans_to_tags
from bertner.text import plural

log = logging.getLogger(__name__)

FORMATS = ("pretty", "jsonl", "brat", "conll", "html")
# Written by `predict --format brat` beside the .ann files: the run, its discontinuous policy (so
# `evaluate PRED GOLD` reads gold as `evaluate RUN GOLD` does) and the documents it wrote.
BRAT_RECORD = "bertner_predict.json"


def entity_records(prediction: Prediction) -> list[dict]:
    """The entities as `predict --format jsonl` and `bertner serve` give them: start, end, label, text, score."""
    return [
        {"start": e.start, "end": e.end, "label": e.label, "text": e.text, "score": round(e.score, 4)}
        for e in prediction.entities()
    ]


def jsonl_line(prediction: Prediction) -> str:
    return json.dumps({"doc": prediction.doc, "entities": entity_records(prediction)}, ensure_ascii=False) + "\n"


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
    tags = spans_to_tags(len(prediction.text), prediction.spans)
    yield f"-DOCSTART- {one_line_id(prediction.doc)}\n\n"
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


def one_line_id(doc: str) -> str:
    """A document id (a file name, which may hold a line break) that stays on its CoNLL line:
    backslashes and control characters are written as Python escapes (\\n, \\x1b, \\\\)."""
    return "".join(c.encode("unicode_escape").decode("ascii") if c == "\\" or unicodedata.category(c) in ("Cc", "Zl", "Zp")
                   else c for c in doc)


def brat_files(inputs: Iterable[TextInput]) -> Iterator[str]:
    """The files `--format brat` writes, relative to the output folder."""
    for item in inputs:
        yield f"{item.id}.ann"
        yield f"{item.id}.txt"
    yield BRAT_RECORD


def check_output(fmt: str, output: Path | None, force: bool) -> None:
    """Refuse an output that does not fit the format, or that holds something, unless --force."""
    if fmt not in FORMATS:
        raise BertnerError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "brat" and output is None:
        raise BertnerError("--format brat writes one .ann per input .txt: give the folder with -o DIR")
    if fmt == "pretty" and output is not None:
        raise BertnerError("--format pretty prints to the terminal; use jsonl, brat, conll or html with -o")
    if output is None:
        return
    if fmt == "brat" and output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} is a file; --format brat writes a folder of .ann files: give a folder with -o")
    if fmt != "brat" and output.is_dir():
        raise OutputExistsError(f"{output} is a folder; --format {fmt} writes one file: give a file name with -o")
    if output.exists() and not force:
        if output.is_file() or (output.is_dir() and any(output.iterdir())):
            raise OutputExistsError(f"{output} already exists; pass --force to overwrite it")
    check_writable(output, folder=fmt == "brat")  # before loading the model and tagging


def write_predictions(predictions: Iterable[Prediction], fmt: str, output: Path | None, brat_record: dict,
                      labels: Sequence[str], stream: TextIO | None = None) -> None:
    """Write each prediction as it comes (jsonl, conll, html, brat): to a file or a folder through a
    temporary name, or (output None) to `stream` at once. `brat_record`: the run and its policy (html names the run);
    `labels`: every label of the run (html colours). After a crash or Ctrl-C the documents finished
    so far are kept as OUTPUT.partial (`keep_partial`) and OUTPUT is left as it was."""
    if fmt == "brat":
        write_brat(predictions, output, brat_record)
        return
    render, head, tail = text_renderer(fmt, labels, brat_record["run"])
    if output is None:
        stream.write(head)
        for p in predictions:
            stream.write(render(p))
            stream.flush()  # a crash or Ctrl-C later keeps every document written so far
        stream.write(tail)
        return
    documents = 0
    with atomic_path(output) as tmp:
        try:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(head)
                for p in predictions:
                    f.write(render(p))
                    documents += 1
                f.write(tail)
        except BaseException as error:
            keep_partial(tmp, output, documents, error)
            raise
    log.info(f"wrote {plural(documents, 'document')} to {output}")


def keep_partial(staged: Path, output: Path, documents: int, error: BaseException) -> None:
    """After a crash or Ctrl-C: keep the documents finished so far as OUTPUT.partial, and say so.

    The output itself is left as it was (it is only replaced when every document is done). Not after a
    failed write (a full disk): what was staged is cut mid-document, and its space is better freed.
    """
    if documents == 0 or write_failure(error) is not None:
        return
    partial = output.with_name(sibling_name(output.name, ".partial"))
    if partial.is_dir() and not partial.is_symlink():
        shutil.rmtree(partial)  # what an earlier interrupted predict kept
    elif partial.exists() or partial.is_symlink():
        partial.unlink()
    os.replace(staged, partial)
    log.warning(f"predict stopped after {plural(documents, 'document')}: they are in {partial}; {output} was not changed")


def text_renderer(fmt: str, labels: Sequence[str], run: str) -> tuple[Callable[[Prediction], str], str, str]:
    """A one-file format as (render one prediction, text before the first, text after the last)."""
    if fmt == "html":
        return (lambda p: html_document(p, labels)), html_head(labels, run), html_tail()
    if fmt == "jsonl":
        return jsonl_line, "", ""
    return (lambda p: "".join(conll_lines(p))), "", ""


def write_brat(predictions: Iterable[Prediction], output: Path, record: dict) -> None:
    """One .ann and the text beside it per document, and the record `bertner evaluate` reads (`BRAT_RECORD`)."""
    written: list[str] = []
    entities = 0
    with atomic_dir(output) as folder:
        try:
            for p in predictions:
                target = folder / f"{p.doc}.ann"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(brat_ann(p), encoding="utf-8", newline="")
                # The text beside it makes the folder a complete brat corpus (viewable, scorable).
                target.with_suffix(".txt").write_text(p.text, encoding="utf-8", newline="")
                written.append(p.doc)
                entities += len(p.spans)
        except BaseException as error:
            keep_partial(folder, output, len(written), error)
            raise
        write_json(folder / BRAT_RECORD, {"format": 1, **record, "documents": written})
    log.info(f"wrote {plural(len(written), '.ann file')} ({plural(entities, 'entity')}) to {output}")
    older = sorted({p.stem for p in output.glob("*.ann")} - set(written))  # the ones `bertner evaluate` reads
    if older:
        log.warning(f"{plural(len(older), '.ann file')} in {output} {'was' if len(older) == 1 else 'were'} not written by this predict and {'is' if len(older) == 1 else 'are'} kept (e.g. {older[0]}.ann); "
             "`bertner evaluate` would score them with these")


def html_head(labels: Sequence[str], run: str) -> str:
    """The page up to the documents: the run that tagged them, the label toggle and the colour legend (every label
    of the run, so colours are stable)."""
    return (page_head(f"bertner predictions by {run}") + "<h1>bertner predictions</h1>\n"
            f'<p class="muted">Tagged by the run <code>{escape(run)}</code>. Hover over an entity for its label and '
            "score.</p>\n" + label_toggle() + "\n" + legend(label_colours(labels)) + "\n")


def html_document(prediction: Prediction, labels: Sequence[str]) -> str:
    """One document: its id, entity count, and its text with the entities highlighted (offsets exact)."""
    marked = highlight(prediction.text, prediction.spans, label_colours(labels), prediction.scores)
    return (f'<section class="document"><h2>{escape(prediction.doc)}</h2>'
            f'<p class="muted">{plural(len(prediction.spans), "entity")}</p>\n<div class="text">{marked}</div></section>\n')


def html_tail() -> str:
    """The page after the last document."""
    return page_tail()
