"""The `bertner` command line: parse options, call the library, print. Nothing else lives here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape

from bertner.console import err, warn
from bertner.errors import BertnerError

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
            # One line, always: a message that quotes a library's multi-line text is joined up.
            message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())
            err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
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


@app.command()
@user_errors
def train(
    data: Optional[Path] = typer.Argument(None, help="Folder written by `bertner preprocess` (default: data/processed)."),
    config_file: Optional[Path] = typer.Option(None, "--config", help="YAML file with any of these options (use underscores or dashes); flags override it."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="`tiny` (small BERT trained from scratch, no download), `bilstm` (character + bigram BiLSTM, no transformer: the pre-BERT baseline and the best CPU model), a local Hugging Face model folder, or a hub name such as bert-base-chinese (needs the network)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run directory (default: runs/<variant>-<time>)."),
    crf: Optional[bool] = typer.Option(None, "--crf/--softmax", help="CRF head instead of a softmax classifier."),
    gru: Optional[bool] = typer.Option(None, "--gru/--no-gru", help="A GRU layer between encoder and head."),
    gru_hidden: Optional[int] = typer.Option(None, "--gru-hidden", help="GRU hidden size (default: the encoder's)."),
    gru_layers: Optional[int] = typer.Option(None, "--gru-layers", help="GRU layers (default 1)."),
    gru_bidirectional: Optional[bool] = typer.Option(None, "--gru-bidirectional/--gru-unidirectional", help="Run the GRU both ways (default: one direction, as in the study)."),
    crf_lr_mult: Optional[float] = typer.Option(None, "--crf-lr-mult", help="CRF transitions learn at this multiple of --lr (the study tried 1 to 1000; default: the encoder family's recipe)."),
    head_lr_mult: Optional[float] = typer.Option(None, "--head-lr-mult", help="GRU and classifier learn at this multiple of --lr."),
    lr: Optional[float] = typer.Option(None, "--lr", help="Base learning rate of the encoder (default: the encoder family's recipe, see the README's Recipes)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the training windows (default: the encoder family's recipe; --time-budget replaces it)."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimiser steps (0: no limit)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Inputs per batch (default: the encoder family's recipe)."),
    grad_accum: Optional[int] = typer.Option(None, "--grad-accum", help="Batches per optimiser step (default 1)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="Tokens per model input incl. [CLS]/[SEP] (default 512); longer windows are cut with overlap."),
    warmup_ratio: Optional[float] = typer.Option(None, "--warmup-ratio", help="Share of steps for the linear warm-up (default 0.1)."),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay", help="AdamW weight decay (default 0.01; never on biases, LayerNorm or CRF)."),
    dropout: Optional[float] = typer.Option(None, "--dropout", help="Dropout before the classifier (default 0.1)."),
    eval_every: Optional[int] = typer.Option(None, "--eval-every", help="Also evaluate on the whole dev set every N steps (default: each epoch end only)."),
    patience: Optional[int] = typer.Option(None, "--patience", help="Stop after N evaluations without a better dev F1 (default 0: never)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed; CPU runs with the same seed are repeatable (default 13)."),
    random_init: Optional[bool] = typer.Option(None, "--random-init/--pretrained", help="Use --model's architecture with random weights: the baseline that shows what pretraining buys."),
    trust_remote_code: Optional[bool] = typer.Option(None, "--trust-remote-code", help="Let the model folder run its own Python code. Only for folders you trust."),
    constrained_decoding: Optional[bool] = typer.Option(None, "--constrained-decoding/--free-decoding", help="Softmax head: decode the most probable well-formed BIO sequence instead of each token's argmax (default: free, as in the study)."),
    alignment: Optional[str] = typer.Option(None, "--alignment", help="char (one character, one token), subword (tokenizer offsets) or auto."),
    whitespace_tokens: Optional[bool] = typer.Option(None, "--whitespace-tokens/--skip-whitespace", help="Char alignment: spaces and line breaks get a token of their own, so the model sees where lines and lists break (default), or are skipped as Hugging Face tokenizers do (14% fewer tokens on Ruijin; dev F1 0.04 lower there after one epoch, 0.003 after two)."),
    device: Optional[str] = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    precision: Optional[str] = typer.Option(None, "--precision", help="auto (bf16 or fp16 on GPU; on CPU bf16 where the CPU computes it natively, else fp32), fp32, bf16, fp16."),
    compile: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile the model (GPU; pays off on long runs)."),
    tiny_layers: Optional[int] = typer.Option(None, "--tiny-layers", help="Layers of --model tiny (default 2)."),
    tiny_hidden: Optional[int] = typer.Option(None, "--tiny-hidden", help="Hidden size of --model tiny (default 128)."),
    tiny_heads: Optional[int] = typer.Option(None, "--tiny-heads", help="Attention heads of --model tiny (default 2)."),
    rnn_cell: Optional[str] = typer.Option(None, "--rnn-cell", help="--model bilstm: lstm (default) or gru."),
    rnn_hidden: Optional[int] = typer.Option(None, "--rnn-hidden", help="--model bilstm: hidden size per direction (default 256)."),
    rnn_layers: Optional[int] = typer.Option(None, "--rnn-layers", help="--model bilstm: stacked bidirectional layers (default 1)."),
    rnn_dropout: Optional[float] = typer.Option(None, "--rnn-dropout", help="--model bilstm: dropout on the embeddings and between layers (default 0.2)."),
    char_dim: Optional[int] = typer.Option(None, "--char-dim", help="--model bilstm: character vector size (default 128, or that of --init-embeddings)."),
    bigram_dim: Optional[int] = typer.Option(None, "--bigram-dim", help="--model bilstm: bigram vector size (default 64; 0: characters only)."),
    init_embeddings: Optional[str] = typer.Option(None, "--init-embeddings", help="--model bilstm: start the character vectors from this pretrained model folder's input embeddings (e.g. ALBERT-tiny's)."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="Train for this many minutes of wall-clock time (evaluations included), with the learning-rate schedule planned to end there; keeps the best checkpoint (default 0: no limit, --epochs decides)."),
    log_every: Optional[int] = typer.Option(None, "--log-every", help="Steps between loss logs (default 20)."),
    save_every: Optional[int] = typer.Option(None, "--save-every", help="Also save a resumable checkpoint every N steps."),
    num_threads: Optional[int] = typer.Option(None, "--num-threads", help="CPU threads for torch (0: torch's default)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --output."),
    force: bool = typer.Option(False, "--force", help="Replace a run already in --output."),
) -> None:
    """Fine-tune an encoder (+ optional GRU) with a softmax or CRF head; writes a run directory.

    Examples: `bertner train` (tiny model on data/processed), `bertner train --crf --gru --crf-lr-mult 100`,
    `bertner train data/processed --model models/bert-base-chinese --epochs 3 -o runs/bert-crf --crf`.
    """
    flags = {k: v for k, v in locals().items() if k not in ("config_file", "resume", "force", "data", "output")}
    from bertner.config import build_config, load_yaml
    from bertner.engine.distributed import is_main_process
    from bertner.engine.tracking import print_train_summary
    from bertner.engine.trainer import train as run_train

    flags["data"] = str(data) if data is not None else None
    flags["output"] = str(output) if output is not None else None
    file_values = load_yaml(config_file) if config_file else {}
    config = build_config(file_values, flags)
    if resume and not config.output:
        raise BertnerError("--resume needs --output RUN_DIR: the run to continue")
    ignored = sorted(k for k, v in flags.items() if v is not None and k != "output") + (["--config"] if config_file else [])
    if resume and ignored:
        warn(f"--resume continues with the run's saved settings; ignored: {', '.join(ignored)}")
    summary = run_train(config, resume=resume, force=force)
    if is_main_process():
        print_train_summary(summary)


@app.command()
@user_errors
def evaluate(
    run: Path = typer.Argument(..., help="A run directory written by `bertner train` (or a folder of .ann files that `bertner predict --format brat` wrote, to score those)."),
    data: Path = typer.Argument(..., help="Labelled data: a preprocessed .jsonl, a CoNLL file or folder, or a brat folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (micro, macro, per_type; document for brat) instead of tables."),
    errors: int = typer.Option(0, "--errors", help="Also list the N most frequent error kinds with examples in context."),
    constrained: Optional[bool] = typer.Option(None, "--constrained-decoding/--free-decoding", help="Override the run's decoding of a softmax head (well-formed BIO sequences, or each token's argmax)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    discontinuous: Optional[str] = typer.Option(None, "--discontinuous", help="For a folder of predicted .ann files: how to read discontinuous gold entities (merge, first, split, drop). Default: the policy of the run that wrote them, which predict records in the folder (else merge). A run always uses its own."),
) -> None:
    """Score a run on labelled data: entity-level strict P/R/F1 (micro, macro, per type).

    For a brat folder it also gives the document-level exact-span score (document, start, end,
    type) against the .ann gold, with the discontinuous policy the run was trained with.
    """
    from bertner.config import check_settings
    from bertner.evaluate import evaluate as run_evaluate, evaluate_predicted_brat
    from bertner.predict import Predictor
    from bertner.report import print_evaluation
    from bertner.runs import is_run_dir

    check_settings(batch_size=batch_size, device=device)
    if run.is_dir() and not is_run_dir(run) and any(run.glob("*.ann")):
        # RUN is a folder of .ann files that `bertner predict --format brat` wrote: score them.
        result = evaluate_predicted_brat(run, data, policy=discontinuous, n_errors=errors)
    else:
        predictor = Predictor.from_run(run, device=device, batch_size=batch_size, constrained=constrained)
        if discontinuous is not None:
            trained_with = predictor.run.data_info.get("discontinuous", "merge")
            raise BertnerError(f"{run} scores with the policy it was trained with ({trained_with}); "
                               "--discontinuous is for a folder of predicted .ann files")
        result = run_evaluate(predictor, data, n_errors=errors)
    print_evaluation(result, as_json=as_json)


@app.command()
@user_errors
def predict(
    inputs: list[str] = typer.Argument(..., help="[RUN] INPUT...: .txt files, folders of them, or - for standard input. A first argument that is a run directory chooses the run; otherwise the best run under runs/ is used."),
    output_format: Optional[str] = typer.Option(None, "--format", "-f", help="pretty (default on a terminal), jsonl (default otherwise), brat, conll."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output folder (brat: one .ann per .txt; required) or file (jsonl, conll)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs", help="Where to look for the best run when no run is given."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, "--force", help="Write into an output that already holds something: replaces only what predict writes (the -o file; or each input's .ann and .txt and bertner_predict.json), deletes nothing else."),
) -> None:
    """Tag raw text with a trained run; offsets are exact in the original files.

    Examples: `bertner predict notes.txt`, `bertner predict runs/bert-crf notes/ -f brat -o pred/`,
    `echo 患者有2型糖尿病 | bertner predict -`.
    """
    from bertner.predict_cli import run_predict

    run_predict(inputs, output_format, output, runs_dir, batch_size, device, force)


@app.command()
@user_errors
def compare(
    runs_dir: Path = typer.Argument(Path("runs"), help="Folder holding run directories (searched recursively)."),
    by: Optional[str] = typer.Option(None, "--by", help="Comma-separated columns to group by (default: every setting but the seed)."),
    per_type: bool = typer.Option(False, "--per-type", help="Add per-type dev F1 columns."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: dev F1 against step per run, and grouped F1 with error bars (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Compare the runs in a folder: a table sorted by dev F1, seeds grouped with mean and std."""
    from bertner.compare import compare_runs, plot_comparison, print_comparison

    comparison = compare_runs(runs_dir, by=[c.strip() for c in by.split(",")] if by else None)
    if plot is not None:
        plot_comparison(comparison, plot)
    print_comparison(comparison, per_type=per_type, as_json=as_json)


@app.command()
@user_errors
def sweep(
    config_file: Path = typer.Argument(..., help="YAML grid: base settings plus lists of values to try (see examples/quickstart.yaml)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the runs (default: the file's `output`, else runs/<file name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs without training."),
) -> None:
    """Train every combination of a grid one after another, skip finished runs, then compare."""
    from bertner.sweep import run_sweep

    run_sweep(config_file, output=output, dry_run=dry_run)


if __name__ == "__main__":
    app()
