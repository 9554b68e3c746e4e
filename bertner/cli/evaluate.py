"""`bertner evaluate`: a run (or predicted .ann files) scored on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.text import Text

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import out, warn
from bertner.cli._render import scores_table
from bertner.config import check_options, check_settings
from bertner.errors import BertnerError
from bertner.evaluate import Evaluation, evaluate_predicted_brat
from bertner.evaluate import evaluate as run_evaluate
from bertner.fileio import folder_suffixes
from bertner.ensemble import load_predictor
from bertner.runs import RunDir


@app.command(cls=Command, short_help="Score a run (or predicted .ann files) on labelled data.")
@user_errors
def evaluate(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory written by `bertner train` (or a folder of .ann files that `bertner predict --format brat` wrote, to score those)."),
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled data: a preprocessed .jsonl, a CoNLL file or folder, or a brat folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (micro, macro, per_type; document for brat) instead of tables."),
    errors: int = typer.Option(0, "--errors", metavar="N", help="Also list the N most frequent error kinds with examples in context, gold and predicted entities between marks that do not occur in the text ([gold] and {predicted} unless the text holds those brackets), coloured on a terminal."),
    constrained: Optional[bool] = typer.Option(None, "--constrained-decoding/--free-decoding", help="Override the run's decoding of a softmax head (well-formed BIO sequences, or each token's argmax)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", metavar="N", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    held_out: bool = typer.Option(False, "--held-out", help="Score only the documents the run did not train on (by its data_fingerprint.json; for predicted .ann files, by what predict recorded): e.g. the raw folder that preprocess split into train and dev."),
    ensemble: Optional[list[Path]] = typer.Option(None, "--ensemble", metavar="RUN", help="Another run over the same entity types to tag with RUN as one model (repeatable): each character's tag probabilities are averaged over the runs, then decoded once (see README, \"Ensembles\")."),
    discontinuous: Optional[str] = typer.Option(None, "--discontinuous", metavar="POLICY", help="For a folder of predicted .ann files: how to read discontinuous gold entities (merge, first, split, drop). Default: the policy of the run that wrote them, which predict records in the folder (else merge). A run always uses its own."),
) -> None:
    """Score a run on labelled data: entity-level strict P/R/F1 (micro, macro, per type).

    For a brat folder it also gives the document-level exact-span score (document, start, end,
    type) against the .ann gold, with the discontinuous policy the run was trained with.

    Examples:

    \b
      bertner evaluate runs/quickstart data/processed/dev.jsonl
      bertner evaluate runs/quickstart examples/clinical --held-out
      bertner evaluate runs/bilstm data/dev.jsonl --ensemble runs/albert
    """
    check_settings(batch_size=batch_size, device=device)
    check_options(errors=errors)
    if run.is_dir() and not RunDir(run).is_complete() and ".ann" in folder_suffixes(run):
        # RUN is a folder of .ann files that `bertner predict --format brat` wrote: score them.
        unused = [name for name, given in (("--constrained-decoding/--free-decoding", constrained is not None),
                                           ("--batch-size", batch_size != 32), ("--device", device != "auto"),
                                           ("--ensemble", bool(ensemble))) if given]
        if unused:
            warn(f"{run} holds predicted .ann files, scored as they are (no model runs): {', '.join(unused)} ignored")
        result = evaluate_predicted_brat(run, data, policy=discontinuous, n_errors=errors, held_out=held_out)
    else:
        if ensemble and constrained is not None:
            raise BertnerError("--constrained-decoding/--free-decoding choose a softmax run's decoding; an ensemble "
                               "always decodes its averaged probabilities to well-formed tag sequences")
        predictor = load_predictor(run, ensemble or (), device=device, batch_size=batch_size, constrained=constrained)
        if discontinuous is not None:
            trained_with = predictor.run.data_info.get("discontinuous", "merge")
            raise BertnerError(f"{run} scores with the policy it was trained with ({trained_with}); "
                               "--discontinuous is for a folder of predicted .ann files")
        result = run_evaluate(predictor, data, n_errors=errors, held_out=held_out)
    render_evaluation(result, as_json=as_json)


def render_evaluation(result: Evaluation, as_json: bool = False) -> None:
    """Tables by default, one JSON object with --json."""
    if as_json:
        out.print_json(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    totals = lambda scores: [(name, scores[name]) for name in ("micro", "macro")]  # noqa: E731
    held_out = " (held out: documents the run did not train on)" if result.held_out else ""
    out.print(scores_table(f"entity-level strict scores over characters: {result.data}{held_out}",
                           result.scores["per_type"], totals(result.scores)))
    if result.document_scores is not None:
        out.print(scores_table("document-level exact spans (document, start, end, type)",
                               result.document_scores["per_type"], totals(result.document_scores)))
    shown = [kind for kind in result.errors if kind["count"]]
    if shown:
        gold, predicted = shown[0]["marks"]["gold"], shown[0]["marks"]["predicted"]
        legend = Text("most frequent errors; in the examples ")
        legend.append(f"{gold[0]}...{gold[1]}", GOLD_STYLE).append(" is the gold entity, ")
        legend.append(f"{predicted[0]}...{predicted[1]}", PREDICTED_STYLE).append(" the predicted one:")
        out.print(legend)
    for kind in shown:
        out.print(f"[bold]{kind['kind']}[/bold]: {kind['count']:,}", highlight=False)
        for example in kind["examples"]:
            out.print(Text("    ").append_text(marked_example(example, kind["marks"])))


GOLD_STYLE, PREDICTED_STYLE = "green underline", "bold magenta"  # on a terminal; marks alone in a pipe


def marked_example(example: str, marks: dict[str, str]) -> Text:
    """An error example with the gold entity and the prediction coloured between their marks (which occur nowhere
    else in it, `bertner.metrics.choose_marks`)."""
    text, inside = Text(example), {"gold": None, "predicted": None}
    for position, char in enumerate(example):
        for role, style in (("gold", GOLD_STYLE), ("predicted", PREDICTED_STYLE)):
            if char == marks[role][0]:
                inside[role] = position
            elif char == marks[role][1] and inside[role] is not None:
                text.stylize(style, inside[role], position + 1)
                inside[role] = None
    return text
