"""`bertner embeddings`: character, bigram and lexicon-word vectors from raw text, for `train --init-embeddings`."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info
from bertner.cli._progress import clock, task_progress
from bertner.embeddings import VectorSettings, train_vectors


@app.command(cls=Command, short_help="Train character, bigram and word vectors on raw text.")
@user_errors
def embeddings(
    inputs: list[Path] = typer.Argument(..., metavar="RAW", help="Text files, folders of .txt files (searched with their sub-folders), or a preprocessed train.jsonl."),
    output: Path = typer.Option(..., "--output", "-o", metavar="VECTORS", help="The word2vec text file to write (give it to train --init-embeddings)."),
    lexicon: Optional[list[str]] = typer.Option(None, "--lexicon", metavar="SOURCE", help="Also train vectors of the dictionary words found in the text, as train --lexicon finds them: jieba, a term-list file or a folder of them. Repeatable."),
    dim: int = typer.Option(VectorSettings.dim, "--dim", metavar="N", help="Vector width (128: the bilstm's character width; narrower tables take the vectors' principal components)."),
    epochs: int = typer.Option(VectorSettings.epochs, "--epochs", metavar="N", help="Passes over the text, per kind of vector."),
    min_count: int = typer.Option(VectorSettings.min_count, "--min-count", metavar="N", help="Leave out characters, bigrams and words seen fewer times."),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N", help="Training threads (default: every core)."),
    seed: int = typer.Option(VectorSettings.seed, "--seed", metavar="N", help="Random seed (with --workers 1, the same file every time)."),
    force: bool = typer.Option(False, "--force", help="Replace VECTORS if it exists."),
) -> None:
    """Train word2vec vectors of the characters, character bigrams and (with --lexicon) dictionary
    words of raw text, into one word2vec file for train --init-embeddings.

    Give the training text and any unlabeled text of the same kind; never dev or test text.

    Examples:

    \b
      bertner embeddings data/processed/train.jsonl notes/ -o vectors.txt
      bertner train --model bilstm --crf --init-embeddings vectors.txt
    """
    settings = VectorSettings(dim=dim, epochs=epochs, min_count=min_count, workers=workers, seed=seed)
    kinds = 3 if lexicon else 2
    with task_progress("training vectors", {"epochs": kinds * epochs}) as progress:
        report = train_vectors(inputs, output, lexicon or (), settings, force=force,
                               on_epoch=lambda kind, epoch: progress.advance("epochs", 1))
    counts = ", ".join(f"{n:,} {kind}" for kind, n in report.counts.items())
    info(f"wrote {output}: {counts}, {report.dim} wide ({report.bytes / 2**20:,.1f} MiB) from {report.characters:,} "
         f"characters of text in {clock(report.seconds)}")
