"""Weight files: what cuDNN and tied parameters do to a state dict must not stop a save or a load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from bertner.engine.checkpoint import load_weights, save_weights
from bertner.errors import RunError


class FlatBuffer(nn.Module):
    """Two parameters that are views into one buffer, as cuDNN lays out an LSTM's weights on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        flat = torch.arange(12, dtype=torch.float32)
        self.first = nn.Parameter(flat[:4].view(2, 2))
        self.second = nn.Parameter(flat[4:].view(2, 4))
        assert self.first.untyped_storage().data_ptr() == self.second.untyped_storage().data_ptr()


class Tied(nn.Module):
    """One matrix under two names (an output layer tied to the embeddings)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(5, 3)
        self.out = nn.Linear(3, 5, bias=False)
        self.out.weight = self.embed.weight


def test_views_into_one_buffer_save_and_load_back(tmp_path: Path) -> None:
    saved = FlatBuffer()
    save_weights(saved, tmp_path / "w.safetensors")
    assert load_file(str(tmp_path / "w.safetensors"))["second"].tolist() == [[4, 5, 6, 7], [8, 9, 10, 11]]
    loaded = FlatBuffer()
    with torch.no_grad():
        loaded.first.zero_()
        loaded.second.zero_()
    load_weights(loaded, tmp_path / "w.safetensors")
    assert torch.equal(loaded.second, saved.second) and torch.equal(loaded.first, saved.first)
    # loaded in place: the parameters still share their buffer (cuDNN's flat weights stay valid)
    assert loaded.first.untyped_storage().data_ptr() == loaded.second.untyped_storage().data_ptr()


def test_tied_weights_are_saved_once_and_load_into_both_names(tmp_path: Path) -> None:
    saved = Tied()
    save_weights(saved, tmp_path / "w.safetensors")
    assert len(load_file(str(tmp_path / "w.safetensors"))) == 1
    loaded = Tied()
    load_weights(loaded, tmp_path / "w.safetensors")
    assert torch.equal(loaded.out.weight, saved.embed.weight) and loaded.out.weight is loaded.embed.weight


def test_a_missing_tensor_is_named(tmp_path: Path) -> None:
    save_weights(nn.Linear(2, 2, bias=False), tmp_path / "w.safetensors")
    with pytest.raises(RunError, match="missing \\['bias'\\]"):
        load_weights(nn.Linear(2, 2), tmp_path / "w.safetensors")
