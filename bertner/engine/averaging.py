"""`train --swa SHARE`: the mean of the weights over the last SHARE of training (stochastic weight averaging).

Averaging the weights a run passes through late in training lands nearer the middle of a wide
optimum than any one of them (Izmailov et al., 2018); it costs one add per parameter per step. The
trainer scores the average on dev once training ends and keeps it only where it beats the best
checkpoint, so a run with `--swa` is never worse on dev than the same run without it.

The mean is uniform over the steps averaged, updated after each optimiser step. Buffers (none in
bertner's models but a transformer's position ids) are not averaged: the model's own are kept.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator

import torch
from torch import nn


class WeightAverage:
    """A running mean of a model's parameters, kept in fp32 on the model's device."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        self.mean: list[torch.Tensor] | None = None  # allocated at the first update
        self.count = 0

    def _parameters(self) -> list[torch.Tensor]:
        params = dict(self.model.named_parameters())
        return [params[name].detach() for name in self.names]

    @torch.no_grad()
    def update(self) -> None:
        """Add the model's current weights to the mean."""
        current = self._parameters()
        if self.mean is None:
            self.mean = [p.float().clone() for p in current]
        else:
            # mean += (p - mean) / (count + 1): no running sum to lose precision in
            weight = 1.0 / (self.count + 1)
            for m, p in zip(self.mean, current):
                m.lerp_(p.float(), weight)
        self.count += 1

    @contextmanager
    @torch.no_grad()
    def swapped_in(self) -> Iterator[None]:
        """The model holds the mean inside the block and its own weights again after it."""
        if self.mean is None:
            raise RuntimeError("no weights averaged yet")
        current = self._parameters()
        own = [p.clone() for p in current]
        for p, m in zip(current, self.mean):
            p.copy_(m)
        try:
            yield
        finally:
            for p, o in zip(current, own):
                p.copy_(o)

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps, so a resumed run continues the same mean."""
        return {"count": self.count, "mean": [m.cpu() for m in self.mean] if self.mean is not None else []}

    def load_state(self, state: dict[str, Any]) -> None:
        mean = state.get("mean") or []
        if mean and len(mean) != len(self.names):
            raise RuntimeError(f"the checkpoint averages {len(mean)} tensors, the model has {len(self.names)}")
        device = self._parameters()[0].device if self.names else torch.device("cpu")
        self.mean = [m.to(device) for m in mean] if mean else None
        self.count = int(state.get("count", 0)) if mean else 0
