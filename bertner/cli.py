"""The `bertner` command line: parse options, call the library, print. Nothing else lives here."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable, Optional

import typer
from rich.markup import escape
from typer.core import TyperCommand

from bertner import __version__
from bertner.console import err, info, warn
from bertner.errors import BertnerError, OutputExistsError

# Plain (click) help, not rich panels: it wraps to the terminal or to 80 columns in a pipe and never
# cuts an option name or a default short.
app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

DEFAULT_DATA = Path("data/processed")


def _by_encoder(setting: str) -> str:
    """`default 2, bilstm 10`: a recipe setting's default (per encoder family where they differ), for --help."""
    from collections import Counter

    from bertner.config import RECIPES

    names = {"tiny": "tiny", "bilstm": "bilstm", "small": "pretrained", "base": "BERT-base size and up"}
    values = {names.get(family, family): getattr(recipe, setting) for family, recipe in RECIPES.items()}
    common, count = Counter(values.values()).most_common(1)[0]
    if count == 1:
        return "default by encoder: " + ", ".join(f"{name} {value:g}" for name, value in values.items())
    return ", ".join([f"default {common:g}"] + [f"{name} {value:g}" for name, value in values.items() if value != common])


def _argument_name(param) -> str:
    return (param.metavar or param.name.upper()) + ("..." if param.nargs != 1 else "")


class Command(TyperCommand):
    """Help as Unix tools write it: `Usage: bertner train [OPTIONS] [DATA]`, arguments by name, no type tags."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                name = _argument_name(param)
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        params = [p for p in self.get_params(ctx) if not getattr(p, "hidden", False)]
        arguments = [(_argument_name(p), getattr(p, "help", None) or "") for p in params if p.param_type_name == "argument"]
        options = [r for r in (p.get_help_record(ctx) for p in params if p.param_type_name == "option") if r]
        for title, rows in (("Arguments", arguments), ("Options", options)):
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


def show_version(value: bool) -> None:
    if value:
        typer.echo(f"bertner {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Fine-tune BERT-family encoders for named-entity recognition.

    Typical flow: bertner preprocess RAW_DIR -> bertner train -> bertner evaluate / predict / compare.
    Every command has --help.
    """


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
    from bertner.config import build_config, load_yaml
    from bertner.engine.distributed import is_main_process
    from bertner.engine.tracking import print_train_summary
    from bertner.engine.trainer import train as run_train

    flags["data"] = str(data) if data is not None else None
    flags["output"] = str(output) if output is not None else None
    file_values = load_yaml(config_file) if config_file else {}
    config = build_config(file_values, flags, str(config_file) if config_file else "config file")
    if resume and not config.output:
        raise BertnerError("--resume needs --output RUN_DIR: the run to continue")
    ignored = sorted(k for k, v in flags.items() if v is not None and k != "output") + (["--config"] if config_file else [])
    if resume and ignored:
        warn(f"--resume continues with the run's saved settings; ignored: {', '.join(ignored)}")
    summary = run_train(config, resume=resume, force=force)
    if is_main_process():
        print_train_summary(summary)


