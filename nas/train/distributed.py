"""The process group, as far as the engine needs it: who am I, and sum this across ranks.

Initialised from torchrun's environment variables when WORLD_SIZE > 1 (gloo on CPU, NCCL on
GPUs); a single process needs no process group at all, so every helper degrades to a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main rank writes files and prints."""
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        return torch.device("cuda", self.local_rank) if torch.cuda.is_available() else torch.device("cpu")

    @classmethod
    def from_env(cls) -> DistEnv:
        """Join the process group torchrun describes (RANK, WORLD_SIZE, MASTER_ADDR, ...), if any."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        env = cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
        if not dist.is_initialized():
            if torch.cuda.is_available():
                torch.cuda.set_device(env.local_rank)
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return env

    def sum(self, *values: float) -> list[float]:
        """Element-wise sum of a few numbers over all ranks (float64, so counts stay exact)."""
        t = torch.tensor(values, dtype=torch.float64)
        if self.world_size > 1:
            t = t.to(self.device)
            dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank."""
        if self.world_size == 1:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """The main rank's `obj` on every rank."""
        if self.world_size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier()

    def close(self) -> None:
        """Leave the process group (end of a torchrun job)."""
        if self.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
