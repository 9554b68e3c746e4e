"""`bertner train`: settings from flags and a YAML file, one training run, its plan and its results.

The options are derived from TrainConfig's field metadata (help, choices, flag names), so a new setting
is one field in config.py.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
from collections import Counter
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich.table import Table

from bertner.cli._app import Command, app, user_errors
from bertner.cli._console import err, out, plural, warn
from bertner.cli._progress import TrainProgress, epochs
from bertner.cli._render import scores_table
from bertner.config import (
    RECIPE_FIELDS,
    RECIPES,
    TrainConfig,
    build_config,
    settings_without_effect,
    load_yaml,
    setting_kind,
)
from bertner.engine.distributed import Dist
from bertner.engine.trainer import Trainer, count_parameters
from bertner.engine.trainer import train as run_train
from bertner.errors import BertnerError
from bertner.runs import Summary, check_output_place


def _by_encoder(setting: str) -> str:
    """`default 2, bilstm 10`: a recipe setting's default (per encoder family where they differ), for --help."""
    names = {"tiny": "tiny", "bilstm": "bilstm", "small": "pretrained", "base": "BERT-base size and up"}
    values = {names.get(family, family): getattr(recipe, setting) for family, recipe in RECIPES.items()}
    common, count = Counter(values.values()).most_common(1)[0]
    if count == 1:
        return "default by encoder: " + ", ".join(f"{name} {value:g}" for name, value in values.items())
    return ", ".join([f"default {common:g}"] + [f"{name} {value:g}" for name, value in values.items() if value != common])


PYTHON_TYPES = {"bool": bool, "int": int, "float": float, "str": str, "list": List[str]}  # list: a repeatable option
DEFAULT_METAVARS = {"int": "N", "float": "X", "str": "VALUE", "list": "VALUE"}


def _help(f: dataclasses.Field) -> str:
    """The field's help with its default: the recipe's per encoder family, or the field's own."""
    text = f.metadata["help"]
    if f.name in RECIPE_FIELDS:
        return f"{text[:-1]} ({_by_encoder(f.name)})."
    if f.default is None or isinstance(f.default, bool) or f.default == 0:
        return text  # None: the help says what it means; 0: the range's note does
    return f"{text[:-1]} (default {f.default:g})." if isinstance(f.default, float) else f"{text[:-1]} (default {f.default})."


def setting_option(f: dataclasses.Field) -> inspect.Parameter:
    """A `bertner train` option from a TrainConfig field's metadata (None when not given: the file or default wins)."""
    kind, _ = setting_kind(f.name)
    limit = f.metadata["limit"]
    dashed = f.name.replace("_", "-")
    flags = f.metadata["flags"] or ((f"--{dashed}/--no-{dashed}",) if kind == "bool" else (f"--{dashed}",))
    if limit is not None and limit.choices:
        # typer turns an Enum into a choice that --help lists and click checks.
        kind_type: type = enum.Enum(f"{f.name.title().replace('_', '')}Choice", {c: c for c in limit.choices}, type=str)
    else:
        kind_type = PYTHON_TYPES[kind]
    metavar = None if kind == "bool" else f.metadata["metavar"] or DEFAULT_METAVARS[kind]
    option = typer.Option(None, *flags, metavar=metavar, help=_help(f))
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind_type])


SETTING_OPTIONS = [setting_option(f) for f in dataclasses.fields(TrainConfig) if f.metadata["cli"]]


def train(data: Optional[Path], config_file: Optional[Path], output: Optional[Path], resume: bool, force: bool,
          **settings: Any) -> None:
    """Fine-tune an encoder (+ optional GRU) with a softmax or CRF head; writes a run directory.

    Examples:

    \b
      bertner train                       # tiny model on data/processed
      bertner train --crf --gru --crf-lr-mult 100
      bertner train data/ruijin --model models/bert-base-chinese -o runs/bert
    """
    flags = {k: v.value if isinstance(v, enum.Enum) else v for k, v in settings.items()}
    flags = {k: (list(v) or None) if isinstance(v, (list, tuple)) else v for k, v in flags.items()}  # a repeatable option not given
    flags["data"] = str(data) if data is not None else None
    flags["output"] = str(output) if output is not None else None
    file_values = load_yaml(config_file) if config_file else {}
    config = build_config(file_values, flags, str(config_file) if config_file else "config file")
    if resume and not config.output:
        raise BertnerError("--resume needs --output RUN_DIR: the run to continue")
    if config_file and config.output:
        check_output_place(config.output, [config_file], may_be_run=True)  # the rest: Trainer, once it knows its inputs
    ignored = sorted(k for k, v in flags.items() if v is not None and k != "output") + (["--config"] if config_file else [])
    if resume and ignored:
        warn(f"--resume continues with the run's saved settings; ignored: {', '.join(ignored)}")
    given = {k for k, v in flags.items() if v is not None} | set(file_values)
    without_effect = settings_without_effect(config, given)
    if without_effect and not resume:
        warn(f"these settings have no effect here and are ignored: {', '.join(without_effect)}")
    summary = run_train(config, resume=resume, force=force, on_start=render_plan, view=TrainProgress())
    if Dist.from_environment().main:
        render_summary(summary)


