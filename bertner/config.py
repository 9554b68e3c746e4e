"""Training settings: one dataclass, loadable from YAML, overridable by flags, saved with each run."""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from bertner.errors import BertnerError, shown
from bertner.fileio import YamlTooLarge, check_input_file, decode_utf8, parse_json, parse_yaml, write_text
from bertner.metrics import KINDS as ERROR_KINDS
from bertner.tags import SCHEMES


@dataclass(frozen=True)
class Recipe:
    """Defaults of one encoder family: what a setting left out (None) becomes."""

    lr: float
    crf_lr_mult: float
    epochs: int
    batch_size: int


# Measured on Ruijin where we could (README, "Recipes"); a user's flag or YAML always wins. The CRF
# multiplier puts the transitions' own rate (lr x mult) at a few 1e-3 for every family: the range
# that measured best for ALBERT-tiny (3e-3) and the bilstm (4e-3); x100 puts BERT-base's 5e-5 there.
RECIPES = {
    "tiny": Recipe(lr=1e-3, crf_lr_mult=1.0, epochs=2, batch_size=16),  # from scratch: a large rate
    "bilstm": Recipe(lr=4e-3, crf_lr_mult=1.0, epochs=15, batch_size=16),  # dev F1 flat after ~10 epochs
    "small": Recipe(lr=3e-4, crf_lr_mult=10.0, epochs=2, batch_size=16),  # pretrained, hidden < 768 (ALBERT-tiny)
    "base": Recipe(lr=5e-5, crf_lr_mult=100.0, epochs=2, batch_size=16),  # pretrained BERT-base size: the study's rate
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
        kind = parse_json(config.read_text(encoding="utf-8")).get("model_type")
        if isinstance(kind, str) and kind:
            return kind
    except (OSError, ValueError, AttributeError):
        pass
    name = model.lower().rsplit("/", 1)[-1]
    return next((kind for kind in NAMED_TYPES if kind in name), "bert")


def variant_name(encoder: str, crf: bool, gru: bool) -> str:
    """`albert+gru+crf`, `tiny+softmax`, `bilstm+crf`: the encoder's type, then the head."""
    return encoder + ("+gru" if gru else "") + ("+crf" if crf else "+softmax")


# ----------------------------------------------------------------------------- what each setting accepts

INT_MAX = 2**31 - 1  # counts and sizes reach C code as 32-bit ints; nothing larger would fit in memory anyway


@dataclass(frozen=True)
class Limit:
    """The values one setting accepts: numbers in a range, or text from a list or of a form."""

    low: float | None = None  # the smallest value allowed
    above: float | None = None  # values must be greater than this
    below: float | None = None  # values must be less than this
    high: float | None = None  # the largest value allowed (whole numbers: INT_MAX when not given)
    choices: tuple[str, ...] = ()
    pattern: str | None = None  # a regular expression the whole text must match
    form: str = ""  # what the pattern means, for the message
    note: str = ""  # what a special value means, e.g. "0: no limit"

    def accepts(self, value: Any, whole: bool) -> bool:
        if self.choices:
            return value in self.choices
        if self.pattern is not None:
            return re.fullmatch(self.pattern, value) is not None
        high = self.high if self.high is not None or not whole else INT_MAX
        return not (
            (self.low is not None and value < self.low) or (self.above is not None and value <= self.above)
            or (self.below is not None and value >= self.below) or (high is not None and value > high)
        )

    def describe(self, value: Any) -> str:
        """The rule `value` broke, e.g. "at least 1 (0: no limit)" or "in [0, 1)"."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.pattern is not None:
            return self.form
        # INT_MAX is named only to a value above it: "at least 1" reads better than a full range.
        high = self.high if self.high is not None or value <= INT_MAX else INT_MAX
        if self.low is not None and self.below is not None:
            text = f"in [{self.low:g}, {self.below:g})"
        elif self.above == 0 and high is None:
            text = "positive"
        else:
            bounds = [f"at least {self.low:g}" if self.low is not None else "",
                      f"greater than {self.above:g}" if self.above is not None else "",
                      f"at most {high}" if high is not None else ""]
            text = " and ".join(b for b in bounds if b)
        return f"{text} ({self.note})" if self.note else text


GRU_ONLY = ("gru", True, "gru settings without gru")
TINY_ONLY = ("model", "tiny", "tiny_* settings without model tiny")
BILSTM_ONLY = ("model", "bilstm", "bilstm settings without model bilstm")


def setting(default: Any, help: str, limit: Limit | None = None, flags: tuple[str, ...] = (), metavar: str | None = None,
            cli: bool = True, only_with: tuple[str, Any, str] | None = None) -> Any:
    """A TrainConfig field with what every interface needs to know about it.

    `help` is the --help line (no study numbers: those are in the README); `limit` the values it
    accepts (`LIMITS`); `flags` the option's names when they are not `--name` (or `--name/--no-name`);
    `metavar` the placeholder in --help; `cli` False: a setting only a YAML file or the API sets;
    `only_with` (setting, value, why): it has an effect only when that setting has that value (a sweep
    collapses the combinations where it has none, saying why).
    """
    return field(default=default, metadata={"help": help, "limit": limit, "flags": flags, "metavar": metavar, "cli": cli,
                                            "only_with": only_with})



def has_effect(name: str, values: Mapping[str, Any]) -> bool:
    """Whether setting `name` changes anything, given every setting's value (its `only_with`)."""
    only_with = next(f for f in fields(TrainConfig) if f.name == name).metadata["only_with"]
    return only_with is None or values[only_with[0]] == only_with[1]


def settings_without_effect(config: "TrainConfig", given: Iterable[str]) -> list[str]:
    """Of the settings the user `given`, those this config ignores, as "--gru-hidden (needs --gru)"."""
    def flag(name: str) -> str:
        return "--" + name.replace("_", "-")

    ignored = []
    for f in fields(config):
        if f.name in given and not has_effect(f.name, vars(config)):
            other, value, _ = f.metadata["only_with"]
            needs = flag(other) if value is True else f"{flag(other)} {value}"
            ignored.append(f"{flag(f.name)} (needs {needs})")
    return ignored


@dataclass
class TrainConfig:
    """Every training setting; `bertner train` flags and YAML keys are its field names.

    `train(TrainConfig(data="data/processed", crf=True))` is `bertner train --crf`. Settings left None
    (lr, crf_lr_mult, epochs, batch_size) take the encoder family's defaults (`RECIPES`) when training starts.
    Each field's metadata (`setting`) holds its help, its range or choices and its flag: the train
    command's options, YAML coercion and validation are all derived from it.
    """

    # data and model
    data: str = setting("data/processed", "Folder written by `bertner preprocess`.",
                        Limit(pattern=r"(?s).*\S.*", form="a folder"), cli=False)  # the command's argument
    model: str = setting(
        "tiny", "`tiny` (small BERT trained from scratch, no download), `bilstm` (character + bigram BiLSTM, no "
        "transformer: the pre-BERT baseline and the best CPU model), a local Hugging Face model folder, or a hub "
        "name such as bert-base-chinese (needs the network).",
        Limit(pattern=r"(?s).*\S.*", form="tiny, bilstm, a model folder or a hub name"), ("--model", "-m"), "MODEL")
    alignment: str = setting("auto", "char (one character, one token), subword (tokenizer offsets) or auto "
                             "(char for Chinese vocabularies).", Limit(choices=("auto", "char", "subword")), metavar="MODE")
    whitespace_tokens: bool = setting(
        True, "Char alignment: spaces and line breaks get a token of their own, so the model sees where lines and "
        "lists break (default), or are skipped as Hugging Face tokenizers do (fewer tokens; the README compares the two).",
        flags=("--whitespace-tokens/--skip-whitespace",))
    random_init: bool = setting(False, "Use --model's architecture with random weights: the baseline that shows what "
                                "pretraining buys.", flags=("--random-init/--pretrained",))
    trust_remote_code: bool = setting(False, "Let the --model folder run its own Python code. Only for folders you trust; "
                                      "only this flag turns it on (never a file or a run's config.yaml).",
                                      flags=("--trust-remote-code",))
    output: str | None = setting(None, "Run directory (default: runs/<variant>-<time>).", flags=("--output", "-o"),
                                 metavar="RUN", cli=False)  # a Path option of the command
    # variant
    crf: bool = setting(False, "CRF head instead of a softmax classifier.", flags=("--crf/--softmax",))
    gru: bool = setting(False, "A GRU layer between encoder and head.")
    gru_hidden: int | None = setting(None, "GRU hidden size (default: the encoder's).", Limit(low=1), only_with=GRU_ONLY)
    gru_layers: int = setting(1, "GRU layers.", Limit(low=1), only_with=GRU_ONLY)
    gru_bidirectional: bool = setting(False, "Run the GRU both ways (default: one direction, as in the study).",
                                      flags=("--gru-bidirectional/--gru-unidirectional",), only_with=GRU_ONLY)
    dropout: float = setting(0.1, "Dropout before the classifier.", Limit(low=0, below=1), metavar="P")
    constrained_decoding: bool = setting(
        False, "Softmax head: decode the most probable well-formed BIO sequence instead of each token's argmax "
        "(default: free, as in the study).", flags=("--constrained-decoding/--free-decoding",))
    # tiny encoder size (only for --model tiny)
    tiny_layers: int = setting(2, "Layers of --model tiny.", Limit(low=1), only_with=TINY_ONLY)
    tiny_hidden: int = setting(128, "Hidden size of --model tiny.", Limit(low=1), only_with=TINY_ONLY)
    tiny_heads: int = setting(2, "Attention heads of --model tiny.", Limit(low=1), only_with=TINY_ONLY)
    # bilstm encoder (only for --model bilstm)
    rnn_cell: str = setting("lstm", "--model bilstm: lstm or gru.", Limit(choices=("lstm", "gru")), metavar="CELL", only_with=BILSTM_ONLY)
    rnn_hidden: int = setting(128, "--model bilstm: hidden size per direction.", Limit(low=1), only_with=BILSTM_ONLY)
    rnn_layers: int = setting(1, "--model bilstm: stacked bidirectional layers.", Limit(low=1), only_with=BILSTM_ONLY)
    rnn_dropout: float = setting(0.2, "--model bilstm: dropout on the embeddings and between layers.",
                                 Limit(low=0, below=1), metavar="P", only_with=BILSTM_ONLY)
    char_dim: int | None = setting(None, "--model bilstm: character vector size (default 128, or that of "
                                   "--init-embeddings).", Limit(low=1), only_with=BILSTM_ONLY)
    bigram_dim: int = setting(0, "--model bilstm: bigram vector size (0: characters only).",
                              Limit(low=0, note="0: characters only"), only_with=BILSTM_ONLY)
    init_embeddings: str | None = setting(None, "--model bilstm: start the character vectors from a pretrained "
                                          "model folder's input embeddings (e.g. ALBERT-tiny's), a word2vec text file (one "
                                          "`bertner embeddings` wrote also starts the bigram and lexicon-word vectors), or "
                                          "jieba-lac (Baidu LAC's character table inside jieba).", metavar="SOURCE", only_with=BILSTM_ONLY)
    # lexicon features (any encoder with char alignment)
    lexicon: list[str] | None = setting(
        None, "A dictionary whose words become features of each character (SoftLexicon): `jieba` (its general Chinese "
        "dictionary; pip install \"bertner[zh]\"), a term-list file (term, optional tab + type, optional tab + "
        "frequency per line) or a folder of them (file name = type). Repeatable; saved with the run.", metavar="SOURCE")
    lexicon_dim: int = setting(64, "Width of each character's --lexicon features (its pooled word and type vectors, "
                               "projected).", Limit(low=1))
    softword: bool = setting(False, "Give each character its position (begins, middle, ends, single) in jieba's "
                             "segmentation of its window (jieba.cut without HMM), as a small learned vector joined where "
                             "--lexicon's features join. Needs jieba when training and wherever the run is used "
                             "(pip install \"bertner[zh]\").")
    # optimisation; lr, crf_lr_mult, epochs, batch_size: None takes the encoder family's recipe (RECIPES)
    lr: float | None = setting(None, "Base learning rate of the encoder.", Limit(above=0), metavar="RATE")
    head_lr_mult: float = setting(1.0, "GRU and classifier learn at this multiple of --lr.", Limit(above=0), metavar="X")
    crf_lr_mult: float | None = setting(None, "CRF transitions learn at this multiple of --lr.", Limit(above=0), metavar="X", only_with=("crf", True, "crf_lr_mult without crf"))
    weight_decay: float = setting(0.01, "AdamW weight decay (never on biases, LayerNorm or CRF).", Limit(low=0),
                                  metavar="W")
    warmup_ratio: float = setting(0.1, "Share of steps for the linear warm-up.", Limit(low=0, below=1), metavar="SHARE")
    max_grad_norm: float = setting(1.0, "Gradient clipping norm.", Limit(above=0), cli=False)
    epochs: int | None = setting(None, "Passes over the training windows (--time-budget replaces it).", Limit(low=1))
    max_steps: int = setting(0, "Stop after this many optimiser steps (0: no limit).", Limit(low=0, note="0: no limit"))
    time_budget: float = setting(
        0, "Train for this many minutes of wall-clock time (evaluations included), with the learning-rate schedule "
        "planned to end there; keeps the best checkpoint (0: no limit, --epochs decides).",
        Limit(low=0, note="minutes; 0: no limit"), metavar="MINUTES")
    batch_size: int | None = setting(None, "Inputs per batch.", Limit(low=1), ("--batch-size", "-b"))
    grad_accum: int = setting(1, "Batches per optimiser step.", Limit(low=1))
    max_length: int = setting(512, "Tokens per model input incl. [CLS]/[SEP]; longer windows are cut with overlap.",
                              Limit(low=8))
    swa: float = setting(0, "Stochastic weight averaging: average the weights over the last SHARE of training (by steps, "
                         "or by time with --time-budget) and keep the average if it scores better on dev than the best "
                         "checkpoint (0: off).", Limit(low=0, below=1, note="0: off"), metavar="SHARE")
    # evaluation and stopping
    eval_every: int = setting(0, "Also evaluate on the whole dev set every N steps (0: each epoch end only).",
                              Limit(low=0, note="0: at the end of each epoch only"))
    patience: int = setting(0, "Stop after N evaluations without a better dev F1 (0: never).",
                            Limit(low=0, note="0: never stop early"))
    log_every: int = setting(20, "Steps between loss logs.", Limit(low=1))
    # engine
    seed: int = setting(13, "Random seed; CPU runs with the same seed are repeatable.", Limit(low=0, high=2**63 - 1))
    device: str = setting("auto", "auto, cpu, cuda or cuda:N.",
                          Limit(pattern=r"auto|cpu|mps|cuda(:[0-9]+)?", form="auto, cpu, cuda or cuda:N"), metavar="DEVICE")
    precision: str = setting("auto", "auto (bf16 or fp16 on GPU; on CPU bf16 where the CPU computes it natively, "
                             "else fp32), fp32, bf16, fp16.", Limit(choices=("auto", "fp32", "bf16", "fp16")),
                             metavar="PRECISION")
    compile: bool = setting(False, "torch.compile the encoder (GPU; pays off on long runs).")
    num_threads: int = setting(0, "CPU threads for torch (0: one for bilstm and tiny, whose small operations "
                               "train fastest on one thread; torch's default, one per core, for pretrained encoders).",
                               Limit(low=0, high=1024, note="0: by model"))
    save_every: int = setting(0, "Also save a resumable checkpoint every N steps.",
                              Limit(low=0, note="0: at evaluations only"))
    scheme: str = setting("BIO", "Tag scheme the model learns.", Limit(choices=SCHEMES), cli=False)

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

    def validate(self, source: str | None = None) -> None:
        """Check every setting against `LIMITS` and the settings against each other.

        `source` names where the values came from (a file): messages then use its keys
        (`max_length`) instead of flags (`--max-length`).
        """
        for f in fields(self):
            check_setting(f.name, getattr(self, f.name), source)
        name = (lambda key: f"--{key.replace('_', '-')}") if source is None else (lambda key: key)
        where = "" if source is None else f"{source}: "
        checks = [
            (self.init_embeddings is None or self.model == "bilstm",
             f"{name('init_embeddings')} is for {name('model')} bilstm"),
            (not self.lexicon or self.alignment != "subword",
             f"{name('lexicon')} needs char alignment (one character, one token), not {name('alignment')} subword"),
            (not self.softword or self.alignment != "subword",
             f"{name('softword')} needs char alignment (one character, one token), not {name('alignment')} subword"),
            (self.model != "tiny" or self.tiny_hidden % self.tiny_heads == 0,
             f"{name('tiny_hidden')} {self.tiny_hidden} must be a multiple of {name('tiny_heads')} {self.tiny_heads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise BertnerError(where + message)


# Every setting with a range or a list of values, from the fields' metadata: flags, config files, sweep grids
# and a run's saved config.yaml are all checked against it (check_setting) before anything is created.
LIMITS: dict[str, Limit] = {f.name: f.metadata["limit"] for f in fields(TrainConfig) if f.metadata["limit"] is not None}
KIND_WORDS = {"bool": "true or false", "int": "a whole number", "float": "a number", "str": "a single value",
              "list": "a list of values"}


def config_keys() -> set[str]:
    return {f.name for f in fields(TrainConfig)}


def setting_kind(key: str) -> tuple[str, bool]:
    """A setting's type as (bool | int | float | str | list, whether it may be None); lists hold strings."""
    annotation = str(TrainConfig.__dataclass_fields__[key].type)
    kind = annotation.split("|")[0].strip()
    return ("list" if kind.startswith("list") else kind), "None" in annotation


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "list":
        return isinstance(value, list) and all(isinstance(item, str) and item.strip() for item in value)
    return isinstance(value, str)


def check_setting(key: str, value: Any, source: str | None = None) -> None:
    """Refuse a value of the wrong type, not finite, or outside `LIMITS`, in one line.

    `source` None: the value came from a flag (`--max-length`); else from that file (`max_length`).
    """
    name = f"--{key.replace('_', '-')}" if source is None else key
    where = "" if source is None else f"{source}: "
    kind, optional = setting_kind(key)
    if value is None:
        if optional:
            return
        raise BertnerError(f"{where}{name} cannot be empty")
    if not _has_kind(value, kind):
        raise BertnerError(f"{where}{name} must be {KIND_WORDS[kind]}, got {shown(value)}")
    if kind in ("int", "float") and not math.isfinite(value):
        raise BertnerError(f"{where}{name} must be a finite number, got {shown(value)}")
    limit = LIMITS.get(key)
    if limit is not None and not limit.accepts(value, kind == "int"):
        raise BertnerError(f"{where}{name} must be {limit.describe(value)}, got {shown(value)}")


def check_settings(**values: Any) -> None:
    """Check options that follow a training setting's rules, e.g. predict's --batch-size and --device."""
    for key, value in values.items():
        check_setting(key, value)


# The ranges of options that are not training settings: counts that would hang a command or mean nothing.
OPTION_LIMITS: dict[str, Limit] = {
    "resamples": Limit(low=100, high=100_000, note="bootstrap resamples; 10,000 is plenty"),
    "documents": Limit(low=0, high=1_000),
    "errors": Limit(low=0, high=len(ERROR_KINDS), note=f"there are {len(ERROR_KINDS)} kinds of error"),
    "trials": Limit(low=1, high=10_000, note="runs per searched combination"),
}


def check_options(**values: int) -> None:
    """Refuse a command option outside its range in `OPTION_LIMITS`, in one line (`--resamples must be ...`)."""
    for key, value in values.items():
        limit = OPTION_LIMITS[key]
        if not limit.accepts(value, whole=True):
            raise BertnerError(f"--{key} must be {limit.describe(value)}, got {value}")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping of settings (`parse_yaml`: a config file can never run code or blow up).

    The file is checked as every input is (`check_input_file`, `decode_utf8`): a folder, an unreadable
    file or one that is not UTF-8 is one line naming it.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise BertnerError(f"config file {path} does not exist")
    check_input_file(path)
    try:
        data = parse_yaml(decode_utf8(path)) or {}
    except YamlTooLarge as e:
        raise BertnerError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise BertnerError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    except ValueError as e:
        raise BertnerError(f"{path}: cannot read this YAML ({e})") from None
    if not isinstance(data, dict):
        raise BertnerError(f"{path}: expected a mapping of option: value")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def _number(where: str, key: str, value: Any, kind: str) -> int | float:
    """A YAML value as the setting's kind of number: 5e-5 (a string in YAML 1.1) and 2.0 for an int are fine."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BertnerError(f"{where}: {key} must be a number, got {shown(value)}")
    try:
        number = int(value) if kind == "int" and isinstance(value, str) and value.strip().lstrip("+-").isdigit() else float(value)
    except ValueError:
        raise BertnerError(f"{where}: {key} must be a number, got {shown(value)}") from None
    if not math.isfinite(number):
        raise BertnerError(f"{where}: {key} must be a finite number, got {shown(value)}")
    if kind == "int":
        if number != int(number):
            raise BertnerError(f"{where}: {key} must be a whole number, got {shown(value)}")
        return int(number)
    return number


def coerce_setting(where: str, key: str, value: Any) -> Any:
    """Coerce what a YAML file gives to the setting's type, then check it (`check_setting`), or fail in one line."""
    kind, optional = setting_kind(key)
    if value is None:
        if optional:
            return None
        raise BertnerError(f"{where}: {key} cannot be empty")
    if kind == "bool":
        if not isinstance(value, bool):
            raise BertnerError(f"{where}: {key} must be true or false, got {shown(value)}")
    elif kind in ("int", "float"):
        value = _number(where, key, value, kind)
    elif kind == "str":
        if isinstance(value, (list, dict)):
            raise BertnerError(f"{where}: {key} must be a single value, got {shown(value)}")
        value = str(value)
    elif kind == "list":
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(item, (str, int, float)) and not isinstance(item, bool) for item in value):
            raise BertnerError(f"{where}: {key} must be a value or a list of values, got {shown(value)}")
        value = [str(item) for item in value] or None
    check_setting(key, value, where)
    return value


def build_config(file_values: dict[str, Any], flag_values: dict[str, Any], source: str = "config file") -> TrainConfig:
    """Defaults, then the config file (`source` names it in errors), then the flags the user actually gave."""
    known = config_keys()
    unknown = sorted(set(file_values) - known)
    if unknown:
        raise BertnerError(f"{source}: unknown option(s): {', '.join(unknown)}")
    checked = {k: coerce_setting(source, k, v) for k, v in file_values.items()}
    if checked.get("trust_remote_code") and not flag_values.get("trust_remote_code"):
        # A file travels (a run's config.yaml, a grid from elsewhere): letting code run is the user's own act.
        raise BertnerError(f"{source}: trust_remote_code: true is not taken from a file; only the --trust-remote-code "
                           "flag on the command line lets a --model folder run its own code")
    merged = {**checked, **{k: v for k, v in flag_values.items() if v is not None}}
    config = TrainConfig(**merged)
    config.validate()
    return config


def save_config(config: TrainConfig, path: str | Path) -> None:
    write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True))
