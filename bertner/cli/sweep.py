"""`bertner sweep`: every combination of a grid trained one after another (or a search's trials), then compared."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import out, plural
from bertner.cli._progress import TrainProgress
from bertner.cli.compare import render_comparison
from bertner.cli.train import render_plan as render_train_plan
from bertner.errors import BertnerError
from bertner.runs import RunDir
from bertner.sweep import DONE, RESTART, TODO, Sweep, run_sweep, search_progress


@app.command(cls=Command, short_help="Train every combination of a grid, then compare.")
@user_errors
def sweep(
    config_file: Path = typer.Argument(..., metavar="GRID.yaml", help="YAML: base settings plus a grid of values to try (see examples/quickstart.yaml) or a search of ranges (examples/quickstart-search.yaml)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR", help="Folder for the runs (default: the file's `output`, else runs/<file name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs without training."),
    trials: Optional[int] = typer.Option(None, "--trials", metavar="N", help="With a `search:` section: runs to sample per grid combination (Optuna's TPE; those already in the folder's study.db count)."),
    prune: bool = typer.Option(False, "--prune", help="With --trials: stop a run whose dev F1 at an evaluation is below the median of the finished runs' at that step."),
) -> None:
    """Train every combination of a grid one after another, skip finished runs, then compare.

    With a `search:` section of ranges, --trials N samples N runs per grid combination instead.
    """
    result = run_sweep(config_file, output=output, dry_run=dry_run, on_start=render_train_plan,
                       on_compared=render_comparison, view=TrainProgress(), trials=trials, prune=prune)
    if dry_run:
        render_plan(result.sweep, trials)


def render_plan(sweep: Sweep, trials: int | None = None) -> None:
    """--dry-run: each run and its status (to train, restart, done with its dev F1), then the counts; with a
    search, each searched combination and how many of its trials are done."""
    statuses = [r.status() for r in sweep.runs]
    note = ""
    if sweep.collapsed:
        note = f" ({plural(sweep.collapsed, 'combination')} collapsed: {'; '.join(sweep.collapse_reasons)})"
    if sweep.searches:
        searched = ", ".join(sweep.space or ())
        out.print(f"search {sweep.source}: {plural(trials or 0, 'trial')} of {searched} for each of "
                  f"{plural(len(sweep.searches), 'combination')} (sampler_seed {sweep.sampler_seed}) in {sweep.output}",
                  markup=False, highlight=False, soft_wrap=True)
        progress = search_progress(sweep)
        width = max(len(combination.name) for combination, _ in progress)
        for combination, done in progress:
            out.print(f"  {done:>4} of {trials} done  {combination.name:<{width}}  ({', '.join(combination.space)})",
                      markup=False, highlight=False, soft_wrap=True)
        if not sweep.runs:
            return
    out.print(f"sweep {sweep.source}: {plural(len(sweep.runs), 'run')} in {sweep.output}{note}", markup=False, highlight=False,
              soft_wrap=True)
    width = max(len(r.name) for r in sweep.runs)
    for run, status in zip(sweep.runs, statuses):
        detail = ""
        if status == DONE:
            try:
                f1 = RunDir(run.run_dir).read_summary().best_f1
                detail = f"dev F1 {f1:.4f}" if f1 is not None else ""
            except BertnerError:
                pass
        elif status == RESTART:
            detail = "unfinished: will be trained again from scratch"
        out.print(f"  {status:<9} {run.name:<{width}}  {detail}".rstrip(), markup=False, highlight=False, soft_wrap=True)
    counts = {s: statuses.count(s) for s in (TODO, RESTART, DONE)}
    out.print(f"{counts[TODO] + counts[RESTART]} to train ({counts[RESTART]} restarted), {counts[DONE]} done",
              markup=False, highlight=False)
