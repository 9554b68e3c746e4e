"""Several processes, one run: PyTorch's DistributedDataParallel, started by `torchrun`.

`torchrun --nproc_per_node N -m bertner train ...` sets RANK, WORLD_SIZE and LOCAL_RANK; without
them everything here is a no-op, so the single-process path has no distributed code in it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """This process's place in a distributed run (rank, world size); one process when not distributed."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Only the main process writes files, logs and progress."""
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def shard(self, items: Sequence[T]) -> list[T]:
        """This process's share: every world-th item, starting at its rank."""
        return list(items[self.rank :: self.world])

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order, on every process."""
        if not self.enabled:
            return [obj]
        gathered: list[Any] = [None] * self.world
        dist.all_gather_object(gathered, obj)
        return gathered

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when any process says True (e.g. a stop signal reached one)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


    @classmethod
    def from_environment(cls) -> Dist:
        """This process's place as torchrun's variables give it (no process group is started)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return cls()
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(device_name: str) -> Dist:
    place = Dist.from_environment()
    if not place.enabled:
        return place
    rank, world, local_rank = place.rank, place.world, place.local_rank
    use_cuda = torch.cuda.is_available() and device_name != "cpu"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Dist(rank, world, local_rank)


def close_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
