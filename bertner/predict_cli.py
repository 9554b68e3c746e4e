"""What `bertner predict` does between parsing and printing: find the run, read inputs, write outputs."""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from bertner.console import info, plural, warn
from bertner.errors import BertnerError, DataError, OutputExistsError, RunError
from bertner.fileio import (
    atomic_dir, atomic_path, check_writable, decode_utf8, input_files, missing_input, output_conflict, write_json,
)
from bertner.progress import task_progress
from bertner.runs import check_run_dir, looks_like_run, read_json
from bertner.spans import Document

if TYPE_CHECKING:
    from bertner.predict import Prediction, Predictor


def best_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` with the best dev F1."""
    if not runs_dir.is_dir():
        raise RunError(f"no run given and no {runs_dir}/ folder here; pass a run directory first: bertner predict RUN FILE")
    from bertner.compare import find_run_dirs

    candidates = []
    found, _ = find_run_dirs(runs_dir)  # the runs `bertner compare` lists
    for folder in found:
        try:
            f1 = read_json(folder / "summary.json").get("best_f1")
        except RunError as e:
            warn(f"{e}; skipped")
            continue
        if not isinstance(f1, (int, float)) or isinstance(f1, bool):
            f1 = -1.0
        candidates.append((f1, str(folder)))
    if not candidates:
        raise RunError(f"no trained runs under {runs_dir}/; train one with `bertner train` or pass a run directory")
    return Path(max(candidates)[1])


@dataclass
class TextInput:
    """One document to tag, known before it is read for tagging: its id, where it is, its length."""

    id: str
    source: str  # the file, or <stdin>
    characters: int
    path: Path | None = None
    text: str | None = None  # standard input only: it cannot be read a second time


def read_text(path: Path, warn_bom: bool = False) -> str:
    """A text file exactly as stored, less a UTF-8 byte-order mark."""
    try:
        text = decode_utf8(path)  # the same checks (binary, not UTF-8) as the corpus readers
    except OSError as e:
        raise DataError(f"cannot read it: {e.strerror or e}", path=path) from None
    if text.startswith("\ufeff"):
        # Offsets then count from the first character after the BOM, like our brat reader.
        if warn_bom:
            warn(f"{path}: has a UTF-8 byte-order mark; offsets count characters after it")
        text = text[1:]
    return text


def check_text_input(path: Path, doc_id: str) -> TextInput | None:
    """A text file checked and measured (then let go: it is read again when its turn comes); None if empty."""
    text = read_text(path, warn_bom=True)
    if not text.strip():
        warn(f"{path}: empty, skipped")
        return None
    return TextInput(doc_id, str(path), len(text), path)


def gather_inputs(inputs: list[str]) -> list[TextInput]:
    """Every document to tag, each file checked (UTF-8, not binary, not empty) before any is tagged."""
    found: list[TextInput | None] = []
    for item in inputs:
        if item == "-":
            text = sys.stdin.read()
            if not text.strip():
                raise DataError("standard input is empty", path="<stdin>")
            found.append(TextInput("stdin", "<stdin>", len(text), text=text))
            continue
        path = Path(item)
        if path.is_dir():
            files = input_files(path, (".txt",), recursive=True)
            if not files:
                raise DataError("no .txt files in this folder", path=path)
            found.extend(check_text_input(f, f.relative_to(path).with_suffix("").as_posix()) for f in files)
        elif path.is_file():
            found.append(check_text_input(path, path.stem))
        else:
            raise missing_input(path)
    kept = [f for f in found if f is not None]
    if not kept:
        raise DataError("nothing to tag: every input was empty", path=", ".join(inputs))
    repeated = sorted(doc_id for doc_id, n in Counter(f.id for f in kept).items() if n > 1)
    if repeated:
        raise DataError(f"two inputs share the document id {repeated[0]!r}; rename one of them")
    return kept


def read_documents(inputs: Iterable[TextInput]) -> Iterator[Document]:
    """The documents one at a time, read when their turn comes."""
    for item in inputs:
        text = item.text if item.text is not None else read_text(item.path)
        yield Document(item.id, text, source=item.source)


def gather_documents(inputs: list[str]) -> list[Document]:
    """Every input document in memory at once (for scripts and benchmarks; `bertner predict` streams)."""
    return list(read_documents(gather_inputs(inputs)))


def brat_files(inputs: Iterable[TextInput]) -> Iterator[str]:
    """The files `--format brat` writes, relative to the output folder."""
    from bertner import writers

    for item in inputs:
        yield f"{item.id}.ann"
        yield f"{item.id}.txt"
    yield writers.BRAT_RECORD


def run_predict(
    inputs: list[str], output_format: str | None, output: Path | None, runs_dir: Path, batch_size: int,
    device: str, force: bool,
) -> None:
    from bertner.config import check_settings
    from bertner.predict import Predictor

    check_settings(batch_size=batch_size, device=device)  # before any input is read
    if inputs and looks_like_run(Path(inputs[0])):
        run, inputs = Path(inputs[0]), inputs[1:]
        check_run_dir(run)  # an incomplete or broken run is an error here, not a folder of inputs
    else:
        run = best_run(runs_dir)
        info(f"using {run} (best dev F1 under {runs_dir}/)")
    if not inputs:
        raise BertnerError("no input given: pass .txt files, folders, or - for standard input")
    fmt = output_format or ("pretty" if sys.stdout.isatty() and output is None else "jsonl")
    check_output(fmt, output, force)

    items = gather_inputs(inputs)
    if fmt == "brat":
        conflict = output_conflict(output, brat_files(items))  # found now, not after the tagging
        if conflict is not None:
            raise OutputExistsError(f"{conflict}; nothing was written")
    predictor = Predictor.from_run(run, device=device, batch_size=batch_size)
    totals = {"characters": sum(i.characters for i in items), "documents": len(items)}
    with task_progress("tagging", totals) as progress:
        predictions = counted(
            predictor.predict_stream(read_documents(items), on_characters=lambda n: progress.advance("characters", n)),
            lambda: progress.advance("documents", 1),
        )
        try:
            write_predictions(predictions, fmt, output, predictor, run)
        except OSError as e:  # disk full, permissions: the atomic writers left nothing half-written
            if output is None:
                raise BertnerError(f"cannot write to standard output: {e.strerror or e}") from None
            raise BertnerError(f"cannot write {output}: {e.strerror or e}; nothing was written") from None


def check_output(fmt: str, output: Path | None, force: bool) -> None:
    """Refuse an output that does not fit the format, or that holds something, unless --force."""
    from bertner.writers import FORMATS

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


def counted(predictions: Iterable[Prediction], on_document: Callable[[], None]) -> Iterator[Prediction]:
    for prediction in predictions:
        on_document()
        yield prediction


def write_predictions(predictions: Iterable[Prediction], fmt: str, output: Path | None, predictor: Predictor, run: Path) -> None:
    """Write each prediction as it comes: to stdout at once, to a file or folder through a temporary name."""
    from bertner import writers

    if fmt == "pretty":
        for p in predictions:
            writers.print_pretty([p], labels=predictor.run.labels)
    elif fmt == "brat":
        write_brat(predictions, output, {"run": str(run), "discontinuous": predictor.run.data_info.get("discontinuous", "merge")})
    else:
        render, head, tail = text_renderer(fmt, predictor.run.labels)
        if output is None:
            sys.stdout.write(head)
            for p in predictions:
                sys.stdout.write(render(p))
                sys.stdout.flush()  # a crash or Ctrl-C later keeps every document written so far
            sys.stdout.write(tail)
        else:
            documents = 0
            with atomic_path(output) as tmp:
                try:
                    with open(tmp, "w", encoding="utf-8", newline="") as f:
                        f.write(head)
                        for p in predictions:
                            f.write(render(p))
                            documents += 1
                        f.write(tail)
                except BaseException:
                    keep_partial(tmp, output, documents)
                    raise
            info(f"wrote {plural(documents, 'document')} to {output}")


def keep_partial(staged: Path, output: Path, documents: int) -> None:
    """After a crash or Ctrl-C: keep the documents finished so far as OUTPUT.partial, and say so.

    The output itself is left as it was (it is only replaced when every document is done).
    """
    if documents == 0:
        return
    partial = output.with_name(output.name + ".partial")
    if partial.is_dir() and not partial.is_symlink():
        shutil.rmtree(partial)  # what an earlier interrupted predict kept
    elif partial.exists() or partial.is_symlink():
        partial.unlink()
    os.replace(staged, partial)
    warn(f"predict stopped after {plural(documents, 'document')}: they are in {partial}; {output} was not changed")


def text_renderer(fmt: str, labels: list[str]) -> tuple[Callable[[Prediction], str], str, str]:
    """A one-file format as (render one prediction, text before the first, text after the last)."""
    from bertner import writers

    if fmt == "html":
        return (lambda p: writers.html_document(p, labels)), writers.html_head(labels), writers.html_tail()
    if fmt == "jsonl":
        return writers.jsonl_line, "", ""
    return (lambda p: "".join(writers.conll_lines(p))), "", ""


def write_brat(predictions: Iterable[Prediction], output: Path, record: dict) -> None:
    """One .ann and the text beside it per document, and the record `bertner evaluate` reads (`writers.BRAT_RECORD`)."""
    from bertner import writers

    written: list[str] = []
    entities = 0
    with atomic_dir(output) as folder:
        try:
            for p in predictions:
                target = folder / f"{p.doc}.ann"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(writers.brat_ann(p), encoding="utf-8", newline="")
                # The text beside it makes the folder a complete brat corpus (viewable, scorable).
                target.with_suffix(".txt").write_text(p.text, encoding="utf-8", newline="")
                written.append(p.doc)
                entities += len(p.spans)
        except BaseException:
            keep_partial(folder, output, len(written))
            raise
        write_json(folder / writers.BRAT_RECORD, {"format": 1, **record, "documents": written})
    info(f"wrote {plural(len(written), '.ann file')} ({plural(entities, 'entity')}) to {output}")
    older = sorted({p.stem for p in output.glob("*.ann")} - set(written))  # the ones `bertner evaluate` reads
    if older:
        warn(f"{plural(len(older), '.ann file')} in {output} {'was' if len(older) == 1 else 'were'} not written by this predict and {'is' if len(older) == 1 else 'are'} kept (e.g. {older[0]}.ann); "
             "`bertner evaluate` would score them with these")
