"""`bertner train`: settings from flags and a YAML file, one training run, its plan and its results."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from bertner.cli._app import Command, app, user_errors
from bertner.cli._render import scores_table
from bertner.config import RECIPES, build_config, load_yaml
from bertner.console import err, out, plural, warn
from bertner.engine.distributed import Dist
from bertner.engine.trainer import Trainer, count_parameters, train as run_train
from bertner.errors import BertnerError
from bertner.runs import Summary


def _by_encoder(setting: str) -> str:
    """`default 2, bilstm 10`: a recipe setting's default (per encoder family where they differ), for --help."""


    names = {"tiny": "tiny", "bilstm": "bilstm", "small": "pretrained", "base": "BERT-base size and up"}
    values = {names.get(family, family): getattr(recipe, setting) for family, recipe in RECIPES.items()}
    common, count = Counter(values.values()).most_common(1)[0]
    if count == 1:
        return "default by encoder: " + ", ".join(f"{name} {value:g}" for name, value in values.items())
    return ", ".join([f"default {common:g}"] + [f"{name} {value:g}" for name, value in values.items() if value != common])


@app.command(cls=Command, short_help="Fine-tune a tagger; writes a run directory.")
@user_errors
def train(
    data: Optional[Path] = typer.Argument(None, metavar="DATA", help="Folder written by `bertner preprocess` (default: data/processed)."),
    config_file: Optional[Path] = typer.Option(None, "--config", metavar="FILE", help="YAML file with any of these options (use underscores or dashes); flags override it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL", help="`tiny` (small BERT trained from scratch, no download), `bilstm` (character + bigram BiLSTM, no transformer: the pre-BERT baseline and the best CPU model), a local Hugging Face model folder, or a hub name such as bert-base-chinese (needs the network)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="RUN", help="Run directory (default: runs/<variant>-<time>)."),
    crf: Optional[bool] = typer.Option(None, "--crf/--softmax", help="CRF head instead of a softmax classifier."),
    gru: Optional[bool] = typer.Option(None, "--gru/--no-gru", help="A GRU layer between encoder and head."),
    gru_hidden: Optional[int] = typer.Option(None, "--gru-hidden", metavar="N", help="GRU hidden size (default: the encoder's)."),
    gru_layers: Optional[int] = typer.Option(None, "--gru-layers", metavar="N", help="GRU layers (default 1)."),
    gru_bidirectional: Optional[bool] = typer.Option(None, "--gru-bidirectional/--gru-unidirectional", help="Run the GRU both ways (default: one direction, as in the study)."),
    crf_lr_mult: Optional[float] = typer.Option(None, "--crf-lr-mult", metavar="X", help=f"CRF transitions learn at this multiple of --lr ({_by_encoder('crf_lr_mult')})."),
    head_lr_mult: Optional[float] = typer.Option(None, "--head-lr-mult", metavar="X", help="GRU and classifier learn at this multiple of --lr (default 1)."),
    lr: Optional[float] = typer.Option(None, "--lr", metavar="RATE", help=f"Base learning rate of the encoder ({_by_encoder('lr')})."),
    epochs: Optional[int] = typer.Option(None, "--epochs", metavar="N", help=f"Passes over the training windows ({_by_encoder('epochs')}; --time-budget replaces it)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", metavar="N", help="Stop after this many optimiser steps (0: no limit)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", metavar="N", help=f"Inputs per batch ({_by_encoder('batch_size')})."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", metavar="N", help="Batches per optimiser step (default 1)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", metavar="N", help="Tokens per model input incl. [CLS]/[SEP] (default 512); longer windows are cut with overlap."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", metavar="SHARE", help="Share of steps for the linear warm-up (default 0.1)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", metavar="W", help="AdamW weight decay (default 0.01; never on biases, LayerNorm or CRF)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", metavar="P", help="Dropout before the classifier (default 0.1)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", metavar="N", help="Also evaluate on the whole dev set every N steps (default: each epoch end only)."),
    patience: Optional[int] = typer.Option(None, "--patience", metavar="N", help="Stop after N evaluations without a better dev F1 (default 0: never)."),
    seed: Optional[int] = typer.Option(None, "--seed", metavar="N", help="Random seed; CPU runs with the same seed are repeatable (default 13)."),
    random_init: Optional[bool] = typer.Option(None, "--random-init/--pretrained", help="Use --model's architecture with random weights: the baseline that shows what pretraining buys."),
    trust_remote_code: Optional[bool] = typer.Option(None, "--trust-remote-code", help="Let the model folder run its own Python code. Only for folders you trust."),
    constrained_decoding: Optional[bool] = typer.Option(None, "--constrained-decoding/--free-decoding", help="Softmax head: decode the most probable well-formed BIO sequence instead of each token's argmax (default: free, as in the study)."),
    alignment: Optional[str] = typer.Option(None, "--alignment", metavar="MODE", help="char (one character, one token), subword (tokenizer offsets) or auto."),
    whitespace_tokens: Optional[bool] = typer.Option(None, "--whitespace-tokens/--skip-whitespace", help="Char alignment: spaces and line breaks get a token of their own, so the model sees where lines and lists break (default), or are skipped as Hugging Face tokenizers do (fewer tokens; the README compares the two)."),
    device: Optional[str] = typer.Option(None, "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", metavar="PRECISION", help="auto (bf16 or fp16 on GPU; on CPU bf16 where the CPU computes it natively, else fp32), fp32, bf16, fp16."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (GPU; pays off on long runs)."),
    tiny_layers: Optional[int] = typer.Option(None, "--tiny-layers", metavar="N", help="Layers of --model tiny (default 2)."),
    tiny_hidden: Optional[int] = typer.Option(None, "--tiny-hidden", metavar="N", help="Hidden size of --model tiny (default 128)."),
    tiny_heads: Optional[int] = typer.Option(None, "--tiny-heads", metavar="N", help="Attention heads of --model tiny (default 2)."),
    rnn_cell: Optional[str] = typer.Option(None, "--rnn-cell", metavar="CELL", help="--model bilstm: lstm (default) or gru."),
    rnn_hidden: Optional[int] = typer.Option(None, "--rnn-hidden", metavar="N", help="--model bilstm: hidden size per direction (default 128)."),
    rnn_layers: Optional[int] = typer.Option(None, "--rnn-layers", metavar="N", help="--model bilstm: stacked bidirectional layers (default 1)."),
    rnn_dropout: Optional[float] = typer.Option(None, "--rnn-dropout", metavar="P", help="--model bilstm: dropout on the embeddings and between layers (default 0.2)."),
    char_dim: Optional[int] = typer.Option(None, "--char-dim", metavar="N", help="--model bilstm: character vector size (default 128, or that of --init-embeddings)."),
    bigram_dim: Optional[int] = typer.Option(None, "--bigram-dim", metavar="N", help="--model bilstm: bigram vector size (default 0: characters only)."),
    init_embeddings: Optional[str] = typer.Option(None, "--init-embeddings", metavar="MODEL", help="--model bilstm: start the character vectors from this pretrained model folder's input embeddings (e.g. ALBERT-tiny's)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", metavar="MINUTES", help="Train for this many minutes of wall-clock time (evaluations included), with the learning-rate schedule planned to end there; keeps the best checkpoint (default 0: no limit, --epochs decides)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", metavar="N", help="Steps between loss logs (default 20)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", metavar="N", help="Also save a resumable checkpoint every N steps."),
    num_threads: Optional[int] = typer.Option(None, "--num-threads", metavar="N", help="CPU threads for torch (0: torch's default)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --output."),
    force: bool = typer.Option(False, "--force", help="Replace a run already in --output."),
) -> None:
    """Fine-tune an encoder (+ optional GRU) with a softmax or CRF head; writes a run directory.

    Examples:

    \b
      bertner train                       # tiny model on data/processed
      bertner train --crf --gru --crf-lr-mult 100
      bertner train data/ruijin --model models/bert-base-chinese -o runs/bert
    """
    flags = {k: v for k, v in locals().items() if k not in ("config_file", "resume", "force", "data", "output")}

    flags["data"] = str(data) if data is not None else None
    flags["output"] = str(output) if output is not None else None
    file_values = load_yaml(config_file) if config_file else {}
    config = build_config(file_values, flags)
    if resume and not config.output:
        raise BertnerError("--resume needs --output RUN_DIR: the run to continue")
    ignored = sorted(k for k, v in flags.items() if v is not None and k != "output") + (["--config"] if config_file else [])
    if resume and ignored:
        warn(f"--resume continues with the run's saved settings; ignored: {', '.join(ignored)}")
    summary = run_train(config, resume=resume, force=force, on_start=render_plan)
    if Dist.from_environment().main:
        render_summary(summary)


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
