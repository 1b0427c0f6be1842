"""Reading a fixed-width path list: ``numpy.memmap(dtype='S<width>')``, NUL-padded, headerless.

The format of the Flickr-CC and Full ImageNet ``.memmap`` lists (seed-formats.md section B):
entry ``i`` is the UTF-8 relative path in bytes ``[i * width, (i + 1) * width)`` of the file,
padded with NUL bytes, so a list of N paths is exactly ``width * N`` bytes. Mapping the file
read-only shares its pages between all processes through the page cache, where a Python list
of strings would be copied into every forked DataLoader worker as soon as it touches them.

:class:`PathList` reads a bare ``.memmap`` file or a list folder that the ``path-list`` stage
writes (:mod:`vcat.lists.folder`), whose frame counts and labels it returns with each path.
It is a sequence and a map-style dataset that torch's DataLoader takes as it is (torch is not
imported here).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np
from numpy.typing import NDArray

from vcat.lists.layout import META_NAME, read_meta

DEFAULT_WIDTH = 120

Item = str | tuple[Any, ...]


class PathListError(ValueError):
    """A file or folder that is not a path list (of this width)."""


class PathList(Sequence[Item]):
    """The paths of a fixed-width list, mapped read-only by whichever process reads first.

    Item ``i`` is the path (a ``str``) of a list of paths only; a list with frame counts or
    labels gives ``(path, n_frames)``, ``(path, label)`` or ``(path, n_frames, label)``, as
    torchvision's folder datasets give ``(sample, target)``. :meth:`path` always gives the path.

    Only names and sizes travel when it is pickled (to spawned DataLoader workers), and a
    forked worker that finds nothing mapped maps the files itself, so no worker holds a copy
    of the list. ``location`` is a list folder (its ``list.json`` gives the width) or a bare
    memmap file of ``width`` bytes per entry (default 120).
    """

    def __init__(self, location: Path | str, width: int | None = None) -> None:
        location = Path(location)
        self.location = location
        self.classes_path: Path | None = None
        self._frames_path: Path | None = None
        self._labels_path: Path | None = None
        if location.is_dir():
            meta = read_meta(location)
            if meta is None:
                raise PathListError(
                    f"{location}: a folder without a finished {META_NAME}; is it a list "
                    "folder of the path-list stage, and did that run finish?"
                )
            files = meta["files"]
            if width is not None and width != meta["width"]:
                raise PathListError(
                    f"{location}: a list of {meta['width']}-byte paths, not {width}-byte ones"
                )
            width = int(meta["width"])
            self.path = location / files["paths"]
            self._frames_path = location / files["n_frames"] if files["n_frames"] else None
            self._labels_path = location / files["labels"] if files["labels"] else None
            self.classes_path = location / files["classes"] if files["classes"] else None
        else:
            self.path = location
        self.width = DEFAULT_WIDTH if width is None else width
        size = self.path.stat().st_size
        if self.width <= 0 or size % self.width:
            raise PathListError(
                f"{self.path}: {size} bytes is not a whole number of {self.width}-byte paths; "
                "is it a path list, and written with this width?"
            )
        self._length = size // self.width
        self._paths: np.memmap | None = None
        self._n_frames: NDArray[np.int64] | None = None
        self._labels: NDArray[np.int64] | None = None

    def _array(self) -> np.memmap:
        if self._paths is None:
            self._paths = np.memmap(
                self.path, dtype=f"S{self.width}", mode="r", shape=(self._length,)
            )
        return self._paths

    def _side(self, path: Path | None) -> NDArray[np.int64] | None:
        if path is None:
            return None
        values = np.load(path, mmap_mode="r", allow_pickle=False)
        if values.shape != (self._length,):
            raise PathListError(
                f"{path}: {values.shape[0]} values for {self._length} paths; run the stage again"
            )
        return values

    @property
    def n_frames(self) -> NDArray[np.int64] | None:
        """The frame count of every path (a Kinetics list), mapped read-only; else None."""
        if self._n_frames is None:
            self._n_frames = self._side(self._frames_path)
        return self._n_frames

    @property
    def labels(self) -> NDArray[np.int64] | None:
        """The class index of every path (a labelled list), mapped read-only; else None."""
        if self._labels is None:
            self._labels = self._side(self._labels_path)
        return self._labels

    @property
    def classes(self) -> list[str] | None:
        """The class names of a labelled list, label ``i`` naming ``classes[i]``; else None."""
        if self.classes_path is None:
            return None
        return self.classes_path.read_text(encoding="utf-8").splitlines()

    def __len__(self) -> int:
        return self._length

    def _position(self, index: int) -> int:
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError(f"index {index} out of range for {self._length} paths in {self.path}")
        return position

    def path_at(self, index: int) -> str:
        """The path of item ``index``."""
        # numpy drops the trailing NUL padding of an S-typed item
        return bytes(self._array()[self._position(index)]).decode("utf-8")

    @overload
    def __getitem__(self, index: int) -> Item: ...

    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        position = self._position(index)
        path = self.path_at(position)
        extra = [
            int(values[position]) for values in (self.n_frames, self.labels) if values is not None
        ]
        return (path, *extra) if extra else path

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_paths=None, _n_frames=None, _labels=None)
        return state

    def __repr__(self) -> str:
        return f"PathList({str(self.location)!r}, width={self.width}, length={self._length})"
