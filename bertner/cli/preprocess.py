"""`bertner preprocess`: an annotated corpus in, training windows out."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bertner.cli._app import DEFAULT_DATA, Command, app, user_errors
from bertner.cli._console import info, out, warn
from bertner.data.preprocess import PreprocessOptions, PreprocessResult
from bertner.data.preprocess import preprocess as run_preprocess


@app.command(cls=Command, short_help="Corpus (brat, CoNLL, JSONL) -> training windows.")
@user_errors
def preprocess(
    raw: Path = typer.Argument(..., metavar="RAW_DIR", help="A brat folder (.txt + .ann), a CoNLL file or folder, or our JSONL."),
    output: Path = typer.Option(DEFAULT_DATA, "--output", "-o", metavar="DIR", help="Where to write train/dev/test.jsonl, labels.json, stats.json."),
    input_format: str = typer.Option("auto", "--format", metavar="FORMAT", help="auto, brat, conll or jsonl."),
    scheme: str = typer.Option("BIO", "--scheme", metavar="SCHEME", help="Tag scheme of CoNLL input: BIO, IOB1 or BIOES."),
    discontinuous: str = typer.Option("merge", "--discontinuous", metavar="POLICY", help="How a discontinuous brat entity becomes a span: merge (first start to last end), first, split, drop. "
                                      "Then of overlapping spans the longer is kept, then the earlier; exact duplicates are dropped."),
    max_chars: int = typer.Option(256, "--max-chars", metavar="N", help="Longest window in characters; windows end at sentence ends, never inside an entity."),
    dev_ratio: float = typer.Option(0.1, "--dev-ratio", metavar="SHARE", help="Share of documents for dev."),
    test_ratio: float = typer.Option(0.0, "--test-ratio", metavar="SHARE", help="Share of documents for test (0 writes no test.jsonl)."),
    seed: int = typer.Option(13, "--seed", metavar="N", help="Seed of the document split (a split where dev and test hold no label train lacks is preferred)."),
    group_by_prefix: Optional[bool] = typer.Option(None, "--group-by-prefix/--no-group-by-prefix", help="Keep documents 123_4 and 123_7 in one split (default: on for brat, off otherwise)."),
    strict: bool = typer.Option(False, "--strict", help="Fail on anything that would only be a warning (unpaired files, text mismatches)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an output folder that already holds data."),
    repair_tags: bool = typer.Option(False, "--repair-tags", help="CoNLL: read a stray I-/E- tag (no entity to continue) as the start of an entity, and count them."),
) -> None:
    """Read an annotated corpus and write clean, model-independent training windows."""
    options = PreprocessOptions(
        input=raw, output=output, input_format=input_format, scheme=scheme,
        discontinuous=discontinuous, max_chars=max_chars, dev_ratio=dev_ratio,
        test_ratio=test_ratio, seed=seed, group_by_prefix=group_by_prefix,
        strict=strict, force=force, repair_tags=repair_tags,
    )
    result = run_preprocess(options)
    render_report(result)


def render_report(result: PreprocessResult) -> None:
    """Per-split table (documents, windows, characters, entities per type), then what had to change."""
    for message in result.warnings:
        warn(message)
    for note in result.notes:
        info(note)
    labels = sorted({label for s in result.splits.values() for label in s.entities})
    table = Table(title=f"preprocessed ({result.input_format})", show_lines=False)
    table.add_column("")
    for name in result.splits:
        table.add_column(name, justify="right")
    rows = [("documents", "documents"), ("windows", "windows"), ("characters", "characters")]
    for title, attr in rows:
        table.add_row(title, *(f"{getattr(s, attr):,}" for s in result.splits.values()))
    table.add_row("entities", *(f"{sum(s.entities.values()):,}" for s in result.splits.values()), end_section=True)
    for label in labels:
        table.add_row(f"  {label}", *(f"{s.entities.get(label, 0):,}" for s in result.splits.values()))
    out.print(table)
    if result.changes:
        out.print("changed:")
        for what, count in result.changes:
            out.print(f"  {count:>7,}  {what}", highlight=False)
    if not result.stats["check"]["adds_up"]:
        warn(f"entity counts do not add up: {result.stats['check']}")
    out.print(f"wrote {', '.join(sorted(p.name for p in result.output.iterdir() if not p.name.startswith('.')))} to {result.output}", highlight=False)