@app.command(cls=Command, short_help="Score a run (or predicted .ann files) on labelled data.")
@user_errors
def evaluate(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory written by `bertner train` (or a folder of .ann files that `bertner predict --format brat` wrote, to score those)."),
    data: Path = typer.Argument(..., metavar="DATA", help="Labelled data: a preprocessed .jsonl, a CoNLL file or folder, or a brat folder."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object (micro, macro, per_type; document for brat) instead of tables."),
    errors: int = typer.Option(0, "--errors", metavar="N", help="Also list the N most frequent error kinds with examples in context ([gold], {predicted})."),
    constrained: Optional[bool] = typer.Option(None, "--constrained-decoding/--free-decoding", help="Override the run's decoding of a softmax head (well-formed BIO sequences, or each token's argmax)."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", metavar="N", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    discontinuous: Optional[str] = typer.Option(None, "--discontinuous", metavar="POLICY", help="For a folder of predicted .ann files: how to read discontinuous gold entities (merge, first, split, drop). Default: the policy of the run that wrote them, which predict records in the folder (else merge). A run always uses its own."),
) -> None:
    """Score a run on labelled data: entity-level strict P/R/F1 (micro, macro, per type).

    For a brat folder it also gives the document-level exact-span score (document, start, end,
    type) against the .ann gold, with the discontinuous policy the run was trained with.
    """
    from bertner.config import check_settings
    from bertner.evaluate import evaluate as run_evaluate, evaluate_predicted_brat
    from bertner.fileio import folder_suffixes
    from bertner.predict import Predictor
    from bertner.report import print_evaluation
    from bertner.runs import is_run_dir

    check_settings(batch_size=batch_size, device=device)
    if run.is_dir() and not is_run_dir(run) and ".ann" in folder_suffixes(run):
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


@app.command(cls=Command, short_help="Tag raw text with a run; exact offsets.")
@user_errors
def predict(
    inputs: list[str] = typer.Argument(..., metavar="[RUN] INPUT", help=".txt files, folders of them, or - for standard input. A first argument that is a run directory chooses the run; otherwise the best run under runs/ is used."),
    output_format: Optional[str] = typer.Option(None, "--format", "-f", metavar="FORMAT", help="pretty (default on a terminal), jsonl (default otherwise), brat, conll, html (a page with the entities highlighted)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="PATH", help="Output folder (brat: one .ann per .txt; required) or file (jsonl, conll, html)."),
    runs_dir: Path = typer.Option(Path("runs"), "--runs", metavar="DIR", help="Where to look for the best run when no run is given."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", metavar="N", help="Inputs per batch."),
    device: str = typer.Option("auto", "--device", metavar="DEVICE", help="auto, cpu, cuda or cuda:N."),
    force: bool = typer.Option(False, "--force", help="Write into an output that already holds something: replaces only what predict writes (the -o file; or each input's .ann and .txt and bertner_predict.json), deletes nothing else."),
) -> None:
    """Tag raw text with a trained run; offsets are exact in the original files.

    Examples:

    \b
      bertner predict notes.txt
      bertner predict runs/bert-crf notes/ -f brat -o pred/
      echo 患者有2型糖尿病 | bertner predict -
      bertner predict notes.txt -f html -o notes.html
    """
    from bertner.predict_cli import run_predict

    run_predict(inputs, output_format, output, runs_dir, batch_size, device, force)


@app.command(cls=Command, short_help="Write a run as a Hugging Face model folder.")
@user_errors
def export(
    run: Path = typer.Argument(..., metavar="RUN", help="A run directory written by `bertner train`."),
    output: Path = typer.Argument(..., metavar="OUT", help="The folder to write: model, tokenizer, README.md."),
    force: bool = typer.Option(False, "--force", help="Write into a folder that already holds something (replaces only the files export writes)."),
) -> None:
    """Write a run as a folder that plain Hugging Face tools load offline, with no custom code.

    transformers' AutoModelForTokenClassification and pipeline("token-classification",
    aggregation_strategy="simple") read it directly. A CRF run adds its transitions (crf.safetensors)
    and OUT/README.md shows how to decode with them; runs with --gru or --model bilstm have no
    transformers equivalent and are refused.
    """
    from bertner.export import export_run

    result = export_run(run, output, force=force)
    info(f"wrote {output}: a transformers token-classification model ({result.head} head); "
         f"{output / 'README.md'} says how to use it")
    info("what differs from `bertner predict`:")
    for note in result.notes:
        info(f"  - {note}")


@app.command(cls=Command, short_help="Table of runs by dev F1, seeds grouped.")
@user_errors
def compare(
    runs_dir: Path = typer.Argument(Path("runs"), metavar="RUNS_DIR", help="Folder holding run directories (searched recursively)."),
    by: Optional[str] = typer.Option(None, "--by", metavar="COLUMNS", help="Comma-separated columns to group by (default: every setting but the seed)."),
    per_type: bool = typer.Option(False, "--per-type", help="Add per-type dev F1 columns."),
    plot: Optional[Path] = typer.Option(None, "--plot", metavar="FILE.png", help="Write a PNG: dev F1 against step per run, and grouped F1 with error bars (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="GROUP", help="A group as the table names it (e.g. tiny+softmax): every other group's F1 difference to it, with confidence intervals and Holm-corrected p-values from the seeds and from a bootstrap over dev documents."),
    resamples: int = typer.Option(10_000, "--resamples", metavar="N", min=100, help="Bootstrap resamples for --baseline."),
) -> None:
    """Compare the runs in a folder: a table sorted by dev F1, seeds grouped with mean and std.

    With --baseline GROUP: is each other group really better or worse than GROUP?

    \b
      bertner compare runs/quickstart-sweep --baseline tiny+softmax
    """
    from bertner.compare import compare_runs, plot_comparison, print_comparison

    comparison = compare_runs(runs_dir, by=[c.strip() for c in by.split(",")] if by else None)
    if plot is not None:
        written = plot_comparison(comparison, plot)
        info(f"wrote the plot to {written}")
    if baseline is None:
        print_comparison(comparison, per_type=per_type, as_json=as_json)
        return
    from bertner.significance import compare_to_baseline
    from bertner.significance_view import print_baseline_comparison

    print_baseline_comparison(comparison, compare_to_baseline(comparison, baseline, resamples), as_json=as_json)


@app.command(cls=Command, short_help="One HTML page about a folder of runs.")
@user_errors
def report(
    runs_dir: Path = typer.Argument(Path("runs"), metavar="RUNS_DIR", help="Folder holding run directories (searched recursively)."),
    output: Path = typer.Option(Path("report.html"), "--output", "-o", metavar="FILE.html", help="The page to write."),
    baseline: Optional[str] = typer.Option(None, "--baseline", metavar="GROUP", help="The group the others are tested against (default: the softmax group without GRU if there is one, else the weakest)."),
    documents: int = typer.Option(4, "--documents", metavar="N", min=0, help="Dev documents shown with gold and predicted entities side by side."),
    resamples: int = typer.Option(10_000, "--resamples", metavar="N", min=100, help="Bootstrap resamples."),
    force: bool = typer.Option(False, "--force", help="Replace FILE.html if it exists."),
) -> None:
    """Write one self-contained HTML page: comparison with intervals, learning curves, per-type F1,
    error kinds and dev documents with gold and predicted entities highlighted. Needs matplotlib.

    \b
      bertner report runs/quickstart-sweep -o report.html
    """
    from bertner.compare import compare_runs
    from bertner.report_html import write_report

    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists; pass --force to replace it")
    comparison = compare_runs(runs_dir)
    for skipped in comparison.incomplete:
        warn(f"skipped {skipped.name}: {skipped.reason}")
    written = write_report(comparison, output, baseline, documents, resamples)
    info(f"wrote {written}: open it in a browser")


@app.command(cls=Command, short_help="Train every combination of a grid, then compare.")
@user_errors
def sweep(
    config_file: Path = typer.Argument(..., metavar="GRID.yaml", help="YAML grid: base settings plus lists of values to try (see examples/quickstart.yaml)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", metavar="DIR", help="Folder for the runs (default: the file's `output`, else runs/<file name>)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs without training."),
) -> None:
    """Train every combination of a grid one after another, skip finished runs, then compare."""
    from bertner.sweep import run_sweep

    run_sweep(config_file, output=output, dry_run=dry_run)


if __name__ == "__main__":
    app()
