"""Reading a fixed-width path list: ``numpy.memmap(dtype='S<width>')``, NUL-padded, headerless.

The format of the Flickr-CC ``.memmap`` lists (seed-formats.md section B): entry ``i`` is the
UTF-8 relative path in bytes ``[i * width, (i + 1) * width)`` of the file, padded with NUL
bytes, so a list of N paths is exactly ``width * N`` bytes. Mapping the file read-only
shares its pages between all processes through the page cache, where a Python list of
strings would be copied into every forked DataLoader worker as soon as it touches them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

DEFAULT_WIDTH = 120


class PathListError(ValueError):
    """A file that is not a whole number of fixed-width paths."""


class PathList(Sequence[str]):
    """The paths of a fixed-width list, mapped read-only on first access.

    Only the file name and length travel when it is pickled (to spawned DataLoader workers);
    whichever process first reads an item maps the file itself.
    """

    def __init__(self, path: Path | str, width: int = DEFAULT_WIDTH) -> None:
        self.path = Path(path)
        self.width = width
        size = self.path.stat().st_size
        if width <= 0 or size % width:
            raise PathListError(
                f"{self.path}: {size} bytes is not a whole number of {width}-byte paths; "
                "is it a path list, and written with this width?"
            )
        self._length = size // width
        self._paths: np.memmap | None = None

    def _array(self) -> np.memmap:
        if self._paths is None:
            self._paths = np.memmap(
                self.path, dtype=f"S{self.width}", mode="r", shape=(self._length,)
            )
        return self._paths

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._length))]
        position = index + self._length if index < 0 else index
        if not 0 <= position < self._length:
            raise IndexError(f"index {index} out of range for {self._length} paths in {self.path}")
        # numpy drops the trailing NUL padding of an S-typed item
        return bytes(self._array()[position]).decode("utf-8")

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_paths"] = None
        return state

    def __repr__(self) -> str:
        return f"PathList({str(self.path)!r}, width={self.width}, length={self._length})"
