"""How `bertner compare --baseline` shows a BaselineComparison: a table, a sentence per group, or JSON."""

from __future__ import annotations

import json

from bertner.compare import Comparison, print_comparison
from bertner.significance import BaselineComparison, TestResult, format_p


def _cells(test: TestResult | None) -> list[str]:
    if test is None:
        return ["-", "-", "-"]
    p = test.p_holm if test.p_holm is not None else test.p_value
    return [f"{100 * test.difference:+.1f}", f"[{100 * test.low:.1f}, {100 * test.high:.1f}]",
            format_p(p).removeprefix("p = ").removeprefix("p ")]


def print_baseline_comparison(comparison: Comparison, result: BaselineComparison, as_json: bool = False) -> None:
    """The usual compare tables, then the differences to the baseline; with as_json one object holding both."""
    from rich.table import Table

    from bertner.console import out, warn

    if as_json:
        for skipped in comparison.incomplete:
            warn(f"skipped {skipped.name}: {skipped.reason}")
        data = {**comparison.to_dict(), "significance": result.to_dict()}
        out.print(json.dumps(data, ensure_ascii=False, indent=2), markup=False, highlight=False, soft_wrap=True)
        return
    print_comparison(comparison)
    level = f"{100 * result.confidence:g}%"
    table = Table(title=f"dev F1 against {result.baseline}, in points ({level} intervals, Holm-corrected p)",
                  title_justify="left")
    table.add_column("group", overflow="fold")
    table.add_column("runs", justify="right")
    for view in ("documents", "seeds"):
        for column in (f"{view}: diff", level, "p"):
            table.add_column(column, justify="right")
    table.add_column("verdict")
    for row in result.differences:
        table.add_row(row.group, str(row.runs), *_cells(row.documents), *_cells(row.seeds), row.verdict())
    out.print(table)
    for row in result.differences:
        out.print(row.sentence(), markup=False, highlight=False, soft_wrap=True)
    if result.without_predictions:
        out.print(f"no dev_predictions.jsonl in {len(result.without_predictions)} run(s) (trained before bertner "
                  f"kept them), e.g. {result.without_predictions[0]}: no document bootstrap for them",
                  markup=False, highlight=False, soft_wrap=True)
    out.print(f"documents: paired bootstrap over dev documents, {result.resamples:,} resamples, pooled over seed "
              "pairs; seeds: t test over the runs' best dev F1 (paired by seed when the seeds match, else Welch)",
              markup=False, highlight=False, soft_wrap=True)
