"""`bertner compare`: the runs in a folder as tables (or JSON), seeds grouped, an optional plot, and with
--baseline each group's difference to one group (`bertner.significance`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info, out, plural, warn
from bertner.config import check_options
from bertner.compare import (
    Comparison,
    check_plot_path,
    compare_runs,
    format_f1,
    format_seconds,
    format_value,
    plot_comparison,
)
from bertner.runs import check_output_place
from bertner.significance import BaselineComparison, TestResult, compare_to_baseline, format_p


@app.command(cls=Command, short_help="Table of runs by dev F1, seeds grouped.")
@user_errors
def compare(
    runs_dir: Path = typer.Argument(Path("runs"), metavar="RUNS_DIR", help="Folder holding run directories (searched recursively)."),
    by: Optional[str] = typer.Option(None, "--by", metavar="COLUMNS", help="Comma-separated columns to group by (default: every setting but the seed)."),
    per_type: bool = typer.Option(False, "--per-type", help="Add per-type dev F1 columns."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png", help="Write a PNG: dev F1 against step per run, and grouped F1 with error bars (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="GROUP", help="A group as the table names it, or the start of its name (e.g. tiny+softmax): every other group's F1 difference to it, within each data set, with confidence intervals and Holm-corrected p-values from the seeds and from a bootstrap over dev documents."),
    resamples: int = typer.Option(10_000, "--resamples", metavar="N", help="Bootstrap resamples for --baseline (100 to 100,000)."),
) -> None:
    """Compare the runs in a folder: a table sorted by dev F1, seeds grouped with mean and std.

    With --baseline GROUP: is each other group really better or worse than GROUP?

    \b
      bertner compare runs/quickstart-sweep --baseline tiny+softmax
    """
    check_options(resamples=resamples)
    if plot is not None:
        check_plot_path(plot)
        check_output_place(plot, [runs_dir])  # before the runs are read
    comparison = compare_runs(runs_dir, by=[c.strip() for c in by.split(",")] if by else None)
    if plot is not None:
        written = plot_comparison(comparison, plot)
        info(f"wrote the plot to {written}")
    if baseline is None:
        render_comparison(comparison, per_type=per_type, as_json=as_json)
        return
    result = compare_to_baseline(comparison, baseline, resamples)
    render_baseline_comparison(comparison, result, per_type=per_type, as_json=as_json)


def render_comparison(comparison: Comparison, per_type: bool = False, as_json: bool = False) -> None:
    """The runs table, then the groups table (when some runs were grouped or --by was given); or JSON."""
    for skipped in comparison.incomplete:
        warn(f"skipped {skipped.name}: {skipped.reason}")
    if as_json:
        out.print(json.dumps(comparison.to_dict(), ensure_ascii=False, indent=2), markup=False, highlight=False,
                  soft_wrap=True)
        return
    labels = comparison.labels if per_type else []

    table = Table(title=f"runs in {comparison.runs_dir}, by data set, best dev F1 first", title_justify="left")
    table.add_column("data", overflow="fold")
    table.add_column("run", overflow="fold")
    for column in ("variant", "encoder", "crf lr", "seed", "epochs", "dev F1", "best step", "train time", "tokens/s"):
        table.add_column(column, justify="left" if column in ("variant", "encoder") else "right")
    for label in labels:
        table.add_column(label, justify="right")
    for run in comparison.runs:
        s = run.settings
        crf_mult = format_value("crf_lr_mult", s.get("crf_lr_mult")) if s.get("crf") else "-"
        tps = run.tokens_per_second
        table.add_row(
            run.data, run.name, run.variant, str(s.get("encoder", s.get("model", "-"))), crf_mult, format_value("seed", s.get("seed")),
            format_value("epochs", run.epochs_done if run.epochs_done is not None else s.get("epochs")),
            format_f1(run.best_f1) + (" pruned" if run.pruned else ""), format_value("step", run.best_step),
            format_seconds(run.train_seconds), "-" if tps is None else f"{tps:,.0f}",
            *[format_f1(run.per_type_f1.get(label)) for label in labels],
        )
    out.print(table)
    pruned = sum(run.pruned for run in comparison.runs)
    if pruned:
        out.print(f"{plural(pruned, 'run')} pruned (stopped early by a search's --prune): in no group, mean or --baseline "
                  "test", markup=False, highlight=False, soft_wrap=True)

    grouped = any(g.count > 1 for g in comparison.groups)
    if not (grouped or not comparison.by_default):
        return
    table = Table(title=f"grouped by {', '.join(comparison.by)}", title_justify="left")
    table.add_column("data", overflow="fold")
    table.add_column("group", overflow="fold")
    for column in ("runs", "mean F1", "std", "min", "max"):
        table.add_column(column, justify="right")
    for label in labels:
        table.add_column(label, justify="right")
    for g in comparison.groups:
        table.add_row(
            g.data, g.name, str(g.count) + (f" (+{len(g.pruned)} pruned)" if g.pruned else ""), format_f1(g.mean_f1),
            format_f1(g.std_f1), format_f1(g.min_f1), format_f1(g.max_f1), *[format_f1(g.per_type_mean_f1.get(label)) for label in labels],
        )
    out.print(table)


def render_baseline_comparison(comparison: Comparison, result: BaselineComparison, per_type: bool = False,
                               as_json: bool = False) -> None:
    """The usual compare tables, then the differences to the baseline; with as_json one object holding both."""
    for row in result.differences:
        if row.not_comparable:  # on stderr too: a verdict missing from a script's JSON must not go unseen
            warn(f"{row.group} vs {row.baseline}: {row.not_comparable}")
    if as_json:
        for skipped in comparison.incomplete:
            warn(f"skipped {skipped.name}: {skipped.reason}")
        data = {**comparison.to_dict(), "significance": result.to_dict()}
        out.print(json.dumps(data, ensure_ascii=False, indent=2), markup=False, highlight=False,
                                soft_wrap=True)
        return
    render_comparison(comparison, per_type=per_type)
    level = f"{100 * result.confidence:g}%"
    several = len(comparison.data_sets) > 1
    within = ", within each data set" if several else ""
    table = Table(title=f"dev F1 against {result.baseline}{within}, in points ({level} intervals, Holm-corrected p)",
                  title_justify="left")
    table.add_column("data", overflow="fold")
    table.add_column("group", overflow="fold")
    table.add_column("runs", justify="right")
    for view in ("documents", "seeds"):
        for column in (f"{view}: diff", level, "p"):
            table.add_column(column, justify="right")
    table.add_column("verdict")
    for row in result.differences:
        table.add_row(row.data, row.group, str(row.runs), *_test_cells(row.documents), *_test_cells(row.seeds), row.verdict())
    out.print(table)
    lines = [f"{row.data}: {row.sentence()}" if several else row.sentence() for row in result.differences]
    lines += [f"{data}: no group {result.baseline!r} to test against, so its groups are not tested"
              for data in result.without_baseline]
    if result.without_predictions:
        lines.append(f"no dev_predictions.jsonl in {len(result.without_predictions)} run(s) (trained before bertner "
                     f"kept them), e.g. {result.without_predictions[0]}: no document bootstrap for them")
    lines.append(f"documents: paired bootstrap over dev documents, {result.resamples:,} resamples, pooled over seed "
                 "pairs; seeds: t test over the runs' best dev F1 (paired by seed when the seeds match, else Welch)")
    for line in lines:
        out.print(line, markup=False, highlight=False, soft_wrap=True)


def _test_cells(test: TestResult | None) -> list[str]:
    """Difference, interval and (Holm-corrected) p of one test, in points; dashes when there is none."""
    if test is None:
        return ["-", "-", "-"]
    p = test.p_holm if test.p_holm is not None else test.p_value
    return [f"{100 * test.difference:+.1f}", f"[{100 * test.low:.1f}, {100 * test.high:.1f}]",
            format_p(p).removeprefix("p = ").removeprefix("p ")]
