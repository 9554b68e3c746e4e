"""The `bertner` command line: parse options, call the library, print. Nothing else lives here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer

from bertner.console import err
from bertner.errors import BertnerError, NotBuiltYet

app = typer.Typer(
    help="Fine-tune BERT-family encoders for named-entity recognition.\n\n"
    "Typical flow: bertner preprocess RAW_DIR -> bertner train -> bertner evaluate / predict / compare.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_DATA = Path("data/processed")


def user_errors(fn: Callable) -> Callable:
    """Turn our exceptions into one red line on stderr and a non-zero exit, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BertnerError as e:
            err.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code)
        except KeyboardInterrupt:
            err.print("[red]interrupted[/red]")
            raise typer.Exit(130)

    return wrapper


@app.command()
@user_errors
def preprocess(
    raw: Path = typer.Argument(..., help="A brat folder (.txt + .ann), a CoNLL file or folder, or our JSONL."),
    output: Path = typer.Option(DEFAULT_DATA, "--output", "-o", help="Where to write train/dev/test.jsonl, labels.json, stats.json."),
    input_format: str = typer.Option("auto", "--format", help="auto, brat, conll or jsonl."),
    scheme: str = typer.Option("BIO", "--scheme", help="Tag scheme of CoNLL input: BIO, IOB1 or BIOES."),
    discontinuous: str = typer.Option("merge", "--discontinuous", help="How a discontinuous brat entity becomes a span: merge (first start to last end), first, split, drop. "
                                      "Then of overlapping spans the longer is kept, then the earlier; exact duplicates are dropped."),
    max_chars: int = typer.Option(256, "--max-chars", help="Longest window in characters; windows end at sentence ends, never inside an entity."),
    dev_ratio: float = typer.Option(0.1, "--dev-ratio", help="Share of documents for dev."),
    test_ratio: float = typer.Option(0.0, "--test-ratio", help="Share of documents for test (0 writes no test.jsonl)."),
    seed: int = typer.Option(13, "--seed", help="Seed of the document split."),
    group_by_prefix: Optional[bool] = typer.Option(None, "--group-by-prefix/--no-group-by-prefix", help="Keep documents 123_4 and 123_7 in one split (default: on for brat, off otherwise)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on anything that would only be a warning (unpaired files, text mismatches)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an output folder that already holds data."),
    repair_tags: bool = typer.Option(False, "--repair-tags", help="CoNLL: read a stray I-/E- tag (no entity to continue) as the start of an entity, and count them."),
) -> None:
    """Read an annotated corpus and write clean, model-independent training windows."""
    from bertner.data.preprocess import PreprocessOptions, preprocess as run_preprocess
    from bertner.report import print_preprocess_report

    options = PreprocessOptions(
        input=raw, output=output, input_format=input_format, scheme=scheme,
        discontinuous=discontinuous, max_chars=max_chars, dev_ratio=dev_ratio,
        test_ratio=test_ratio, seed=seed, group_by_prefix=group_by_prefix,
        strict=strict, force=force, repair_tags=repair_tags,
    )
    result = run_preprocess(options)
    print_preprocess_report(result)


def _not_built(name: str) -> None:
    raise NotBuiltYet(f"`bertner {name}` is not built yet in this version")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def train() -> None:
    """Fine-tune an encoder (+ optional GRU) with a softmax or CRF head."""
    _not_built("train")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def evaluate() -> None:
    """Score a trained run on a dataset."""
    _not_built("evaluate")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def predict() -> None:
    """Tag raw text with a trained run."""
    _not_built("predict")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def compare() -> None:
    """Compare the runs in a folder."""
    _not_built("compare")


if __name__ == "__main__":
    app()
