"""`bertner export`: a run as a Hugging Face token-classification folder."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info
from bertner.export import export_run


@app.command(cls=Command, short_help="Write a run as a Hugging Face model folder.")
@user_errors
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory written by `bertner train`."),
    output: Path = typer.Argument(..., metavar="OUT", help="The folder to write: model, tokenizer, README.md."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that already holds something (replaces only the files export writes)."),
    language: Optional[str] = typer.Option(None, "--language", metavar="CODE", help="The model card's language, an ISO 639 code such as zh or en. Default: read from the run's dev text when its script tells (Chinese, Japanese, Korean); otherwise left out."),
) -> None:
    """Write a run as a folder that plain Hugging Face tools load offline, with no custom code.

    transformers' AutoModelForTokenClassification and pipeline("token-classification",
    aggregation_strategy="simple") read it directly. A CRF run adds its transitions (crf.safetensors)
    and OUT/README.md shows how to decode with them; runs with --gru or --model bilstm have no
    transformers equivalent and are refused.
    """
    result = export_run(run, output, force=force, language=language)
    info(f"wrote {output}: a transformers token-classification model ({result.head} head); "
         f"{output / 'README.md'} says how to use it")
    info("what differs from `bertner predict`:")
    for note in result.notes:
        info(f"  - {note}")
