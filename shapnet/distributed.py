"""The process group as :func:`shapnet.training.fit` sees it: one process, or ranks of a ``torchrun`` job.

:func:`~shapnet.training.fit` trains with ``torch.nn.parallel.DistributedDataParallel`` whenever a process
group with more than one rank is initialised (``torch.distributed.init_process_group``: gloo for CPU
tensors, NCCL for CUDA ones); :func:`init_from_env` sets one up from the variables ``torchrun`` exports.
Every rank holds the whole training set; a :class:`GlobalBatchSampler` gives each rank its share of every
global batch, so the global batches, and with them the trained parameters, do not depend on the number of
processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

__all__ = ["GlobalBatchSampler", "World", "init_from_env"]


@dataclass(frozen=True)
class World:
    """This process's rank among ``size`` training processes (``size == 1``: no process group)."""

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> World:
        """The initialised default process group, or a world of one."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes checkpoints and shows progress."""
        return self.rank == 0

    def check_device(self, device: torch.device) -> None:
        """Refuse a backend that cannot move tensors on ``device`` (NCCL needs CUDA)."""
        if self.distributed and device.type == "cpu" and dist.get_backend() == "nccl":
            raise ValueError(
                "the process group uses the NCCL backend, which needs CUDA tensors, but the model is on "
                "the CPU; init the process group with backend='gloo' for CPU training (or move the model "
                "to cuda:LOCAL_RANK)."
            )

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """``module`` under ``DistributedDataParallel`` (unchanged in a world of one); DDP copies rank 0's
        parameters and buffers to every rank when it is built."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        return DistributedDataParallel(module, device_ids=ids)

    def sum(self, values: Sequence[float], device: torch.device) -> list[float]:
        """``values`` summed over the ranks (float64), in order."""
        if not self.distributed:
            return [float(v) for v in values]
        tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


class GlobalBatchSampler(DistributedSampler):
    """This rank's indices of every global batch: ``batch[rank::size]`` (as ``DistributedSampler`` splits).

    ``DistributedSampler`` deals every rank a strided share of one padded permutation, so the global batch
    of a step depends on the number of ranks and the last samples repeat. Here the permutation is that of
    a single process (``torch.randperm(n, generator=shuffle)``, the generator shared by all ranks and
    checkpointed), cut into global batches of ``batch_size``, and each global batch is dealt out strided:
    the same global batches for any number of processes, nothing repeated (a rank's share of the last
    batch may be one sample smaller than another's, or empty).

    Args:
        n: the training set's size.
        batch_size: samples per global batch (over all ranks).
        shuffle: the generator drawing each epoch's permutation (same state on every rank).
        world: the ranks.
    """

    def __init__(self, n: int, batch_size: int, shuffle: torch.Generator, world: World) -> None:
        # The sampler reads only len(dataset): a range of the indices is dataset enough (torch's stub asks
        # for a Dataset).
        indices = cast("Dataset[int]", range(n))
        super().__init__(indices, num_replicas=world.size, rank=world.rank, shuffle=True, drop_last=False)
        self.n, self.batch_size, self.generator = n, batch_size, shuffle
        self._order: torch.Tensor | None = None

    def __len__(self) -> int:
        full, last = divmod(self.n, self.batch_size)
        return full * len(range(self.rank, self.batch_size, self.num_replicas)) + len(
            range(self.rank, last, self.num_replicas)
        )

    def set_epoch(self, epoch: int) -> None:
        """Draw the permutation of the next epoch (one draw per epoch, in order)."""
        super().set_epoch(epoch)
        self._order = torch.randperm(self.n, generator=self.generator)

    def global_batches(self) -> Iterator[torch.Tensor]:
        """The epoch's global batches (every rank's indices), drawn by :meth:`set_epoch`."""
        if self._order is None:
            raise RuntimeError("call set_epoch(epoch) before iterating, once per epoch.")
        return iter(self._order.split(self.batch_size))

    def __iter__(self) -> Iterator[int]:
        for batch in self.global_batches():
            yield from batch[self.rank :: self.num_replicas].tolist()


def init_from_env(device: str = "auto") -> tuple[World, torch.device]:
    """Join the ``torchrun`` job described by the environment, if any; pick this rank's device.

    With ``WORLD_SIZE > 1`` (set by ``torchrun``) the default process group is initialised: NCCL when
    CUDA is used, gloo otherwise. ``device="auto"`` is ``cuda:LOCAL_RANK`` when CUDA is available, else
    the CPU.

    Returns:
        ``(world, device)``.
    """
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if int(os.environ.get("WORLD_SIZE", 1)) > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return World.current(), dev
