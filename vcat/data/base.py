"""The map-style dataset every reader of a prepared artifact builds on.

A reader knows how many items its artifact holds, the sources of each (for splits, see
:mod:`vcat.data.splits`) and how to read item ``position``. This base turns that into a torch
``Dataset``: the items of a split, then every ``world_size``-th of them from ``rank``.

Workers: the positions are a numpy array, and what a reader opens (shard files, memmaps,
HDF5 files) is opened on first access by the process that reads, never in ``__init__``.
Pickling (what spawned DataLoader workers receive) keeps only the folder and the options: a
worker reads the small index files again and recomputes the same positions, checking that
it finds as many items as the process that made the dataset (else the artifact changed).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch.utils.data import Dataset

from vcat.data.decode import DECODE_MODES, decode_item
from vcat.data.errors import DataError
from vcat.data.splits import SplitFilter

Item = dict[str, Any]


def rank_positions(positions: NDArray[np.int64], rank: int, world_size: int) -> NDArray[np.int64]:
    """Every ``world_size``-th position from ``rank``: disjoint across ranks, all together."""
    return np.ascontiguousarray(positions[rank::world_size])


class ArtifactDataset(Dataset[Any]):
    """Items of one prepared artifact (a split of it, the part of one rank).

    Item ``i`` is a dict ``{"__key__": key, name: value, ...}`` (the reader says which
    names), decoded as ``decode`` says (:mod:`vcat.data.decode`), then passed through
    ``transform`` when given. Subclasses implement ``_count``, ``_sources``, ``_read`` and
    name in ``_LAZY`` the attributes that hold what they opened (dropped when pickled).
    """

    _LAZY: tuple[str, ...] = ()  # handles opened on first access, per process
    _DERIVED: tuple[str, ...] = ()  # arrays read from index files, rebuilt after unpickling

    def __init__(
        self,
        folder: Path,
        *,
        split: SplitFilter | None = None,
        rank: int = 0,
        world_size: int = 1,
        decode: str = "bytes",
        transform: Callable[[Item], Any] | None = None,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise DataError(
                f"rank {rank} of world_size {world_size}: need world_size >= 1 and "
                "0 <= rank < world_size"
            )
        if decode not in DECODE_MODES:
            raise DataError(f"decode is {decode!r}; it must be one of {', '.join(DECODE_MODES)}")
        self.folder = Path(folder)
        self.split = split
        self.rank = rank
        self.world_size = world_size
        self.decode = decode
        self.transform = transform
        self._opened_by: int | None = None
        selected = self._split_positions()
        if split is not None and len(selected) == 0:
            raise DataError(
                f"split {split.name!r} selects none of the {self._count()} items of "
                f"{self.folder}: is this artifact made from that split's scenes or images?"
            )
        self._positions: NDArray[np.int64] | None = rank_positions(selected, rank, world_size)
        self._length = len(self._positions)

    # what a reader implements
    def _count(self) -> int:
        raise NotImplementedError

    def _sources(self) -> Iterator[Sequence[str]]:
        raise NotImplementedError

    def _read(self, position: int) -> Item:
        raise NotImplementedError

    def _split_positions(self) -> NDArray[np.int64]:
        if self.split is None:
            return np.arange(self._count(), dtype=np.int64)
        return self.split.positions(self._sources())

    @property
    def positions(self) -> NDArray[np.int64]:
        """Which items of the artifact this dataset serves, in order."""
        if self._positions is None:
            self._positions = rank_positions(self._split_positions(), self.rank, self.world_size)
        return self._positions

    def _this_process(self) -> None:
        """Forget handles opened by another process (a forked parent) before opening ours."""
        pid = os.getpid()
        if self._opened_by != pid:
            for name in self._LAZY:
                setattr(self, name, None)
            self._opened_by = pid

    def opened_here(self) -> bool:
        """Whether this process has opened the artifact's files (for tests and debugging)."""
        return self._opened_by == os.getpid() and any(
            getattr(self, name) is not None for name in self._LAZY
        )

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> Any:
        if not -self._length <= index < self._length:
            raise IndexError(f"index {index} out of range for {self._length} items")
        positions = self.positions
        if len(positions) != self._length:
            raise DataError(
                f"{self.folder} now gives {len(positions)} items where it gave {self._length}: "
                "the artifact changed while it was read; load it again"
            )
        self._this_process()
        item = decode_item(self._read(int(positions[index])), self.decode)
        return item if self.transform is None else self.transform(item)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_positions"] = None
        state["_opened_by"] = None
        for name in (*self._LAZY, *self._DERIVED):
            state[name] = None
        return state

    def __repr__(self) -> str:
        split = "" if self.split is None else f", split={self.split.name!r}"
        ranks = "" if self.world_size == 1 else f", rank={self.rank}/{self.world_size}"
        return f"{type(self).__name__}({str(self.folder)!r}{split}{ranks}, items={self._length})"
