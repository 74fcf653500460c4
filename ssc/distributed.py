"""Data-parallel training with torch.distributed: ``ssc train`` runs unchanged under
``torchrun --nproc_per_node N`` (DistributedDataParallel, gloo on CPU, NCCL on GPUs).

Everything here is a thin layer over PyTorch's own engine: the process group comes from torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), gradients are averaged by
:class:`~torch.nn.parallel.DistributedDataParallel`, and each rank's share of the data comes from
:class:`~torch.utils.data.distributed.DistributedSampler`. Under torchrun even one process runs this
way (DDP over a group of one), so a one-GPU torchrun run exercises the multi-GPU path. Without
torchrun (no ``RANK`` / ``WORLD_SIZE`` in the environment) every function is a no-op and training is
the plain single-process run.

The batch in a config is the *global* batch: each of N ranks draws ``batch / N`` samples, and the
union of the ranks' samples at a step is the single-process batch of that step (see
:class:`ShardedStream`), so a config trains the same model at any process count.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data.distributed import DistributedSampler


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"
    launched: bool = False  # started by torchrun (a process group exists, even of one process)

    @property
    def is_main(self) -> bool:
        """Rank 0 writes logs, checkpoints and exported weights."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Under torchrun: DDP, collectives and rank-0 duties apply (also with one process, so a
        one-GPU torchrun run exercises the same path as eight)."""
        return self.launched

    @property
    def device_type(self) -> str:
        """"cuda" or "cpu" (the device without its index, as model cards record it)."""
        return self.device.split(":")[0]

    def local_batch(self, batch: int) -> int:
        """This rank's share of the global ``batch``."""
        if batch % self.world_size:
            raise ValueError(f"batch {batch} does not split over {self.world_size} processes; "
                             f"use a batch that is a multiple of --nproc_per_node")
        return batch // self.world_size


def launched_rank() -> int | None:
    """This process's rank when torchrun started it (``RANK`` and ``WORLD_SIZE`` set), else None."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    return int(os.environ["RANK"])


def init_distributed() -> DistContext:
    """Join the process group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``), or run alone when those are absent. The device is ``cuda:LOCAL_RANK`` when CUDA
    is there (NCCL), else the CPU (gloo)."""
    cuda = torch.cuda.is_available()
    rank = launched_rank()
    if rank is None:
        return DistContext(device="cuda" if cuda else "cpu")
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return DistContext(rank, world, local, f"cuda:{local}" if cuda else "cpu", launched=True)


def wrap(model: torch.nn.Module, ctx: DistContext, find_unused: bool = False) -> torch.nn.Module:
    """``model`` under DistributedDataParallel when torchrun started the job, else itself."""
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [ctx.local_rank] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def mean_over_ranks(values: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """The mean of each logged metric over the ranks (a collective: every rank must call it)."""
    if not ctx.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                     device=ctx.device if ctx.device.startswith("cuda") else "cpu")
    dist.all_reduce(t)
    return {k: float(v) / ctx.world_size for k, v in zip(keys, t.tolist())}


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group (after the last collective)."""
    if ctx.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


class ShardedStream:
    """This rank's endless stream of dataset indices, epoch after epoch, from torch's
    :class:`DistributedSampler` (shuffled with ``seed + epoch``).

    ``take(step, n)`` gives the ``n`` (index, key) pairs of ``step``: positions ``step * n`` to
    ``(step + 1) * n`` of the stream. The key is the pair's position in the single-process stream
    (``world * position + rank``), so per-sample randomness seeded by it (crop, mask, quality level)
    is the same at any process count, and a resumed run continues exactly where it stopped. When the
    dataset size is a multiple of the process count, the ranks' indices at a step are exactly the
    single-process batch of that step."""

    def __init__(self, size: int, ctx: DistContext, seed: int) -> None:
        if size <= 0:
            raise ValueError("no training samples")
        self.ctx = ctx
        self.sampler = DistributedSampler(range(size), num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=seed)
        self.per_epoch = len(self.sampler)
        self._epoch, self._order = -1, []

    def _indices(self, epoch: int) -> list[int]:
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._epoch, self._order = epoch, list(self.sampler)
        return self._order

    def take(self, step: int, n: int) -> list[tuple[int, int]]:
        out = []
        for pos in range(step * n, (step + 1) * n):
            epoch, off = divmod(pos, self.per_epoch)
            out.append((self._indices(epoch)[off], self.ctx.world_size * pos + self.ctx.rank))
        return out
