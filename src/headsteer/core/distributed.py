"""torch.distributed glue for runs under `torchrun` (nccl on GPU, gloo on CPU).

One process per device. Rank 0 writes every artifact; the others compute and wait at barriers.
Single-process runs (no WORLD_SIZE in the environment) never touch torch.distributed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


_INFO = DistInfo()


def init_from_env(device: str = "auto") -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op without it)."""
    global _INFO
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        _INFO = DistInfo()
        return _INFO
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
    _INFO = DistInfo(dist.get_rank(), dist.get_world_size(), local)
    return _INFO


def info() -> DistInfo:
    return _INFO


def barrier() -> None:
    if _INFO.enabled:
        dist.barrier()


def shutdown() -> None:
    if _INFO.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum_autograd(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks with gradient flowing back to every rank's contribution."""
    if not _INFO.enabled:
        return t
    import torch.distributed.nn.functional as dist_fn

    return dist_fn.all_reduce(t, op=dist.ReduceOp.SUM)


def ranks_identical(module: torch.nn.Module) -> bool:
    """True when every rank holds bitwise-identical parameters (compared through a checksum)."""
    if not _INFO.enabled:
        return True
    with torch.no_grad():
        flat = torch.cat([p.detach().double().flatten().cpu() for p in module.parameters()])
        stats = torch.stack([flat.sum(), (flat * torch.arange(flat.numel(), dtype=torch.float64)).sum()])
    if torch.cuda.is_available() and dist.get_backend() == "nccl":
        stats = stats.cuda()
    gathered = [torch.zeros_like(stats) for _ in range(_INFO.world_size)]
    dist.all_gather(gathered, stats)
    return all(torch.equal(g, gathered[0]) for g in gathered)
