"""Data-parallel helpers that are no-ops in a single process.

``torchrun --nproc_per_node N -m raddino_lib.cli pretrain ...`` sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK`` and ``MASTER_ADDR/PORT``; :func:`init_distributed` then joins the process group
(NCCL on CUDA, gloo on CPU). Every collective below is guarded by ``dist.is_initialized()`` so
the same training code runs unchanged in one process.

Gradients are averaged with one coalesced ``all_reduce`` after ``backward`` (instead of wrapping
the student in ``DistributedDataParallel``): the student runs several forwards per step (global
crops, local crops) and its last layer is frozen for a while, both awkward for DDP's hooks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0  # this process's index among all processes
    world_size: int = 1  # number of processes
    local_rank: int = 0  # index on this machine (selects the GPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str = "cpu") -> DistInfo:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1); otherwise do nothing."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (in place; returns ``x``)."""
    if dist.is_initialized():
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Average ``.grad`` over processes with one flattened all_reduce (params without grad skipped)."""
    if not dist.is_initialized():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])  # (sum of numels,)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()
