"""Run directories: what `train` writes and what `evaluate`, `predict`, `compare` read, offline.

A run directory holds:
  config.yaml        the fully resolved training settings
  labels.json        entity labels, the tag inventory and scheme, and under `data` how the
                     training data was made (the fields of the data folder's labels.json)
  data_fingerprint.json  the train and dev files the run saw: SHA-256 and document ids
  encoder/           the encoder's config and tokenizer (no weights: they are in model.safetensors)
  model.safetensors  the best checkpoint's weights (by dev F1)
  metrics.jsonl      one line per evaluation
  dev_predictions.jsonl  the best checkpoint's dev predictions, one line per window (bertner.dev_predictions)
  summary.json       the headline numbers of the run
  tensorboard/       TensorBoard event files
  checkpoint/        the latest resumable state (removed when the run completes cleanly)
  .bertner.lock      while a trainer writes into the folder (bertner.lock)

Every file is checked as it is read (types, ranges, consistency): an edited or broken run is one
RunError naming the file, never a traceback or a silently wrong model.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
import yaml

from bertner.config import TrainConfig, coerce_setting
from bertner.errors import BertnerError, OutputExistsError, RunError
from bertner.lock import FolderLock

RUN_FORMAT = 1
REQUIRED_FILES = ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors", "summary.json")
FINGERPRINT_FILE = "data_fingerprint.json"
# What `bertner preprocess` writes besides labels.json: a folder holding any of them is data, not a run.
PREPROCESSED_FILES = ("train.jsonl", "dev.jsonl", "test.jsonl", "stats.json")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a run directory (every JSON file there holds one); RunError otherwise."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e})") from None
    except OSError as e:
        raise RunError(f"{path} cannot be read ({e.strerror or e})") from None
    if not isinstance(value, dict):
        raise RunError(f"{path} is corrupt (expected a JSON object, found {type(value).__name__})")
    return value


def _one_line(error: Exception) -> str:
    """A YAML error as one line: what went wrong and where."""
    problem = getattr(error, "problem", None)
    mark = getattr(error, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return " ".join(str(error).split())


def is_run_dir(path: Path) -> bool:
    return (path / "summary.json").exists() and (path / "config.yaml").exists()


RUN_MARKERS = ("summary.json", "model.safetensors", "encoder/config.json", "checkpoint/trainer_state.pt")


def looks_like_run(path: Path) -> bool:
    """A folder `train` wrote, complete or not (so an incomplete run is reported, not read as input)."""
    if not path.is_dir():
        return False
    return any((path / name).exists() for name in RUN_MARKERS) or all((path / n).exists() for n in ("config.yaml", "labels.json"))


def prepare_run_dir(path: Path, force: bool, resume: bool) -> FolderLock:
    """Create the run directory and lock it for this trainer, refusing to mix a new run into another one.

    The lock is taken before anything in the folder is looked at or removed, so a second trainer
    on the same folder stops with one line naming the first one's PID and changes nothing.
    """
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    data_files = [name for name in PREPROCESSED_FILES if (path / name).exists()]
    if data_files:
        raise OutputExistsError(
            f"{path} holds preprocessed data ({', '.join(data_files)}); a run needs a folder of its own: choose another --output"
        )
    created = not path.exists()
    path.mkdir(parents=True, exist_ok=True)
    try:
        lock = FolderLock.acquire(path, "training a run")
    except BertnerError:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        raise
    try:
        refuse_links(path)
        holds_run = any(
            (path / name).exists() for name in ("summary.json", "model.safetensors", "checkpoint", "metrics.jsonl")
        )
        if holds_run and not (force or resume):
            raise OutputExistsError(
                f"{path} already holds a run; pass --resume to continue it, --force to replace it, or choose another --output"
            )
        if force and not resume:
            for name in ("metrics.jsonl", "summary.json", "model.safetensors", FINGERPRINT_FILE, "dev_predictions.jsonl"):
                (path / name).unlink(missing_ok=True)
            for name in ("checkpoint", "tensorboard"):
                shutil.rmtree(path / name, ignore_errors=True)
    except BaseException:
        lock.release()
        raise
    return lock


def refuse_links(path: Path) -> None:
    """A run directory holds its own files: through a symbolic link in it, training would write elsewhere."""
    for root, folders, files in os.walk(path):
        for name in (*folders, *files):
            if (Path(root) / name).is_symlink():
                raise RunError(
                    f"{Path(root) / name} is a symbolic link; a run directory must hold its own files "
                    "(training would write through it): remove the link"
                )


def check_run_dir(path: Path) -> None:
    if not path.is_dir():
        reason = "not a folder" if path.exists() else "no such folder"
        raise RunError(f"{path} is not a run directory ({reason})")
    missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
    if missing:
        unfinished = (path / "checkpoint").is_dir() and "summary.json" in missing
        hint = f"; training did not finish: bertner train --output {path} --resume" if unfinished else ""
        raise RunError(f"{path} is not a complete run directory: missing {', '.join(missing)}{hint}")
    summary = read_json(path / "summary.json")
    run_format = summary.get("format", RUN_FORMAT)
    if not isinstance(run_format, int) or isinstance(run_format, bool):
        raise RunError(f"{path / 'summary.json'} is corrupt (format {run_format!r} is not a number)")
    if run_format > RUN_FORMAT:
        raise RunError(
            f"{path} was written by a newer bertner (run format {summary['format']}, this one reads {RUN_FORMAT}); upgrade bertner"
        )


def read_config_values(path: Path) -> dict[str, Any]:
    """The settings in a run's config.yaml, coerced and checked exactly as a YAML config file's are."""
    file = path / "config.yaml"
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RunError(f"{file} is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunError(f"{file} is corrupt ({_one_line(e)})") from None
    except OSError as e:
        raise RunError(f"{file} cannot be read ({e.strerror or e})") from None
    if not isinstance(values, dict):
        raise RunError(f"{file} is corrupt (expected a mapping of settings, found {type(values).__name__})")
    try:
        # Keys of older versions that no setting has any more are ignored, as a config file's are not.
        return {k: coerce_setting(str(file), k, v) for k, v in values.items() if k in TrainConfig.__dataclass_fields__}
    except BertnerError as e:
        raise RunError(str(e)) from None


def load_config(path: Path) -> TrainConfig:
    file = path / "config.yaml"
    config = TrainConfig(**read_config_values(path))
    try:
        config.validate(source=str(file))
    except BertnerError as e:
        raise RunError(str(e)) from None
    return config


def data_info_problem(info: Any) -> str | None:
    """What is wrong with a record of how data was made (discontinuous policy, max_chars, format), or None.

    The one schema of these fields, wherever they are: a data folder's labels.json (top level) or a
    run's labels.json (under `data`).
    """
    from bertner.data.policies import POLICIES

    if not isinstance(info, dict):
        return f"expected a mapping, found {type(info).__name__}"
    policy = info.get("discontinuous", "merge")
    if policy not in POLICIES:
        return f"discontinuous must be one of {', '.join(POLICIES)}, got {policy!r}"
    max_chars = info.get("max_chars")
    if max_chars is not None and (not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1):
        return f"max_chars must be a whole number of at least 1, got {max_chars!r}"
    for key in ("format", "source"):
        if info.get(key) is not None and not isinstance(info[key], str):
            return f"{key} must be text, got {info[key]!r}"
    return None


def load_labels(path: Path) -> dict[str, Any]:
    """labels.json of a run: the entity labels and the tag inventory the model's outputs index."""
    from bertner.tags import SCHEMES, label_set_to_tags

    file = path / "labels.json"
    info = read_json(file)
    for key in ("labels", "tags"):
        value = info.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise RunError(f"{file} is corrupt (no list of {key})")
    if len(set(info["labels"])) != len(info["labels"]):
        raise RunError(f"{file} is corrupt (a label is listed twice)")
    scheme = info.setdefault("scheme", "BIO")
    if scheme not in SCHEMES:
        raise RunError(f"{file} is corrupt (scheme must be one of {', '.join(SCHEMES)}, got {scheme!r})")
    if info["tags"] != label_set_to_tags(info["labels"], scheme):
        # The model's outputs are indexed by this list: any other order would mislabel silently.
        raise RunError(f"{file} is corrupt (its tags are not the {scheme} tags of its labels, in order)")
    info.setdefault("data", {})
    problem = data_info_problem(info["data"])
    if problem:
        raise RunError(f"{file} is corrupt (data: {problem})")
    return info


