"""Run directories: the only code that reads or writes one.

`train` writes a run directory; `evaluate`, `predict`, `export`, `compare` and `sweep` read only it,
offline. A run directory holds:
  config.yaml        the fully resolved training settings
  labels.json        entity labels, the tag inventory and scheme, and under `data` how the
                     training data was made (the fields of the data folder's labels.json)
  data_fingerprint.json  the train and dev files the run saw: SHA-256 and document ids
  encoder/           the encoder's config and tokenizer (no weights: they are in model.safetensors)
  model.safetensors  the best checkpoint's weights (by dev F1)
  metrics.jsonl      one line per evaluation
  dev_predictions.jsonl  the best checkpoint's dev predictions, one line per window (bertner.dev_predictions)
  summary.json       the headline numbers of the run (`Summary`); written last, so it marks a finished run
  tensorboard/       TensorBoard event files
  checkpoint/        the latest resumable state (removed when the run completes cleanly)
  .bertner.lock      while a trainer writes into the folder (bertner.lock)

Every file is checked as it is read (types, ranges, consistency): an edited or broken run is one
RunError naming the file, never a traceback or a silently wrong model.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
import yaml
from torch import nn

from bertner.config import TrainConfig, coerce_setting, save_config
from bertner.data.labels import label_problem
from bertner.data.policies import POLICIES
from bertner.dev_predictions import DEV_PREDICTIONS, DevPrediction, dev_prediction_rows, read_dev_predictions
from bertner.engine import checkpoint
from bertner.errors import BertnerError, OutputError, OutputExistsError, RunError, shown
from bertner.fileio import append_text, parse_json, parse_yaml, write_json, write_jsonl, write_text
from bertner.lexicon import FILE_NAME as LEXICON_FILE
from bertner.lexicon import Lexicon, LexiconMatcher
from bertner.softword import FILE_NAME as SOFTWORD_FILE
from bertner.softword import Segmenter
from bertner.lock import FolderLock
from bertner.models.encoder import EncoderBundle, encoder_from_folder, save_encoder
from bertner.models.lexicon import LexiconEmbedding
from bertner.models.softword import SoftwordEmbedding
from bertner.models.tagger import Tagger, head_spec
from bertner.spans import Span, Window
from bertner.tags import SCHEMES, label_set_to_tags

log = logging.getLogger(__name__)

RUN_FORMAT = 1
REQUIRED_FILES = ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors", "summary.json")
FINGERPRINT_FILE = "data_fingerprint.json"
# What `bertner preprocess` writes besides labels.json: a folder holding any of them is data, not a run.
PREPROCESSED_FILES = ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json")
# Any of these: a folder `train` wrote into, finished or not.
RUN_MARKERS = ("summary.json", "model.safetensors", "encoder/config.json", "checkpoint/trainer_state.pt")
# Settings every run's config.yaml has held since the first format: without them it is not the run's own.
RUN_SETTINGS = ("model", "crf", "gru")
# What a run folder holds once training has written anything (compare lists such folders as incomplete).
TRAINING_FILES = ("config.yaml", "summary.json", "metrics.jsonl", "model.safetensors", "checkpoint")
# Files only `train` writes: a folder holding one is a run (an export or a model folder has model.safetensors too).
TRAIN_ONLY_FILES = ("encoder/bertner_encoder.json", FINGERPRINT_FILE, "checkpoint/trainer_state.pt")


def read_mapping(path: Path, parse: Any = parse_json, what: str = "a JSON object") -> dict[str, Any]:
    """A mapping from a file of a run directory (JSON by default; `parse` parse_yaml for config.yaml);
    RunError naming the file when it is missing, unreadable, corrupt, nested too deep or not a mapping."""
    try:
        value = parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (ValueError, yaml.YAMLError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise RunError(f"{path} is corrupt ({_yaml_one_line(e)})") from None
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e})") from None
    if value is None and parse is parse_yaml:
        raise RunError(f"{path} is empty (a run's config.yaml holds every setting it was trained with)")
    if not isinstance(value, dict):
        raise RunError(f"{path} is corrupt (expected {what}, found {type(value).__name__})")
    return value


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a run directory (every JSON file there holds one); RunError otherwise."""
    return read_mapping(path)


