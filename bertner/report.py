"""Printing command results with rich; results to stdout, warnings to stderr."""

from __future__ import annotations

from rich.table import Table

from bertner.console import info, out, warn


def print_preprocess_report(result) -> None:
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


def _scores_table(title: str, scores: dict) -> "Table":
    table = Table(title=title, title_justify="left")
    for column in ("type", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for label, s in sorted(scores["per_type"].items(), key=lambda kv: -kv[1]["support"]):
        table.add_row(label, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"]))
    for name in ("micro", "macro"):
        s = scores[name]
        table.add_row(f"[bold]{name}[/bold]", f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"[bold]{s['f1']:.4f}[/bold]", str(s["support"]))
    return table


def print_evaluation(result, as_json: bool = False) -> None:
    """`bertner evaluate`: tables by default, one JSON object with --json."""
    import json

    if as_json:
        out.print_json(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    out.print(_scores_table(f"entity-level strict scores over characters: {result.data}", result.scores))
    if result.document_scores is not None:
        out.print(_scores_table("document-level exact spans (document, start, end, type)", result.document_scores))
    if any(kind["count"] for kind in result.errors):
        out.print("most frequent errors; in the examples [...] is the gold entity, {...} the predicted one:",
                  markup=False, highlight=False)
    for kind in result.errors:
        if not kind["count"]:
            continue
        out.print(f"[bold]{kind['kind']}[/bold]: {kind['count']:,}", highlight=False)
        for example in kind["examples"]:
            out.print(f"    {example}", highlight=False, markup=False)
