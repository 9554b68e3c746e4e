"""`bertner predict`: find the run, check the inputs and the output, tag with progress, write or show."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, Sequence

import typer
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info, out, plural, printable, warn
from bertner.cli._progress import task_progress
from bertner.config import check_settings
from bertner.errors import BertnerError, OutputExistsError
from bertner.fileio import output_conflict
from bertner.ensemble import load_predictor
from bertner.predict import Prediction, gather_inputs, read_documents
from bertner.runs import RunDir, best_run, check_output_place
from bertner.spans import Span
from bertner.writers import brat_files, check_output, write_predictions


@app.command(cls=Command, short_help="Tag raw text with a run; exact offsets.")
@user_errors
def predict(
    inputs: list[str] = typer.Argument(..., metavar="[RUN] INPUT", help=".txt files, folders of them, or - for standard input. A first argument that is a run directory chooses the run; otherwise the best run under runs/ is used."),
    output_format: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="pretty (default on a terminal), jsonl (default otherwise), brat, conll, html (a page with the entities highlighted)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH", help="Output folder (brat: one .ann per .txt; required) or file (jsonl, conll, html)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs", metavar="DIR", help="Where to look for the best run when no run is given."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", metavar="N", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    ensemble: Optional[list[Path]] = typer.Option(None, "--ensemble", metavar="RUN", help="Another run over the same entity types to tag with RUN as one model (repeatable): each character's tag probabilities are averaged over the runs, then decoded once (see README, \"Ensembles\")."),
    force: bool = typer.Option(False, "--force", help="Write into an output that already holds something: replaces only what predict writes (the -o file; or each input's .ann and .txt and bertner_predict.json), deletes nothing else."),
) -> None:
    """Tag raw text with a trained run; offsets are exact in the original files.

    Examples:

    \b
      bertner predict notes.txt
      bertner predict runs/bert-crf notes/ -f brat -o pred/
      echo 患者有2型糖尿病 | bertner predict -
      bertner predict notes.txt -f html -o notes.html
      bertner predict runs/bilstm notes.txt --ensemble runs/albert
    """
    predict_files(inputs, output_format, output, runs_dir, batch_size, device, force, ensemble or [])


def predict_files(
    inputs: list[str], output_format: str | None, output: Path | None, runs_dir: Path, batch_size: int,
    device: str, force: bool, ensemble: list[Path],
) -> None:
    check_settings(batch_size=batch_size, device=device)  # before any input is read
    if inputs and RunDir(inputs[0]).looks_like_run():
        run, inputs = Path(inputs[0]), inputs[1:]
        RunDir(run).check()  # an incomplete or broken run is an error here, not a folder of inputs
    else:
        run = best_run(runs_dir)
        info(f"using {run} (best dev F1 under {runs_dir}/)")
    if not inputs:
        raise BertnerError("no input given: pass .txt files, folders, or - for standard input")
    fmt = output_format or ("pretty" if sys.stdout.isatty() and output is None else "jsonl")
    if output is not None:
        # OUT.partial too: what an interrupted predict keeps there replaces whatever was there.
        partial = [output.with_name(output.name + ".partial")] if output.name else []
        for place in (output, *partial):
            check_output_place(place, [run, *ensemble, *(item for item in inputs if item != "-")])
    check_output(fmt, output, force)

    items = gather_inputs(inputs)
    if fmt == "brat":
        conflict = output_conflict(output, brat_files(items))  # found now, not after the tagging
        if conflict is not None:
            raise OutputExistsError(f"{conflict}; nothing was written")
    predictor = load_predictor(run, ensemble, device=device, batch_size=batch_size)
    trained = predictor.trained_documents()
    warn_trained_inputs(predictor.name, [i.id for i in items], trained)
    totals = {"characters": sum(i.characters for i in items), "documents": len(items)}
    with task_progress("tagging", totals) as progress:
        predictions = counted(
            predictor.predict_stream(read_documents(items), on_characters=lambda n: progress.advance("characters", n)),
            lambda: progress.advance("documents", 1),
        )
        try:
            if fmt == "pretty":
                for p in predictions:
                    render_pretty([p], labels=predictor.run.labels)
            else:
                policy = predictor.run.data_info.get("discontinuous", "merge")
                record = {"run": predictor.name, "discontinuous": policy}
                if trained is not None:  # so that `evaluate PRED GOLD --held-out` can leave them out
                    record["trained_documents"] = sorted(trained)
                write_predictions(predictions, fmt, output, record, predictor.run.labels, sys.stdout)
        except OSError as e:  # disk full, permissions: the atomic writers left nothing half-written
            if output is None:
                raise BertnerError(f"cannot write to standard output: {e.strerror or e}") from None
            raise BertnerError(f"cannot write {output}: {e.strerror or e}; nothing was written") from None


def warn_trained_inputs(run: str, ids: list[str], trained: set[str] | None) -> None:
    """Say so when inputs are documents the run trained on: what it finds there shows memory, not skill."""
    seen = sorted(set(ids) & (trained or set()))
    if seen:
        which = (f"{seen[0]} was" if len(ids) == 1 else
                 f"{len(seen):,} of the {len(ids):,} inputs {'was' if len(seen) == 1 else 'were'}")
        example = "" if len(ids) == 1 else f" (e.g. {seen[0]})"
        whose = "its" if len(seen) == 1 else "their"
        warn(f"{which} in {run}'s training data{example}: the run has seen {whose} entities, so what it finds "
             "there is no measure of it (`bertner evaluate --held-out` leaves them out)")


def counted(predictions: Iterable[Prediction], on_document: Callable[[], None]) -> Iterator[Prediction]:
    for prediction in predictions:
        on_document()
        yield prediction


def render_pretty(predictions: list[Prediction], max_chars: int = 2000, labels: Sequence[str] | None = None) -> None:
    """The text with entities highlighted by label, then a table of the entities.

    `labels` (all the run's labels) keeps each label's colour the same from one call to the next.
    """
    palette = ["cyan", "magenta", "green", "yellow", "blue", "red", "bright_cyan", "bright_magenta",
               "bright_green", "bright_yellow", "bright_blue", "bright_red", "orange3", "purple", "turquoise2"]
    labels = sorted(set(labels or ()) | {s.label for p in predictions for s in p.spans})
    colour = {label: palette[i % len(palette)] for i, label in enumerate(labels)}
    for p in predictions:
        # A rule spans the screen; in a pipe (no screen, no width limit) it keeps to 80 columns.
        out.print(Rule(Text(f"{printable(p.doc)}: {plural(len(p.spans), 'entity')}"), style="dim"),
                  width=None if out.is_terminal else 80)
        out.print(marked_text(p.text[:max_chars], p.spans, colour))
        if len(p.text) > max_chars:
            out.print(f"[dim]... {len(p.text) - max_chars:,} more characters (use --format jsonl for all)[/dim]")
        if p.spans:
            table = Table(show_edge=False, pad_edge=False)
            for column in ("start", "end", "label", "text", "score"):
                table.add_column(column, justify="right" if column in ("start", "end", "score") else "left")
            for s, score in zip(p.spans, p.scores):
                table.add_row(str(s.start), str(s.end), Text(printable(s.label), style=colour[s.label]),
                              Text(printable(p.text[s.start : s.end])), f"{score:.2f}")
            out.print(table)


def marked_text(text: str, spans: Sequence[Span], colour: dict[str, str]) -> Text:
    """`text` with its entities underlined in their label's colour, control characters escaped.

    Escaped piece by piece (an escape is longer than its character), so each style stays on its entity.
    """
    marked, position = Text(), 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < position or s.end > len(text):
            continue
        marked.append(printable(text[position : s.start]))
        marked.append(printable(text[s.start : s.end]), style=f"bold {colour[s.label]} underline")
        position = s.end
    marked.append(printable(text[position:]))
    return marked
