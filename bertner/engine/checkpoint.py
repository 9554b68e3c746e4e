"""Resumable checkpoints: weights as safetensors, optimiser and loop state with weights_only loading.

Everything is written to temporary names first and renamed, so a crash mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import nn

from bertner.errors import RunError
from bertner.fileio import atomic_path

CHECKPOINT_DIR = "checkpoint"


def save_weights(model: nn.Module, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_model(model, str(tmp))


def load_weights(model: nn.Module, path: Path) -> None:
    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: cannot read weights ({e})") from None
    if missing or unexpected:
        raise RunError(
            f"{path}: weights do not fit the model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(run_dir: Path, model: nn.Module, trainer_state: dict[str, Any]) -> None:
    """Write model weights and `trainer_state` (optimiser, scheduler, scaler, loop position, RNG)."""
    folder = run_dir / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    with atomic_path(folder / "trainer_state.pt") as tmp:
        torch.save({**trainer_state, "rng": rng_state()}, tmp)


def load_checkpoint(run_dir: Path, model: nn.Module) -> dict[str, Any]:
    folder = run_dir / CHECKPOINT_DIR
    if not (folder / "trainer_state.pt").exists():
        raise RunError(f"{run_dir} has no checkpoint to resume from (no {CHECKPOINT_DIR}/trainer_state.pt)")
    load_weights(model, folder / "model.safetensors")
    try:
        # weights_only: a checkpoint from someone else can never run code when loaded.
        state = torch.load(folder / "trainer_state.pt", map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunError(f"{folder / 'trainer_state.pt'}: cannot read checkpoint ({e})") from None
    return state
