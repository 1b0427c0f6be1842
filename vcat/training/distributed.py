"""The processes of one training run and what they share: the process group, each rank's
device and part of every batch, and the loss averaged over ranks.

:func:`process_group` joins the group that :mod:`vcat.training.launch` detects (gloo on the
CPU, NCCL on CUDA, where rank r takes ``cuda:LOCAL_RANK``) and always leaves it, also after
an error. A single process gets ``Ranks`` of one, with no group: nothing is wrapped, reduced
or split, so it computes exactly what it computed before distribution existed.

A batch size is the global batch. :class:`RankBatches` gives rank r the r-th contiguous
part of every global batch that a sampler of the whole dataset draws; with the same seeded
generator in every rank, the W parts of a step are the items one process would have taken
for that step. DistributedDataParallel averages the gradients, so when each rank's loss is
the mean over its part (equal parts), the step is that of one process over the whole batch,
up to the rounding of the sums.

A rank that fails leaves the others waiting in their next collective: torchrun stops them;
under SLURM, ``srun --kill-on-bad-exit=1`` does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sized
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vcat.training.launch import Launch, LaunchError, detect_launch

if TYPE_CHECKING:
    import torch
    from torch import nn
    from torch.utils.data import Sampler


class DistributedError(ValueError):
    """A setting does not suit the number of processes, or a rank has no device."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in the run: ``rank`` of ``world_size``, and its ``device``."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the only rank that writes checkpoints, metrics and messages."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def part(self, size: int) -> slice:
        """This rank's contiguous part of ``size`` items: ``[r*size//W, (r+1)*size//W)``."""
        return slice(self.rank * size // self.world_size, (self.rank + 1) * size // self.world_size)

    def local_batch(self, batch_size: int, param: str) -> int:
        """Each rank's share of the global ``batch_size``; DistributedError naming ``param``
        when it does not split evenly."""
        if batch_size % self.world_size:
            raise DistributedError(
                f"{param} is {batch_size}, the global batch; it does not split among "
                f"{self.world_size} processes: make it a multiple of {self.world_size}"
            )
        return batch_size // self.world_size

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of ``value`` over the ranks (``value`` itself in a single process)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def total(self, value: torch.Tensor) -> torch.Tensor:
        """The sum of ``value`` over the ranks (``value`` itself in a single process)."""
        if not self.distributed:
            return value
        import torch.distributed as dist

        total = value.detach().clone()
        dist.all_reduce(total)
        return total

    def wrap(self, module: nn.Module) -> nn.Module:
        """``module`` under DistributedDataParallel (gradients averaged over ranks in its
        backward); ``module`` itself in a single process. Call the wrapper once per step."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        # a backbone's own head (timm's fc_norm, say) has no part in a pre-training loss; its
        # parameters keep no gradient, as in a single process, instead of stalling the reduction
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)


def single(device: torch.device) -> Ranks:
    """A run of one process on ``device``."""
    return Ranks(0, 1, device)


@contextmanager
def process_group(device: torch.device) -> Iterator[Ranks]:
    """This process's ``Ranks`` (module doc) for work on ``device`` (``cpu`` or ``cuda``);
    inside a launch, the process group is joined for the ``with`` block and destroyed after
    it, however it ends."""
    try:
        launch = detect_launch()
    except LaunchError as error:
        raise DistributedError(str(error)) from None
    if launch is None:
        yield single(device)
        return
    import torch.distributed as dist

    device = _rank_device(device, launch)
    backend = "nccl" if device.type == "cuda" else "gloo"
    try:
        dist.init_process_group(
            backend, init_method=launch.init_method, rank=launch.rank, world_size=launch.world_size
        )
    except RuntimeError as error:  # torch's DistNetworkError, DistStoreError, backend errors
        raise DistributedError(_join_failure(launch, error)) from None
    try:
        yield Ranks(launch.rank, launch.world_size, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _join_failure(launch: Launch, error: RuntimeError) -> str:
    where = launch.init_method
    if where == "env://":
        where = f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')}"
    detail = " ".join(str(error).split())[:300]
    return (
        f"rank {launch.rank} of {launch.world_size} ({launch.launcher}) could not join the "
        f"process group at {where}: {detail}; if the port is taken, set MASTER_PORT to a free "
        "one, and check that every rank was started and reaches rank 0's host"
    )


def _rank_device(device: torch.device, launch: Launch) -> torch.device:
    import torch

    if device.type != "cuda":
        return device
    count = torch.cuda.device_count()
    if launch.local_rank >= count:
        raise DistributedError(
            f"{launch.launcher} gave local rank {launch.local_rank}, but torch sees {count} "
            "CUDA device(s) on this node: start at most one process per GPU"
        )
    torch.cuda.set_device(launch.local_rank)
    return torch.device("cuda", launch.local_rank)


def shuffled_batches(
    dataset: Any,
    batch_size: int,
    generator: torch.Generator,
    ranks: Ranks,
    *,
    drop_last: bool = False,
    **settings: Any,
) -> torch.utils.data.DataLoader[Any]:
    """A DataLoader over ``dataset`` in an order drawn from ``generator``, in global batches of
    ``batch_size``, of which this rank loads its part (a single process: all of each).
    ``settings`` go to the DataLoader (workers, pinned memory)."""
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler

    if not ranks.distributed:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=True,
            drop_last=drop_last,
            generator=generator,
            **settings,
        )
    # the samplers DataLoader makes for shuffle=True, drawing from the generator in the same
    # order, so every rank sees the global batches one process would
    batches = BatchSampler(RandomSampler(dataset, generator=generator), batch_size, drop_last)
    return DataLoader(
        dataset, batch_sampler=RankBatches(batches, ranks), generator=generator, **settings
    )


class RankBatches:
    """Batch sampler: this rank's part (:meth:`Ranks.part`) of every global batch of
    ``batches``, a batch sampler over the whole dataset."""

    def __init__(self, batches: Sampler[list[int]] | Any, ranks: Ranks) -> None:
        self.batches = batches
        self.ranks = ranks

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield list(batch)[self.ranks.part(len(batch))]

    def __len__(self) -> int:
        assert isinstance(self.batches, Sized)
        return len(self.batches)
