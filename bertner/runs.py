"""Run directories: what `train` writes and what `evaluate`, `predict`, `compare` read, offline.

A run directory holds:
  config.yaml        the fully resolved training settings
  labels.json        entity labels, the tag inventory and scheme
  encoder/           the encoder's config and tokenizer (no weights: they are in model.safetensors)
  model.safetensors  the best checkpoint's weights (by dev F1)
  metrics.jsonl      one line per evaluation
  summary.json       the headline numbers of the run
  tensorboard/       TensorBoard event files
  checkpoint/        the latest resumable state (removed when the run completes cleanly)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from bertner.config import TrainConfig
from bertner.errors import OutputExistsError, RunError

RUN_FORMAT = 1
REQUIRED_FILES = ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors", "summary.json")


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


def prepare_run_dir(path: Path, force: bool, resume: bool) -> None:
    """Create the run directory, refusing to mix a new run into another one."""
    if path.exists() and not path.is_dir():
        raise OutputExistsError(f"{path} exists and is not a folder")
    holds_run = path.exists() and any(
        (path / name).exists() for name in ("summary.json", "model.safetensors", "checkpoint", "metrics.jsonl")
    )
    if holds_run and not (force or resume):
        raise OutputExistsError(
            f"{path} already holds a run; pass --resume to continue it, --force to replace it, or choose another --output"
        )
    if force and not resume:
        for name in ("metrics.jsonl", "summary.json", "model.safetensors"):
            (path / name).unlink(missing_ok=True)
        for name in ("checkpoint", "tensorboard"):
            shutil.rmtree(path / name, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


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


def load_config(path: Path) -> TrainConfig:
    file = path / "config.yaml"
    try:
        values = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise RunError(f"{file} is missing") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise RunError(f"{file} is corrupt ({_one_line(e)})") from None
    if not isinstance(values, dict):
        raise RunError(f"{file} is corrupt (expected a mapping of settings, found {type(values).__name__})")
    known = {k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__}
    try:
        return TrainConfig(**known)
    except TypeError as e:
        raise RunError(f"{file} is corrupt ({e})") from None


def load_labels(path: Path) -> dict[str, Any]:
    """labels.json of a run: the entity labels and the tag inventory the model's outputs index."""
    file = path / "labels.json"
    info = read_json(file)
    for key in ("labels", "tags"):
        value = info.get(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise RunError(f"{file} is corrupt (no list of {key})")
    return info


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
        tags=tuple(label_info["tags"]), scheme=label_info.get("scheme", "BIO"),
    )
    model = Tagger(bundle.model, bundle.hidden_size, spec)
    load_weights(model, path / "model.safetensors")
    model.to(device).eval()
    return LoadedRun(
        path, config, label_info["labels"], label_info["tags"], label_info.get("scheme", "BIO"),
        model, bundle.aligner, read_json(path / "summary.json"), bundle.max_positions,
        label_info.get("data", {}),
    )
