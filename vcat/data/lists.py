"""Map-style access to a memmap path list (:class:`vcat.lists.memmap.PathList`).

Item ``i`` is ``{"__key__": path, "path": path}``, with ``n_frames`` and ``label`` (ints)
when the list folder has them. The list is mapped read-only by the process that reads it, so
workers share its pages instead of holding copies. A path's sources for splits are the path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from vcat.data.base import ArtifactDataset, Item
from vcat.data.errors import DataError
from vcat.lists.memmap import PathList, PathListError


def open_list(location: Path, width: int | None = None) -> PathList:
    try:
        return PathList(location, width)
    except PathListError as exc:
        raise DataError(str(exc)) from None


class PathListDataset(ArtifactDataset):
    """The paths of a list folder or a bare ``.memmap`` file; see the module docstring."""

    _LAZY = ("_list",)

    def __init__(self, folder: Path, *, width: int | None = None, **options: Any) -> None:
        self.width = width
        self._list: PathList | None = None
        super().__init__(folder, **options)

    @property
    def paths(self) -> PathList:
        if self._list is None:
            self._list = open_list(self.folder, self.width)
        return self._list

    def _count(self) -> int:
        return len(self.paths)

    def _sources(self) -> Iterator[Sequence[str]]:
        paths = self.paths
        return ((paths.path_at(position),) for position in range(len(paths)))

    def _read(self, position: int) -> Item:
        paths = self.paths
        path = paths.path_at(position)
        item: Item = {"__key__": path, "path": path}
        if paths.n_frames is not None:
            item["n_frames"] = int(paths.n_frames[position])
        if paths.labels is not None:
            item["label"] = int(paths.labels[position])
        return item
