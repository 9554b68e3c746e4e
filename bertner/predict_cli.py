"""What `bertner predict` does between parsing and printing: find the run, read inputs, write outputs."""

from __future__ import annotations

import sys
from pathlib import Path

from bertner.console import info, warn
from bertner.errors import BertnerError, DataError, OutputExistsError, RunError
from bertner.fileio import atomic_dir, atomic_path, check_writable, decode_utf8, input_files, missing_input
from bertner.runs import check_run_dir, looks_like_run, read_json
from bertner.spans import Document


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


def read_text_input(path: Path, doc_id: str) -> Document | None:
    """A document from a text file, exactly as stored; None (with a warning) for an empty file."""
    text = decode_utf8(path)  # the same checks (binary, not UTF-8) as the corpus readers
    if text.startswith("\ufeff"):
        # Offsets then count from the first character after the BOM, like our brat reader.
        warn(f"{path}: has a UTF-8 byte-order mark; offsets count characters after it")
        text = text[1:]
    if not text.strip():
        warn(f"{path}: empty, skipped")
        return None
    return Document(doc_id, text, source=str(path))


def gather_documents(inputs: list[str]) -> list[Document]:
    documents: list[Document] = []
    for item in inputs:
        if item == "-":
            text = sys.stdin.read()
            if not text.strip():
                raise DataError("standard input is empty", path="<stdin>")
            documents.append(Document("stdin", text, source="<stdin>"))
            continue
        path = Path(item)
        if path.is_dir():
            files = input_files(path, (".txt",), recursive=True)
            if not files:
                raise DataError("no .txt files in this folder", path=path)
            for f in files:
                doc = read_text_input(f, f.relative_to(path).with_suffix("").as_posix())
                if doc is not None:
                    documents.append(doc)
        elif path.is_file():
            doc = read_text_input(path, path.stem)
            if doc is not None:
                documents.append(doc)
        else:
            raise missing_input(path)
    if not documents:
        raise DataError("nothing to tag: every input was empty", path=", ".join(inputs))
    ids = [d.id for d in documents]
    if len(set(ids)) != len(ids):
        duplicated = sorted({i for i in ids if ids.count(i) > 1})
        raise DataError(f"two inputs share the document id {duplicated[0]!r}; rename one of them")
    return documents


def predict_with_progress(predictor, documents: list[Document]):
    """Predict, with a progress bar on stderr when there is enough text to wait for."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from bertner.console import err

    characters = sum(len(d.text) for d in documents)
    if characters < 50_000 or not err.is_terminal:
        return predictor.predict(documents)
    with Progress(TextColumn("tagging"), BarColumn(), MofNCompleteColumn(), TextColumn("inputs"),
                  TimeRemainingColumn(), console=err, transient=True) as progress:
        task = progress.add_task("tag", total=None)

        def advance(n: int) -> None:
            progress.update(task, advance=n)

        return predictor.predict(documents, on_batch=advance, on_start=lambda total: progress.update(task, total=total))


def run_predict(
    inputs: list[str], output_format: str | None, output: Path | None, runs_dir: Path, batch_size: int,
    device: str, force: bool,
) -> None:
    from bertner.predict import Predictor
    from bertner.writers import FORMATS

    if inputs and looks_like_run(Path(inputs[0])):
        run, inputs = Path(inputs[0]), inputs[1:]
        check_run_dir(run)  # an incomplete or broken run is an error here, not a folder of inputs
    else:
        run = best_run(runs_dir)
        info(f"using {run} (best dev F1 under {runs_dir}/)")
    if not inputs:
        raise BertnerError("no input given: pass .txt files, folders, or - for standard input")
    fmt = output_format or ("pretty" if sys.stdout.isatty() and output is None else "jsonl")
    if fmt not in FORMATS:
        raise BertnerError(f"unknown --format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "brat" and output is None:
        raise BertnerError("--format brat writes one .ann per input .txt: give the folder with -o DIR")
    if fmt == "pretty" and output is not None:
        raise BertnerError("--format pretty prints to the terminal; use jsonl, brat or conll with -o")
    if fmt == "brat" and output.exists() and not output.is_dir():
        raise OutputExistsError(f"{output} is a file; --format brat writes a folder of .ann files: give a folder with -o")
    if output is not None and output.exists() and not force:
        if output.is_file() or (output.is_dir() and any(output.iterdir())):
            raise OutputExistsError(f"{output} already exists; pass --force to overwrite it")
    if output is not None:
        check_writable(output, folder=fmt == "brat")  # before loading the model and tagging

    documents = gather_documents(inputs)
    predictor = Predictor.from_run(run, device=device, batch_size=batch_size)
    predictions = predict_with_progress(predictor, documents)

    try:
        write_predictions(predictions, fmt, output)
    except OSError as e:  # disk full, permissions: the atomic writers left nothing half-written
        if output is None:
            raise BertnerError(f"cannot write to standard output: {e.strerror or e}") from None
        raise BertnerError(f"cannot write {output}: {e.strerror or e}; nothing was written") from None


def write_predictions(predictions, fmt: str, output: Path | None) -> None:
    from bertner.writers import brat_ann, conll_lines, jsonl_line, print_pretty

    if fmt == "pretty":
        print_pretty(predictions)
    elif fmt == "brat":
        with atomic_dir(output) as folder:
            for p in predictions:
                target = folder / f"{p.doc}.ann"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(brat_ann(p), encoding="utf-8", newline="")
                # The text beside it makes the folder a complete brat corpus (viewable, scorable).
                target.with_suffix(".txt").write_text(p.text, encoding="utf-8", newline="")
        info(f"wrote {len(predictions)} .ann files ({sum(len(p.spans) for p in predictions):,} entities) to {output}")
    else:
        render = jsonl_line if fmt == "jsonl" else (lambda p: "".join(conll_lines(p)))
        if output is None:
            for p in predictions:
                sys.stdout.write(render(p))
        else:
            with atomic_path(output) as tmp:
                with open(tmp, "w", encoding="utf-8", newline="") as f:
                    for p in predictions:
                        f.write(render(p))
            info(f"wrote {len(predictions)} documents to {output}")
