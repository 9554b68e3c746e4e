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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml

from bertner.config import TrainConfig
from bertner.errors import OutputExistsError, RunError

RUN_FORMAT = 1
REQUIRED_FILES = ("config.yaml", "labels.json", "encoder/config.json", "model.safetensors", "summary.json")


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunError(f"{path} is corrupt ({e})") from None


def is_run_dir(path: Path) -> bool:
    return (path / "summary.json").exists() and (path / "config.yaml").exists()


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
        import shutil

        for name in ("checkpoint", "tensorboard"):
            shutil.rmtree(path / name, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)


def check_run_dir(path: Path) -> None:
    if not path.is_dir():
        raise RunError(f"{path} is not a run directory (no such folder)")
    missing = [name for name in REQUIRED_FILES if not (path / name).exists()]
    if missing:
        raise RunError(f"{path} is not a complete run directory: missing {', '.join(missing)}")
    summary = read_json(path / "summary.json")
    if summary.get("format", RUN_FORMAT) > RUN_FORMAT:
        raise RunError(
            f"{path} was written by a newer bertner (run format {summary['format']}, this one reads {RUN_FORMAT}); upgrade bertner"
        )


def load_config(path: Path) -> TrainConfig:
    try:
        values = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8")) or {}
        known = {k: v for k, v in values.items() if k in TrainConfig.__dataclass_fields__}
        return TrainConfig(**known)
    except (yaml.YAMLError, TypeError, AttributeError) as e:
        raise RunError(f"{path / 'config.yaml'} is corrupt ({e})") from None


@dataclass
class LoadedRun:
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


def load_run(path: str | Path, device: torch.device | str = "cpu") -> LoadedRun:
    """Rebuild a trained tagger from its run directory: no network, no original data."""
    from bertner.engine.checkpoint import load_weights
    from bertner.models.encoder import encoder_from_folder
    from bertner.models.tagger import HeadSpec, Tagger

    path = Path(path)
    check_run_dir(path)
    config = load_config(path)
    label_info = read_json(path / "labels.json")
    bundle = encoder_from_folder(path / "encoder")
    spec = HeadSpec(
        num_tags=len(label_info["tags"]), crf=config.crf, gru=config.gru, gru_hidden=config.gru_hidden,
        gru_layers=config.gru_layers, gru_bidirectional=config.gru_bidirectional, dropout=config.dropout,
    )
    model = Tagger(bundle.model, bundle.hidden_size, spec)
    load_weights(model, path / "model.safetensors")
    model.to(device).eval()
    return LoadedRun(
        path, config, label_info["labels"], label_info["tags"], label_info.get("scheme", "BIO"),
        model, bundle.aligner, read_json(path / "summary.json"), bundle.max_positions,
        label_info.get("data", {}),
    )