def _yaml_one_line(error: Exception) -> str:
    """A parse error as one line: what went wrong and where (YAML's mark, or the message as it is)."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


# ----------------------------------------------------------------------------- the summary

KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "a mapping"}
FRACTIONS = ("best_f1", "best_precision", "best_recall", "averaged_f1")  # summary fields that are shares, in [0, 1]


@dataclass
class Summary:
    """summary.json: the headline numbers of a finished run. Every field may be None in older runs."""

    format: int | None = RUN_FORMAT
    variant: str | None = None
    encoder: str | None = None
    alignment: str | None = None
    crf: bool | None = None
    gru: bool | None = None
    crf_lr_mult: float | None = None
    head_lr_mult: float | None = None
    lr: float | None = None
    seed: int | None = None
    epochs: int | None = None
    steps: int | None = None
    epochs_done: float | None = None
    time_budget_minutes: float | None = None
    budget_seconds_used: float | None = None
    stopped_by: str | None = None  # epochs, max_steps, time_budget, patience or pruned
    pruned: bool | None = None  # a search's pruner stopped it early (`stopped_by` pruned, at `steps`); None in older runs
    best_f1: float | None = None  # None: no dev set
    averaged_steps: int | None = None  # --swa: steps whose weights were averaged
    averaged_f1: float | None = None  # --swa: the average's dev F1
    averaged_kept: bool | None = None  # --swa: whether the average beat the best checkpoint (and is the run's weights)
    best_step: int | None = None
    best_precision: float | None = None
    best_recall: float | None = None
    best_per_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    train_seconds: float | None = None
    tokens_per_second: float | None = None
    mfu: float | None = None  # None on CPU or an unknown GPU
    parameters: int | None = None
    device: str | None = None
    precision: str | None = None
    train_windows: int | None = None
    dev_windows: int | None = None
    run_dir: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, values: dict[str, Any], file: Path) -> Summary:
        """A summary.json object, every known field checked for its type (RunError otherwise); unknown keys ignored."""
        kinds = {f.name: _field_kind(f.type) for f in dataclasses.fields(cls)}
        run_format = values.get("format")
        if run_format is not None and not _is_a(run_format, int):
            raise RunError(f"{file} is corrupt (format {shown(run_format)} is not a number)")
        for key, kind in kinds.items():
            value = values.get(key)
            if value is not None and not _is_a(value, kind):
                raise RunError(f"{file} is corrupt ({key} is {shown(value)}, not {KIND_NAMES[kind]})")
        for key in FRACTIONS:
            value = values.get(key)
            if value is not None and not 0 <= value <= 1:
                raise RunError(f"{file} is corrupt ({key} is {shown(value)}, not a fraction in [0, 1])")
        for label, scores in (values.get("best_per_type") or {}).items():
            if not isinstance(scores, dict) or not all(
                _is_a(v, float) and 0 <= v <= 1 for k, v in scores.items() if k in ("precision", "recall", "f1")
            ):
                raise RunError(f"{file} is corrupt (best_per_type.{label} is not a mapping of scores in [0, 1])")
        known = {k: v for k, v in values.items() if k in kinds}
        known["best_per_type"] = known.get("best_per_type") or {}
        return cls(**known)


def _field_kind(annotation: str) -> type:
    """`float | None` -> float: the type a summary field's value must have when it is not None."""
    name = annotation.split("[")[0].split("|")[0].strip()
    return {"int": int, "float": float, "str": str, "bool": bool, "dict": dict}[name]


