"""Training settings: one dataclass, loadable from YAML, overridable by flags, saved with each run."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from bertner.errors import BertnerError

@dataclass(frozen=True)
class Recipe:
    """Defaults of one encoder family: what a setting left out (None) becomes."""

    lr: float
    crf_lr_mult: float
    epochs: int
    batch_size: int


# Measured on Ruijin where we could (README, "Recipes"); a user's flag or YAML always wins.
RECIPES = {
    "tiny": Recipe(lr=1e-3, crf_lr_mult=1.0, epochs=2, batch_size=16),  # from scratch: a large rate
    "bilstm": Recipe(lr=4e-3, crf_lr_mult=1.0, epochs=15, batch_size=16),  # dev F1 flat after ~10 epochs
    "small": Recipe(lr=3e-4, crf_lr_mult=10.0, epochs=2, batch_size=16),  # pretrained, hidden < 768 (ALBERT-tiny)
    "base": Recipe(lr=5e-5, crf_lr_mult=1.0, epochs=2, batch_size=16),  # pretrained BERT-base size: the study's rate
}
RECIPE_FIELDS = ("lr", "crf_lr_mult", "epochs", "batch_size")


def recipe_family(model: str, hidden_size: int) -> str:
    if model in ("tiny", "bilstm"):
        return model
    return "base" if hidden_size >= 768 else "small"


# Guesses from a hub name whose config.json is not downloaded yet, longest first (albert contains bert).
NAMED_TYPES = ("xlm-roberta", "distilbert", "deberta", "roberta", "electra", "albert", "bert")


def encoder_type(model: str) -> str:
    """What variant names call an encoder: `tiny`, `bilstm`, or its config's model_type (bert, albert, roberta...).

    Read from the folder's config.json, or a hub model's in the local cache; a hub name never downloaded
    is guessed from its name (else `bert`), which only the default run folder's name can see.
    """
    if model in ("tiny", "bilstm"):
        return model
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        try:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(model, "config.json")
            config = Path(cached) if isinstance(cached, str) else config
        except Exception:  # not a valid repository id, no cache: guess below
            pass
    try:
        kind = json.loads(config.read_text(encoding="utf-8")).get("model_type")
        if isinstance(kind, str) and kind:
            return kind
    except (OSError, ValueError, AttributeError):
        pass
    name = model.lower().rsplit("/", 1)[-1]
    return next((kind for kind in NAMED_TYPES if kind in name), "bert")


def variant_name(encoder: str, crf: bool, gru: bool) -> str:
    """`albert+gru+crf`, `tiny+softmax`, `bilstm+crf`: the encoder's type, then the head."""
    return encoder + ("+gru" if gru else "") + ("+crf" if crf else "+softmax")


