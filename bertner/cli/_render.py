"""What more than one command prints the same way: tables of scores."""

from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table


def scores_table(title: str, per_type: dict[str, dict[str, Any]], totals: Iterable[tuple[str, dict[str, Any]]]) -> Table:
    """Precision, recall, F1 and support per entity type (most frequent first), then the total rows in bold."""
    table = Table(title=title, title_justify="left")
    for column in ("type", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "type" else "right")
    for label, s in sorted(per_type.items(), key=lambda kv: -kv[1]["support"]):
        table.add_row(label, f"{s['precision']:.4f}", f"{s['recall']:.4f}", f"{s['f1']:.4f}", str(s["support"]))
    for name, s in totals:
        table.add_row(f"[bold]{name}[/bold]", f"{s['precision']:.4f}", f"{s['recall']:.4f}",
                      f"[bold]{s['f1']:.4f}[/bold]", str(s["support"]))
    return table
