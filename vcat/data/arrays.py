"""Map-style access to array files: a folder of ``<scene>.npz`` (the overlap stage) or an
HDF5 file of one group per item (VOP's ``overlap_feats.h5``).

Item ``i`` of a folder of ``.npz`` files is ``{"__key__": stem, name: array, ...}`` for the
``i``-th file by name; of an HDF5 file, ``{"__key__": group, name: array, ...}`` for its
``i``-th top-level group by name, with every dataset of the group (nested ones as
``a/b``). Files are opened by the process that reads them (HDF5 handles per process); an
item's source for splits is its key, so a scene split selects ``<scene>.npz``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vcat.data.base import ArtifactDataset, Item
from vcat.data.errors import DataError

NPZ_SUFFIX = ".npz"
HDF5_SUFFIXES = (".h5", ".hdf5")


def npz_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix == NPZ_SUFFIX)


class NpzFolderDataset(ArtifactDataset):
    """The ``.npz`` files of a folder, by name; see the module docstring."""

    _DERIVED = ("_names",)

    def __init__(self, folder: Path, **options: Any) -> None:
        self._names: tuple[str, ...] | None = None
        super().__init__(folder, **options)

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(path.stem for path in npz_files(self.folder))
        return self._names

    def _count(self) -> int:
        return len(self.names)

    def _sources(self) -> Iterator[Sequence[str]]:
        return ((name,) for name in self.names)

    def _read(self, position: int) -> Item:
        name = self.names[position]
        path = self.folder / f"{name}{NPZ_SUFFIX}"
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return {"__key__": name, **{key: arrays[key] for key in arrays.files}}
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable .npz ({exc}); make it again") from None


class Hdf5Dataset(ArtifactDataset):
    """The top-level groups of an HDF5 file, by name; see the module docstring."""

    _LAZY = ("_file",)
    _DERIVED = ("_groups",)

    def __init__(self, folder: Path, **options: Any) -> None:
        self._groups: tuple[str, ...] | None = None
        self._file: Any = None
        super().__init__(folder, **options)

    def _open(self) -> Any:
        import h5py

        try:
            return h5py.File(self.folder, "r")
        except OSError as exc:
            raise DataError(f"{self.folder}: not a readable HDF5 file ({exc})") from None

    @property
    def groups(self) -> tuple[str, ...]:
        if self._groups is None:
            with self._open() as handle:
                self._groups = tuple(sorted(handle.keys()))
        return self._groups

    def _count(self) -> int:
        return len(self.groups)

    def _sources(self) -> Iterator[Sequence[str]]:
        return ((name,) for name in self.groups)

    def _read(self, position: int) -> Item:
        import h5py

        if self._file is None:
            self._file = self._open()
        name = self.groups[position]
        item: Item = {"__key__": name}

        def take(path: str, node: Any) -> None:
            if isinstance(node, h5py.Dataset):
                item[path] = node[()]

        node = self._file[name]
        if isinstance(node, h5py.Dataset):
            item[name] = node[()]
        else:
            node.visititems(take)
        return item

    def close(self) -> None:
        if self._file is not None and self._opened_by == os.getpid():
            self._file.close()
        self._file = None
