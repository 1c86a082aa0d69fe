"""Multi-process training by plain ``torch.distributed``: who am I, set up, wait for the others.

``torchrun`` (or any launcher that sets ``RANK``/``WORLD_SIZE``) starts the processes; gloo on
CPU, NCCL on CUDA. A single process needs none of it (every call here is a no-op then).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

__all__ = ["DistInfo", "dist_info", "init_distributed", "barrier"]


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world)


def barrier(info: DistInfo) -> None:
    import torch.distributed as dist

    if info.world > 1 and dist.is_initialized():
        dist.barrier()