@dataclass
class TrainConfig:
    """Every training setting; `bertner train` flags and YAML keys are its field names.

    `train(TrainConfig(data="data/processed", crf=True))` is `bertner train --crf`. Settings left None
    (lr, crf_lr_mult, epochs, batch_size) take the encoder family's defaults (`RECIPES`) when training starts.
    """

    # data and model
    data: str = "data/processed"
    model: str = "tiny"
    alignment: str = "auto"  # char | subword | auto (char for Chinese vocabularies)
    whitespace_tokens: bool = True  # char alignment: whitespace gets a token (False: skipped, as HF tokenizers do)
    random_init: bool = False  # the model's architecture with random weights (an ablation baseline)
    trust_remote_code: bool = False  # let a model folder run its own Python code (only for folders you trust)
    output: str | None = None  # default: runs/<variant>-<time>
    # variant
    crf: bool = False
    gru: bool = False
    gru_hidden: int | None = None  # None: the encoder's hidden size, as in the study
    gru_layers: int = 1
    gru_bidirectional: bool = False
    dropout: float = 0.1
    constrained_decoding: bool = False  # softmax: decode the best well-formed BIO sequence, not per-token argmax
    # tiny encoder size (only for --model tiny)
    tiny_layers: int = 2
    tiny_hidden: int = 128
    tiny_heads: int = 2
    # bilstm encoder (only for --model bilstm)
    rnn_cell: str = "lstm"  # lstm | gru
    rnn_hidden: int = 128  # per direction (256 measured no better on Ruijin, at half the speed)
    rnn_layers: int = 1
    rnn_dropout: float = 0.2  # on the embeddings and between recurrent layers
    char_dim: int | None = None  # None: 128, or the width of --init-embeddings' table
    bigram_dim: int = 0  # width of the bigram table (0: characters only; bigrams measured no gain on Ruijin)
    init_embeddings: str | None = None  # a model folder whose input embeddings start the character table
    # optimisation
    # lr, crf_lr_mult, epochs, batch_size: None takes the encoder family's recipe (RECIPES)
    lr: float | None = None
    head_lr_mult: float = 1.0
    crf_lr_mult: float | None = None
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    epochs: int | None = None
    max_steps: int = 0  # stop after this many optimiser steps (0: no limit)
    time_budget: float = 0  # minutes of wall-clock training, evaluations included (0: no limit)
    batch_size: int | None = None
    grad_accum: int = 1
    max_length: int = 512  # tokens per model input, [CLS] and [SEP] included; longer windows are chunked
    # evaluation and stopping
    eval_every: int = 0  # also evaluate every N steps (0: only at the end of each epoch)
    patience: int = 0  # stop after N evaluations without a better dev F1 (0: never)
    log_every: int = 20  # steps between loss logs (each log is one host sync)
    # engine
    seed: int = 13
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    compile: bool = False
    num_threads: int = 0  # CPU threads for torch (0: torch's default)
    save_every: int = 0  # also save a resumable checkpoint every N steps (0: at evaluations only)
    scheme: str = "BIO"

    @property
    def variant(self) -> str:
        """The architecture by its encoder's type, e.g. `bert+gru+crf`, `albert+crf` or `tiny+softmax`."""
        return variant_name(encoder_type(self.model), self.crf, self.gru)

    def resolve(self, hidden_size: int) -> None:
        """Fill the settings left to their family's recipe, so the saved config says what ran."""
        recipe = RECIPES[recipe_family(self.model, hidden_size)]
        for name in RECIPE_FIELDS:
            if getattr(self, name) is None:
                setattr(self, name, getattr(recipe, name))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> None:
        checks = [
            (self.epochs is None or self.epochs >= 1, "--epochs must be at least 1"),
            (self.max_steps >= 0, "--max-steps must be 0 (no limit) or more"),
            (self.batch_size is None or self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.grad_accum >= 1, "--grad-accum must be at least 1"),
            (self.max_length >= 8, "--max-length must be at least 8"),
            (self.lr is None or self.lr > 0, "--lr must be positive"),
            ((self.crf_lr_mult is None or self.crf_lr_mult > 0) and self.head_lr_mult > 0,
             "learning-rate multipliers must be positive"),
            (0 <= self.warmup_ratio < 1, "--warmup-ratio must be in [0, 1)"),
            (0 <= self.dropout < 1, "--dropout must be in [0, 1)"),
            (self.alignment in ("auto", "char", "subword"), "--alignment must be auto, char or subword"),
            (self.precision in ("auto", "fp32", "bf16", "fp16"), "--precision must be auto, fp32, bf16 or fp16"),
            (self.rnn_cell in ("lstm", "gru"), "--rnn-cell must be lstm or gru"),
            (self.rnn_hidden >= 1 and self.rnn_layers >= 1, "--rnn-hidden and --rnn-layers must be at least 1"),
            (0 <= self.rnn_dropout < 1, "--rnn-dropout must be in [0, 1)"),
            (self.char_dim is None or self.char_dim >= 1, "--char-dim must be at least 1"),
            (self.bigram_dim >= 0, "--bigram-dim must be 0 (no bigrams) or more"),
            (self.time_budget >= 0, "--time-budget must be 0 (no limit) or a number of minutes"),
            (self.init_embeddings is None or self.model == "bilstm", "--init-embeddings is for --model bilstm"),
        ]
        for ok, message in checks:
            if not ok:
                raise BertnerError(message)


def config_keys() -> set[str]:
    return {f.name for f in fields(TrainConfig)}


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of settings (safe_load: a config file can never run code)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise BertnerError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise BertnerError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BertnerError(f"{path}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def coerce_setting(where: str, key: str, value: Any) -> Any:
    """Coerce what YAML gives to the setting's type (YAML 1.1 reads 5e-5 as a string), or fail clearly."""
    kind = str(TrainConfig.__dataclass_fields__[key].type)
    if value is None:
        if "None" in kind:
            return None
        raise BertnerError(f"{where}: {key} cannot be empty")
    if kind.startswith("bool"):
        if not isinstance(value, bool):
            raise BertnerError(f"{where}: {key} must be true or false, got {value!r}")
        return value
    if kind.startswith(("float", "int")):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise BertnerError(f"{where}: {key} must be a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise BertnerError(f"{where}: {key} must be a number, got {value!r}") from None
        if kind.startswith("int"):
            if number != int(number):
                raise BertnerError(f"{where}: {key} must be a whole number, got {value!r}")
            return int(number)
        return number
    if kind.startswith("str"):
        if isinstance(value, (list, dict)):
            raise BertnerError(f"{where}: {key} must be a single value, got {value!r}")
        return str(value)
    return value


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any]) -> TrainConfig:
    """Defaults, then the config file, then the flags the user actually gave."""
    known = config_keys()
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise BertnerError(f"unknown option(s) in config file: {', '.join(unknown)}")
    checked = {k: coerce_setting("config file", k, v) for k, v in file_values.items()}
    merged = {**checked, **{k: v for k, v in flag_values.items() if v is not None}}
    config = TrainConfig(**merged)
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    from bertner.fileio import write_text

    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True))