# The command's signature: its own arguments, then one option per TrainConfig setting (typer reads it).
train.__signature__ = inspect.Signature([
    inspect.Parameter("data", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Optional[Path], default=typer.Argument(
        None, metavar="DATA", help="Folder written by `bertner preprocess` (default: data/processed).")),
    inspect.Parameter("config_file", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
        None, "--config", metavar="FILE", help="YAML file with any of these options (use underscores or dashes); flags override it.")),
    inspect.Parameter("output", inspect.Parameter.KEYWORD_ONLY, annotation=Optional[Path], default=typer.Option(
        None, "--output", "-o", metavar="RUN", help="Run directory (default: runs/<variant>-<time>).")),
    *SETTING_OPTIONS,
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--resume", help="Continue the interrupted run in --output.")),
    inspect.Parameter("force", inspect.Parameter.KEYWORD_ONLY, annotation=bool, default=typer.Option(
        False, "--force", help="Replace a run already in --output.")),
])
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
app.command(cls=Command, short_help="Fine-tune a tagger; writes a run directory.")(user_errors(train))


def render_plan(trainer: Trainer) -> None:
    """What is about to happen: variant, data, parameters and the optimiser groups' rates."""
    c = trainer.config
    err.print(
        f"[bold]{c.variant}[/bold] on {trainer.bundle.name} ({trainer.aligner.mode} alignment), "
        f"{count_parameters(trainer.model):,} parameters, device {trainer.device} ({trainer.precision})",
        highlight=False,
    )
    steps = f"{c.batch_size}x{c.grad_accum}"
    plan = (f"{c.time_budget:g} minutes of training ({trainer.steps_per_epoch:,} steps of {steps} an epoch)"
            if trainer.budget else f"{trainer.total_steps:,} steps of {steps}")
    err.print(
        f"train {len(trainer.data.train):,} windows -> {len(trainer.train_set.examples):,} inputs, "
        f"dev {len(trainer.data.dev):,} windows; {len(trainer.data.labels)} labels; {plan}; run directory {trainer.run_dir}",
        highlight=False,
    )
    table = Table(title="optimiser groups", title_justify="left")
    for column in ("group", "learning rate", "weight decay", "parameters"):
        table.add_column(column, justify="right" if column != "group" else "left")
    for g in trainer.groups:
        table.add_row(g.name, f"{g.lr:.2e}", f"{g.weight_decay:g}", f"{g.parameters:,}")
    err.print(table)


def render_summary(summary: Summary) -> None:
    """The end of a run: the best dev scores per type, and where everything was written."""
    per_type = summary.best_per_type or {}
    if per_type:
        micro = {"precision": summary.best_precision, "recall": summary.best_recall, "f1": summary.best_f1,
                 "support": sum(s["support"] for s in per_type.values())}
        out.print(scores_table(f"best dev scores (step {summary.best_step})", per_type, [("micro", micro)]))
    f1 = "n/a (no dev set)" if summary.best_f1 is None else f"{summary.best_f1:.4f}"
    out.print(
        f"{summary.variant}: best dev F1 {f1} at step {summary.best_step}; "
        f"{summary.steps:,} steps ({epochs(summary.epochs_done or 0)}), "
        f"{summary.train_seconds:.0f} s, {summary.tokens_per_second:,.0f} tokens/s; "
        f"run directory {summary.run_dir}",
        highlight=False,
    )
    if summary.best_f1 == 0:
        out.print(zero_f1_hint(summary), highlight=False)


def zero_f1_hint(summary: Summary) -> str:
    """Why a run scored 0 on every type, in one line: a newcomer's short run looks broken otherwise."""
    steps = plural(summary.steps or 0, "step")
    epochs = f" (--epochs {summary.epochs} now)" if summary.epochs else ""
    return (f"[yellow]why 0:[/yellow] this data needs more training than {steps} to learn any entity type; "
            f"train longer{epochs} or start from a pretrained encoder (--model FOLDER)")