def _is_a(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


# ----------------------------------------------------------------------------- the folder


class RunState(enum.Enum):
    """What a folder holds as a run: a finished one, one training left unfinished, or none."""

    COMPLETE = "complete"  # summary.json and config.yaml: training finished
    INCOMPLETE = "incomplete"  # training wrote into it but did not finish (crashed, stopped, still running)
    ABSENT = "absent"  # no run here (missing, empty or another kind of folder)


@dataclass
class LoadedRun:
    """A run directory loaded for use: its settings, labels, tagger (weights loaded) and aligner."""

    path: Path
    config: TrainConfig
    labels: list[str]
    tags: list[str]
    scheme: str
    model: torch.nn.Module
    aligner: Any
    summary: Summary
    max_positions: int
    data_info: dict[str, Any]  # how the training data was made: discontinuous policy, max_chars
    lexicon: LexiconMatcher | None = None  # the run's own lexicon (--lexicon), for its features
    segmenter: Segmenter | None = None  # jieba's segmentation (--softword), for its features


class RunDir:
    """One run directory: its paths, its state, and every read and write of its files."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.config_file = self.path / "config.yaml"
        self.labels_file = self.path / "labels.json"
        self.summary_file = self.path / "summary.json"
        self.metrics_file = self.path / "metrics.jsonl"
        self.weights_file = self.path / "model.safetensors"
        self.encoder_dir = self.path / "encoder"
        self.checkpoint_dir = self.path / checkpoint.CHECKPOINT_DIR
        self.tensorboard_dir = self.path / "tensorboard"
        self.fingerprint_file = self.path / FINGERPRINT_FILE
        self.dev_predictions_file = self.path / DEV_PREDICTIONS
        self.lexicon_file = self.path / LEXICON_FILE
        self.softword_file = self.path / SOFTWORD_FILE

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    # -- state ------------------------------------------------------------------------------
    def state(self) -> RunState:
        """COMPLETE once summary.json is written; INCOMPLETE where training left files but no summary."""
        if not self.path.is_dir():
            return RunState.ABSENT
        if self.summary_file.exists() and self.config_file.exists():
            return RunState.COMPLETE
        if any((self.path / name).exists() for name in (*RUN_MARKERS, *TRAINING_FILES)):
            return RunState.INCOMPLETE
        return RunState.ABSENT

    def is_complete(self) -> bool:
        return self.state() is RunState.COMPLETE

    def is_resumable(self) -> bool:
        """An unfinished run with a checkpoint and its settings: `train --resume` can go on with it."""
        return (not self.is_complete() and (self.checkpoint_dir / "trainer_state.pt").is_file()
                and self.config_file.is_file())

    def looks_like_run(self) -> bool:
        """A folder `train` wrote, complete or not (so an incomplete run is reported, not read as input)."""
        if not self.path.is_dir():
            return False
        return any((self.path / name).exists() for name in RUN_MARKERS) or (
            self.config_file.exists() and self.labels_file.exists()
        )

    def incomplete_reason(self) -> str:
        """Why a folder training wrote into is not a finished run, in a few words."""
        if not self.summary_file.exists():
            if self.checkpoint_dir.exists():
                return f"no summary.json: interrupted (continue with: bertner train --output {self.path} --resume)"
            return "no summary.json: crashed, stopped or still training"
        return "no config.yaml"

    # -- the lock and the folder before training ---------------------------------------------
    def prepare(self, force: bool, resume: bool, lock: FolderLock | None = None) -> FolderLock:
        """Create the folder and lock it for this trainer, refusing to mix a new run into another one.

        The lock is taken before anything in the folder is looked at or removed, so a second trainer
        on the same folder stops with one line naming the first one's PID and changes nothing.
        `lock`: the folder's lock, already taken by the caller (a sweep worker decides under it whether
        the run is new, to resume or already finished); it is returned as the trainer's.
        """
        if lock is None:
            lock = self._create_and_lock()
        elif not (lock.held and lock.folder == self.path):
            raise ValueError(f"{lock.folder} is not a held lock on {self.path}")
        try:
            self._make_room(force, resume)
        except BaseException:
            lock.release()
            raise
        return lock

    def _create_and_lock(self) -> FolderLock:
        """The run folder made if missing and locked (a folder made here goes again if the lock is refused)."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise OutputExistsError(f"{path} exists and is not a folder")
        data_files = [name for name in PREPROCESSED_FILES if (path / name).exists()]
        if data_files:
            raise OutputExistsError(
                f"{path} holds preprocessed data ({', '.join(data_files)}); a run needs a folder of its own: choose another --output"
            )
        created = not path.exists()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a parent that is a file, or not writable after all
            raise OutputError(f"cannot create the run directory {path}: {e.strerror or e}") from None
        try:
            return FolderLock.acquire(path, "training a run")
        except BertnerError:
            if created:
                shutil.rmtree(path, ignore_errors=True)
            raise

    def _make_room(self, force: bool, resume: bool) -> None:
        self.refuse_links()
        holds_run = any((self.path / name).exists() for name in ("summary.json", "model.safetensors", "checkpoint", "metrics.jsonl"))
        if holds_run and not (force or resume):
            raise OutputExistsError(
                f"{self.path} already holds a run; pass --resume to continue it, --force to replace it, or choose another --output"
            )
        if force and not resume:
            for file in (self.metrics_file, self.summary_file, self.weights_file, self.fingerprint_file,
                         self.dev_predictions_file):
                file.unlink(missing_ok=True)
            for folder in (self.checkpoint_dir, self.tensorboard_dir):
                shutil.rmtree(folder, ignore_errors=True)

    def refuse_links(self) -> None:
        """A run directory holds its own files: through a symbolic link in it, training would write elsewhere."""
        for root, folders, files in os.walk(self.path):
            for name in (*folders, *files):
                if (Path(root) / name).is_symlink():
                    raise RunError(
                        f"{Path(root) / name} is a symbolic link; a run directory must hold its own files "
                        "(training would write through it): remove the link"
                    )

    def check(self) -> None:
        """A complete run of a format this bertner reads; RunError naming what is missing otherwise."""
        path = self.path
        if not path.is_dir():
            reason = "not a folder" if path.exists() else "no such folder"
            raise RunError(f"{path} is not a run directory ({reason})")
        missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
        if missing:
            unfinished = self.checkpoint_dir.is_dir() and "summary.json" in missing
            hint = f"; training did not finish: bertner train --output {path} --resume" if unfinished else ""
            raise RunError(f"{path} is not a complete run directory: missing {', '.join(missing)}{hint}")
        self.read_summary()

    # -- settings ----------------------------------------------------------------------------
    def read_config_values(self) -> dict[str, Any]:
        """The settings in config.yaml, coerced and checked exactly as a YAML config file's are."""
        file = self.config_file
        values = read_mapping(file, parse_yaml, "a mapping of settings")
        missing = [key for key in RUN_SETTINGS if key not in values]
        if missing:
            raise RunError(f"{file} is incomplete (no {', '.join(missing)}; a run's config.yaml holds every setting "
                           "it was trained with)")
        try:
            # Keys of older versions that no setting has any more are ignored, as a config file's are not.
            return {k: coerce_setting(str(file), k, v) for k, v in values.items() if k in TrainConfig.__dataclass_fields__}
        except BertnerError as e:
            raise RunError(str(e)) from None

    def load_config(self) -> TrainConfig:
        config = TrainConfig(**self.read_config_values())
        try:
            config.validate(source=str(self.config_file))
        except BertnerError as e:
            raise RunError(str(e)) from None
        return config

    def write_config(self, config: TrainConfig) -> None:
        save_config(config, self.config_file)

    # -- labels ------------------------------------------------------------------------------
    def write_labels(self, labels: list[str], tags: list[str], scheme: str, data_info: dict[str, Any]) -> None:
        write_json(self.labels_file, {"labels": labels, "tags": tags, "scheme": scheme, "data": data_info})

    def load_labels(self) -> dict[str, Any]:
        """labels.json: the entity labels and the tag inventory the model's outputs index."""
        file = self.labels_file
        info = read_json(file)
        for key in ("labels", "tags"):
            value = info.get(key)
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise RunError(f"{file} is corrupt (no list of {key})")
        problem = next((p for p in map(label_problem, info["labels"]) if p), None)
        if problem:
            raise RunError(f"{file} is corrupt (label {problem})")
        if len(set(info["labels"])) != len(info["labels"]):
            raise RunError(f"{file} is corrupt (a label is listed twice)")
        scheme = info.setdefault("scheme", "BIO")
        if scheme not in SCHEMES:
            raise RunError(f"{file} is corrupt (scheme must be one of {', '.join(SCHEMES)}, got {shown(scheme)})")
        if info["tags"] != label_set_to_tags(info["labels"], scheme):
            # The model's outputs are indexed by this list: any other order would mislabel silently.
            raise RunError(f"{file} is corrupt (its tags are not the {scheme} tags of its labels, in order)")
        info.setdefault("data", {})
        problem = data_info_problem(info["data"])
        if problem:
            raise RunError(f"{file} is corrupt (data: {problem})")
        return info

    # -- results -----------------------------------------------------------------------------
    def read_summary(self) -> Summary:
        summary = Summary.from_json(read_json(self.summary_file), self.summary_file)
        if summary.format is not None and summary.format > RUN_FORMAT:
            raise RunError(
                f"{self.path} was written by a newer bertner (run format {summary.format}, this one reads {RUN_FORMAT}); upgrade bertner"
            )
        return summary

    def write_summary(self, summary: Summary) -> None:
        write_json(self.summary_file, summary.to_json())

    def start_metrics(self) -> None:
        write_text(self.metrics_file, "")

    def append_metrics(self, record: dict[str, Any]) -> None:
        append_text(self.metrics_file, json.dumps(record, ensure_ascii=False) + "\n")

    def read_curve(self) -> list[tuple[int, float]]:
        """(step, dev micro F1) per evaluation in metrics.jsonl; a line cut short by a crash is skipped."""
        curve = []
        try:
            lines = self.metrics_file.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            return []
        for line in lines:
            try:
                row = parse_json(line)
                step, f1 = int(row["step"]), float(row["micro"]["f1"])
            except (KeyError, TypeError, ValueError):
                continue
            if 0 <= f1 <= 1:  # an edited or foreign value is left out of the curve, as a cut line is
                curve.append((step, f1))
        return curve

    def write_dev_predictions(self, windows: Sequence[Window], predicted: Sequence[Sequence[Span]]) -> None:
        """The best checkpoint's dev predictions (`bertner.dev_predictions`), written atomically."""
        write_jsonl(self.dev_predictions_file, dev_prediction_rows(windows, predicted))

    def read_dev_predictions(self) -> list[DevPrediction] | None:
        """The best checkpoint's dev predictions; None for a run written before they were kept."""
        return read_dev_predictions(self.dev_predictions_file)

    # -- weights, encoder, checkpoints -------------------------------------------------------
    def save_best_weights(self, model: nn.Module) -> None:
        checkpoint.save_weights(model, self.weights_file)

    def has_weights(self) -> bool:
        return self.weights_file.exists()

    def save_encoder(self, bundle: EncoderBundle) -> None:
        save_encoder(bundle, self.encoder_dir)

    def load_encoder(self) -> EncoderBundle:
        """The saved encoder, built by transformers' own classes: a run never brings code that runs (no auto_map)."""
        return encoder_from_folder(self.encoder_dir)

    def saved_encoder_meta(self) -> dict[str, Any] | None:
        """encoder/bertner_encoder.json as it is (None when absent or unreadable): compare names old runs by it."""
        try:
            meta = parse_json((self.encoder_dir / "bertner_encoder.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def save_lexicon(self, lexicon: Lexicon) -> None:
        lexicon.save(self.lexicon_file)

    def load_lexicon(self, config: TrainConfig) -> Lexicon | None:
        """The run's own copy of its lexicon (None for a run without one): the source files are never read again."""
        if not config.lexicon:
            return None
        if not self.lexicon_file.is_file():
            raise RunError(f"{self.path} was trained with --lexicon but {LEXICON_FILE} is missing; copy the whole run folder")
        return Lexicon.load(self.lexicon_file)

    def save_softword(self, segmenter: Segmenter) -> None:
        """What segmented the training text: jieba's version (the dictionary comes with it)."""
        write_json(self.softword_file, {"segmenter": "jieba.cut, HMM=False", "jieba_version": segmenter.jieba_version})

    def check_softword(self, segmenter: Segmenter) -> None:
        """Warn when this jieba is not the one the run trained with: its dictionary may segment differently."""
        try:
            trained = read_json(self.softword_file).get("jieba_version")
        except BertnerError:
            trained = None
        if trained != segmenter.jieba_version:
            log.warning(f"{self.path} was trained with --softword segmented by jieba {trained or '(unknown version)'}; "
                        f"this is jieba {segmenter.jieba_version}, whose dictionary may segment some text differently")

    def save_checkpoint(self, model: nn.Module, trainer_state: dict[str, Any]) -> None:
        checkpoint.save_checkpoint(self.checkpoint_dir, model, trainer_state)

    def load_checkpoint(self, model: nn.Module) -> dict[str, Any]:
        return checkpoint.load_checkpoint(self.checkpoint_dir, model, self.path)

    def restore_checkpoint(self, state: dict[str, Any], optimizer: Any, scheduler: Any, scaler: Any) -> None:
        checkpoint.restore_state(self.checkpoint_dir, state, optimizer, scheduler, scaler)

    def remove_checkpoint(self) -> None:
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    # -- what data the run saw ---------------------------------------------------------------
    def write_fingerprint(self, record: dict[str, Any]) -> None:
        write_json(self.fingerprint_file, record)

    def load_fingerprint(self) -> dict[str, Any] | None:
        """data_fingerprint.json (None for runs made before it existed), checked."""
        file = self.fingerprint_file
        if not file.exists():
            return None
        record = read_json(file)
        for split in ("train", "dev"):
            part = record.get(split)
            if part is None and split == "dev":
                continue
            ok = (isinstance(part, dict) and isinstance(part.get("sha256"), str) and isinstance(part.get("documents"), list)
                  and all(isinstance(d, str) for d in part["documents"]))
            if not ok:
                raise RunError(f"{file} is corrupt ({split} needs sha256 and a list of document ids)")
        return record

    def trained_documents(self) -> set[str] | None:
        """The ids of the documents the run trained on; None for a run made before fingerprints."""
        fingerprint = self.load_fingerprint()
        return None if fingerprint is None else set(fingerprint["train"]["documents"])

    # -- the whole run, for use --------------------------------------------------------------
    def load(self, device: torch.device | str = "cpu", constrained: bool | None = None) -> LoadedRun:
        """Rebuild the trained tagger: no network, no original data.

        `constrained` overrides the run's `constrained_decoding` (a decoding choice, not a weight).
        """
        self.check()
        config = self.load_config()
        label_info = self.load_labels()
        bundle = self.load_encoder()
        lexicon = self.load_lexicon(config)
        segmenter = None
        if config.softword:
            segmenter = Segmenter(f"{self.path} was trained with --softword, which")
            self.check_softword(segmenter)
        spec = head_spec(config, label_info["tags"], label_info["scheme"], constrained=constrained)
        embedding = LexiconEmbedding(lexicon, config.lexicon_dim) if lexicon is not None else None
        try:
            model = Tagger(bundle.model, bundle.hidden_size, spec, embedding, SoftwordEmbedding() if segmenter else None)
        except ValueError as exc:  # the bilstm's extra inputs and the features' width disagree: edited files
            raise RunError(f"{self.path}: its lexicon or softword features do not fit its encoder ({exc})") from None
        checkpoint.load_weights(model, self.weights_file)
        model.to(device).eval()
        return LoadedRun(
            self.path, config, label_info["labels"], label_info["tags"], label_info["scheme"],
            model, bundle.aligner, self.read_summary(), bundle.max_positions, label_info["data"],
            LexiconMatcher(lexicon) if lexicon is not None else None, segmenter,
        )


def load_run(path: str | Path, device: torch.device | str = "cpu", constrained: bool | None = None) -> LoadedRun:
    """Rebuild a trained tagger from its run directory (`RunDir(path).load`)."""
    return RunDir(path).load(device, constrained)


def data_info_problem(info: Any) -> str | None:
    """What is wrong with a record of how data was made (discontinuous policy, max_chars, format), or None.

    The one schema of these fields, wherever they are: a data folder's labels.json (top level) or a
    run's labels.json (under `data`).
    """
    if not isinstance(info, dict):
        return f"expected a mapping, found {type(info).__name__}"
    policy = info.get("discontinuous", "merge")
    if policy not in POLICIES:
        return f"discontinuous must be one of {', '.join(POLICIES)}, got {shown(policy)}"
    max_chars = info.get("max_chars")
    if max_chars is not None and (not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1):
        return f"max_chars must be a whole number of at least 1, got {shown(max_chars)}"
    for key in ("format", "source"):
        if info.get(key) is not None and not isinstance(info[key], str):
            return f"{key} must be text, got {shown(info[key])}"
    return None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_fingerprint(path: Path, documents: Sequence[str]) -> dict[str, Any]:
    """What identifies one split a run saw: the file, its SHA-256 and its document ids."""
    ids = sorted(set(documents))
    return {"file": str(path), "sha256": file_sha256(path), "documents": ids}


def find_runs(root: Path) -> tuple[list[RunDir], list[RunDir]]:
    """Every finished run under `root` (root itself included), and the folders training left unfinished.

    Neither kind is searched further: a run's own folders (encoder/, checkpoint/) never hold runs.
    """
    complete: list[RunDir] = []
    incomplete: list[RunDir] = []
    for folder, subdirs, _ in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        run = RunDir(folder)
        state = run.state()
        if state is not RunState.ABSENT:
            (complete if state is RunState.COMPLETE else incomplete).append(run)
            subdirs[:] = []
    return complete, incomplete


def best_run(runs_dir: Path) -> Path:
    """The run under `runs_dir` with the best dev F1."""
    if not runs_dir.is_dir():
        raise RunError(f"no run given and no {runs_dir}/ folder here; pass a run directory first: bertner predict RUN FILE")
    candidates = []
    found, _ = find_runs(runs_dir)  # the runs `bertner compare` lists
    for run in found:
        try:
            f1 = run.read_summary().best_f1
        except RunError as e:
            log.warning(f"{e}; skipped")
            continue
        candidates.append((-1.0 if f1 is None else f1, str(run.path)))
    if not candidates:
        raise RunError(f"no trained runs under {runs_dir}/; train one with `bertner train` or pass a run directory")
    return Path(max(candidates)[1])


# ----------------------------------------------------------------------------- where an output may go

def is_run_folder(folder: Path) -> bool:
    """A folder `train` wrote into, finished or not (a data folder, an export or a model folder is not one)."""
    if any((folder / name).exists() for name in TRAIN_ONLY_FILES):
        return True
    return (folder / "config.yaml").exists() and ((folder / "labels.json").exists() or (folder / "summary.json").exists())


def check_output_place(output: str | Path, inputs: Iterable[str | Path] = (), may_be_run: bool = False,
                       may_hold_runs: bool = False) -> None:
    """OutputError unless `output` is clear of the command's `inputs` and of every run directory.

    Every command that writes calls this before any work: an output that is, holds or lies inside one
    of its inputs (a file or a folder), or that lies inside a run directory (or is or holds one) would
    replace or mix with what it reads or a run's files. Paths are compared as the file system sees
    them: links and `..` resolved, and the same file under another spelling (case, a hard link) found
    by its device and inode. `may_be_run`: train's own run directory; `may_hold_runs`: a sweep's folder.
    """
    output = Path(output)
    real = _resolved(output)
    here = _identity(real)
    above = [(folder, identity) for folder in real.parents if (identity := _identity(folder)) is not None]
    for given in inputs:
        source = _resolved(Path(given))
        identity = _identity(source)
        if identity is None:
            continue  # a missing input is the reading code's error to report
        if identity == here:
            raise OutputError(f"cannot write {output}: it is the input {given}; choose another output")
        if any(identity == folder_id for _, folder_id in above):
            raise OutputError(f"cannot write {output}: it lies inside the input {given}; choose an output outside it")
        if here is not None and any(_identity(folder) == here for folder in source.parents):
            raise OutputError(f"cannot write {output}: it holds the input {given}; choose another output")
    for folder, _ in above:
        if is_run_folder(folder):
            shown = os.path.relpath(folder) if folder.is_relative_to(Path.cwd().resolve()) else folder
            raise OutputError(f"cannot write {output}: it lies inside the run directory {shown}; choose an output outside it")
    if here is None or not real.is_dir():
        return
    if not may_be_run and is_run_folder(real):
        raise OutputError(f"cannot write {output}: it is a run directory; choose another output")
    if not may_hold_runs:
        for folder, _, _ in os.walk(real):
            if folder != str(real) and is_run_folder(Path(folder)):
                inner = output / Path(folder).relative_to(real)
                raise OutputError(f"cannot write {output}: it holds the run directory {inner}; choose another output")


def _resolved(path: Path) -> Path:
    """`path` with links and `..` resolved as far as it exists (the rest kept as written)."""
    try:
        return Path(os.path.realpath(path))
    except (OSError, ValueError):
        return Path(os.path.abspath(path))


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of what `path` names, links followed; None when nothing is there."""
    try:
        status = path.stat()
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino
