"""Process groups under ``torchrun`` and the samplers that make batches independent of the process count.

``torchrun --nproc_per_node N -m uniformerv2 train ...`` sets RANK / WORLD_SIZE / LOCAL_RANK; ``setup()``
then joins the group (NCCL with one GPU per process, gloo on CPU). Without those variables everything
runs in one process and every helper here is a no-op.

Data order: every epoch is a permutation of the list drawn from ``(seed, epoch)`` alone, cut into global
batches; each global batch is cut into ``accum_steps`` micro-steps and each micro-step into one
contiguous slice per rank. A global batch therefore holds the same videos whatever the number of
processes (or DataLoader workers), and a resumed run starts at the next global batch of the epoch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import UserError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def setup(device: str = "auto") -> DistInfo:
    """Join the process group if launched by torchrun; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {device!r} asked for but CUDA is not available")
    if device == "cuda":
        dev = torch.device("cuda", local % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    else:
        try:
            dev = torch.device(device)
        except RuntimeError:
            raise UserError(f"{device!r} is not a device: auto, cpu, cuda, cuda:N, mps ...") from None
        if dev.type == "cuda":
            if (dev.index or 0) >= torch.cuda.device_count():
                raise UserError(f"device {device!r} asked for but there are {torch.cuda.device_count()} CUDA "
                                f"devices (cuda:0 ... cuda:{torch.cuda.device_count() - 1})")
            torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(rank, world, local, dev)


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _on() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_world() -> tuple[int, int]:
    """(rank, world size) of this process in the current group; (0, 1) outside torchrun."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over ranks, in place (returns ``t``)."""
    if _on():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` (just ``[obj]`` in one process)."""
    if not _on():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if _on():
        dist.barrier()


def epoch_permutation(n: int, seed: int, epoch: int, shuffle: bool = True) -> torch.Tensor:
    if not shuffle:
        return torch.arange(n)
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


class TrainSampler(torch.utils.data.Sampler):
    """Indices for one rank over the global batches ``start_batch..`` of an epoch (drop-last).

    Iterating yields ``micro_batch`` indices per micro-step, ``accum_steps`` micro-steps per global batch.
    """

    def __init__(self, n: int, global_batch: int, accum_steps: int, rank: int, world_size: int,
                 seed: int, shuffle: bool = True):
        if global_batch % (accum_steps * world_size):
            raise UserError(f"train.batch_size {global_batch} is not divisible by accum_steps x processes "
                            f"= {accum_steps} x {world_size}")
        self.n, self.global_batch, self.accum = n, global_batch, accum_steps
        self.rank, self.world, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.micro_batch = global_batch // (accum_steps * world_size)
        self.epoch, self.start_batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = int(epoch), int(start_batch)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start_batch) * self.accum * self.micro_batch

    def __iter__(self):
        perm = epoch_permutation(self.n, self.seed, self.epoch, self.shuffle).tolist()
        mb, step = self.micro_batch, self.micro_batch * self.world
        for b in range(self.start_batch, self.batches_per_epoch):
            batch = perm[b * self.global_batch:(b + 1) * self.global_batch]
            for a in range(self.accum):
                micro = batch[a * step:(a + 1) * step]
                yield from micro[self.rank * mb:(self.rank + 1) * mb]


class ShardSampler(torch.utils.data.Sampler):
    """Evaluation: rank r takes items r, r + N, r + 2N, ... -- every item exactly once over all ranks."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        self.indices = list(range(rank, n, world_size))

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self):
        return iter(self.indices)


def broadcast_state(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s parameters and buffers into every rank's ``module``."""
    if _on():
        for t in module.state_dict().values():
            dist.broadcast(t, src)