KIND_NAMES = {int: "a whole number", float: "a number", str: "text", bool: "true or false", dict: "a mapping"}
# summary.json field -> the type its value must have (None is always allowed: older runs lack fields).
SUMMARY_TYPES: dict[str, type] = {
    "format": int, "variant": str, "encoder": str, "alignment": str, "crf": bool, "gru": bool,
    "crf_lr_mult": float, "head_lr_mult": float, "lr": float, "seed": int, "epochs": int, "steps": int,
    "best_f1": float, "best_step": int, "best_precision": float, "best_recall": float, "best_per_type": dict,
    "train_seconds": float, "tokens_per_second": float, "device": str, "precision": str,
}


def _is_a(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_summary(summary: dict[str, Any], file: Path) -> dict[str, Any]:
    """summary.json with every known field of its type (RunError otherwise), so readers need no guards."""
    for key, kind in SUMMARY_TYPES.items():
        value = summary.get(key)
        if value is not None and not _is_a(value, kind):
            raise RunError(f"{file} is corrupt ({key} is {value!r}, not {KIND_NAMES[kind]})")
    for label, scores in (summary.get("best_per_type") or {}).items():
        if not isinstance(scores, dict) or not all(_is_a(v, float) for k, v in scores.items() if k in ("precision", "recall", "f1")):
            raise RunError(f"{file} is corrupt (best_per_type.{label} is not a mapping of scores)")
    return summary



# ----------------------------------------------------------------------------- what data the run saw

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


def load_fingerprint(path: Path) -> dict[str, Any] | None:
    """A run's data_fingerprint.json (None for runs made before it existed), checked."""
    file = path / FINGERPRINT_FILE
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
    summary: dict[str, Any]
    max_positions: int
    data_info: dict[str, Any]  # how the training data was made: discontinuous policy, max_chars


def load_run(path: str | Path, device: torch.device | str = "cpu", constrained: bool | None = None) -> LoadedRun:
    """Rebuild a trained tagger from its run directory: no network, no original data.

    `constrained` overrides the run's `constrained_decoding` (a decoding choice, not a weight).
    """
    from bertner.engine.checkpoint import load_weights
    from bertner.models.encoder import encoder_from_folder
    from bertner.models.tagger import HeadSpec, Tagger

    path = Path(path)
    check_run_dir(path)
    config = load_config(path)
    label_info = load_labels(path)
    bundle = encoder_from_folder(path / "encoder")
    spec = HeadSpec(
        num_tags=len(label_info["tags"]), crf=config.crf, gru=config.gru, gru_hidden=config.gru_hidden,
        gru_layers=config.gru_layers, gru_bidirectional=config.gru_bidirectional, dropout=config.dropout,
        constrained=config.constrained_decoding if constrained is None else constrained,
        tags=tuple(label_info["tags"]), scheme=label_info["scheme"],
    )
    model = Tagger(bundle.model, bundle.hidden_size, spec)
    load_weights(model, path / "model.safetensors")
    model.to(device).eval()
    return LoadedRun(
        path, config, label_info["labels"], label_info["tags"], label_info["scheme"],
        model, bundle.aligner, check_summary(read_json(path / "summary.json"), path / "summary.json"),
        bundle.max_positions, label_info["data"],
    )
