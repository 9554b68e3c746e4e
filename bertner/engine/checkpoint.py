"""Resumable checkpoints: weights as safetensors, optimiser and loop state with weights_only loading.

Everything is written to temporary names first and renamed, so a crash mid-save leaves the
previous checkpoint intact.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from bertner.errors import RunError, one_line, shown
from bertner.fileio import atomic_path

CHECKPOINT_DIR = "checkpoint"


def _storage_key(tensor: torch.Tensor) -> tuple[Any, ...]:
    """Equal for two state-dict entries that are the same tensor under two names (tied weights)."""
    return (tensor.device, tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
            tensor.stride())


def save_weights(model: nn.Module, path: Path) -> None:
    """Each tensor copied to its own CPU storage, a tied one once.

    Not safetensors' save_model: on CUDA an LSTM's weights are views into one flat cuDNN buffer,
    which save_model refuses ("None is covering the entire storage").
    """
    seen: set[tuple[Any, ...]] = set()
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        key = _storage_key(tensor)
        if key not in seen:
            seen.add(key)
            tensors[name] = tensor.detach().to("cpu", copy=True).contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": "pt"})


def load_weights(model: nn.Module, path: Path) -> None:
    """Load safetensors weights into `model`; any mismatch is one line naming the first tensor that differs."""
    try:
        with safe_open(str(path), framework="pt") as weights:
            shapes = {name: list(weights.get_slice(name).get_shape()) for name in weights.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise RunError(f"{path}: cannot read weights ({one_line(e)})") from None
    state = model.state_dict()
    expected = {name: list(tensor.shape) for name, tensor in state.items()}
    differ = [name for name in shapes if name in expected and shapes[name] != expected[name]]
    if differ:
        name = differ[0]
        raise RunError(
            f"{path}: weights do not fit the model: {name} is {shapes[name]} in the file but {expected[name]} in the "
            f"model that the run's labels.json and encoder/config.json describe ({len(differ)} tensor(s) differ)"
        )
    try:
        tensors = load_file(str(path))
    except Exception as e:
        raise RunError(f"{path}: cannot read weights ({one_line(e)})") from None
    missing, unexpected = model.load_state_dict(tensors, strict=False)  # copies in place: cuDNN buffers stay
    missing = _untied(state, missing, loaded=tensors.keys())
    if missing or unexpected:
        raise RunError(
            f"{path}: weights do not fit the model (missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})"
        )


def _untied(state: dict[str, torch.Tensor], missing: list[str], loaded: Any) -> list[str]:
    """The `missing` names that are not tied to a loaded tensor (a tied one is saved under one name)."""
    loaded_keys = {_storage_key(state[name]) for name in loaded if name in state}
    return [name for name in missing if _storage_key(state[name]) not in loaded_keys]


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


def save_checkpoint(folder: Path, model: nn.Module, trainer_state: dict[str, Any]) -> None:
    """Write model weights and `trainer_state` (optimiser, scheduler, scaler, loop position, RNG) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(model, folder / "model.safetensors")
    with atomic_path(folder / "trainer_state.pt") as tmp:
        torch.save({**trainer_state, "rng": rng_state()}, tmp)


def load_checkpoint(folder: Path, model: nn.Module, run_dir: Path) -> dict[str, Any]:
    """The checked state in `folder` (the checkpoint of the run in `run_dir`), its weights loaded into `model`."""
    file = folder / "trainer_state.pt"
    if not file.exists():
        raise RunError(f"{run_dir} has no checkpoint to resume from (no {CHECKPOINT_DIR}/trainer_state.pt)")
    load_weights(model, folder / "model.safetensors")
    try:
        # weights_only: a checkpoint from someone else can never run code when loaded.
        state = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        refused = re.search(r"GLOBAL (\S+)", str(e))
        what = f" ({refused.group(1)})" if refused else ""
        # Never repeat torch's advice to turn weights_only off: that is the safety this refusal is.
        raise RunError(
            f"{file}: cannot read checkpoint: it holds Python objects{what} that bertner never writes, "
            "and loading them could run code; refused"
        ) from None
    except Exception as e:
        raise RunError(f"{file}: cannot read checkpoint ({one_line(e)})") from None
    check_trainer_state(state, file)
    return state


# The loop position a checkpoint holds: key -> its type (trainer.Trainer.state; older checkpoints may lack keys).
LOOP_TYPES: dict[str, tuple[type, ...]] = {
    "step": (int,), "epoch": (int,), "batch_in_epoch": (int,), "best_step": (int,), "evals_without_gain": (int,),
    "tokens": (int,), "best_f1": (float, int), "train_seconds": (float, int), "budget_seconds": (float, int),
    "stopped_by": (str, type(None)), "best_record": (dict,),
}
STATE_PARTS = ("optimizer", "scheduler", "scaler", "loop", "rng")


def check_trainer_state(state: Any, file: Path) -> None:
    """The parts `save_checkpoint` writes, each of its type, so resuming never trips over an edited file."""
    if not isinstance(state, dict):
        raise RunError(f"{file}: cannot read checkpoint (expected a mapping of training state, found {type(state).__name__})")
    missing = [part for part in STATE_PARTS if not isinstance(state.get(part), dict)]
    if missing:
        raise RunError(f"{file}: cannot read checkpoint (no {', '.join(missing)} state in it)")
    for key, kinds in LOOP_TYPES.items():
        value = state["loop"].get(key)
        if key in state["loop"] and (not isinstance(value, kinds) or isinstance(value, bool)
                                     or (isinstance(value, int) and kinds == (int,) and value < 0)):
            raise RunError(f"{file}: cannot read checkpoint (loop.{key} is {shown(value)})")
    if not {"python", "torch"} <= set(state["rng"]):
        raise RunError(f"{file}: cannot read checkpoint (no random number generator state in it)")


def restore_state(folder: Path, state: dict[str, Any], optimizer: Any, scheduler: Any, scaler: Any) -> None:
    """Optimiser, scheduler, scaler and random state from a checked checkpoint; a misfit is one line."""
    try:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        problem = _optimizer_misfit(optimizer, scheduler)
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
        problem = one_line(e)
    if problem:
        file = folder / "trainer_state.pt"
        raise RunError(f"{file}: the checkpoint does not fit this run ({problem})")


def _optimizer_misfit(optimizer: Any, scheduler: Any) -> str | None:
    """What load_state_dict lets through but the next step would trip over: moment shapes, the schedule's position."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    return f"optimizer {name} has shape {list(value.shape)} for a parameter of shape {list(param.shape)}"
    if not isinstance(scheduler.last_epoch, int) or isinstance(scheduler.last_epoch, bool) or scheduler.last_epoch < 0:
        return f"scheduler position {scheduler.last_epoch!r}"
    return None
