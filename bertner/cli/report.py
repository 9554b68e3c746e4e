"""`bertner report`: one self-contained HTML page about a folder of runs (`bertner.report_html`)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import info, warn
from bertner.compare import compare_runs
from bertner.config import check_options
from bertner.errors import OutputExistsError
from bertner.fileio import check_writable
from bertner.report_html import write_report
from bertner.runs import check_output_place


@app.command(cls=Command, short_help="One HTML page about a folder of runs.")
@user_errors
def report(
    runs_dir: Path = typer.Argument(Path("runs"), metavar="RUNS_DIR", help="Folder holding run directories (searched recursively)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", metavar="FILE.html", help="The page to write."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="GROUP", help="The group the others of its data set are tested against, or the start of its name (default, in each data set: the softmax group without GRU if there is one, else the weakest)."),
    documents: int = typer.Option(4, "--documents", metavar="N", help="Dev documents shown with gold and predicted entities side by side (0 to 1,000)."),
    resamples: int = typer.Option(10_000, "--resamples", metavar="N", help="Bootstrap resamples (100 to 100,000)."),
    force: bool = typer.Option(False, "--force", help="Replace FILE.html if it exists."),
) -> None:
    """Write one self-contained HTML page: comparison with intervals, learning curves, per-type F1,
    error kinds and dev documents with gold and predicted entities highlighted. Needs matplotlib.

    \b
      bertner report runs/quickstart-sweep -o report.html
    """
    check_options(documents=documents, resamples=resamples)
    check_writable(output)  # a folder, or a place that cannot be written: refused before the runs are read
    check_output_place(output, [runs_dir])
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists; pass --force to replace it")
    comparison = compare_runs(runs_dir)
    for skipped in comparison.incomplete:
        warn(f"skipped {skipped.name}: {skipped.reason}")
    written = write_report(comparison, output, baseline, documents, resamples)
    info(f"wrote {written}: open it in a browser")
