"""A torch Dataset of the images a fixed-width path list names, decoded to RGB."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from vcat.lists.memmap import PathList
from vcat.regular import open_regular


class ImageReadError(OSError):
    """A listed image that exists but cannot be decoded."""


class ImagePathDataset(Dataset[Any]):
    """Item ``i`` is the image at ``root / paths[i]`` as an RGB PIL image, or ``transform`` of it.

    The list stays a read-only memmap (see :class:`PathList`: a list folder of the path-list
    stage, or a bare memmap of ``width``-byte paths), so DataLoader workers share it.
    A missing or unreadable image raises an error naming the file, the index and the list.
    """

    def __init__(
        self,
        list_path: Path | str,
        root: Path | str,
        transform: Callable[[Image.Image], Any] | None = None,
        width: int | None = None,
    ) -> None:
        self.paths = PathList(list_path, width)
        self.root = Path(root)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def _where(self, index: int) -> str:
        return f"item {index} of {self.paths.path}"

    def __getitem__(self, index: int) -> Any:
        relative = self.paths.path_at(index)
        parts = PurePosixPath(relative)
        if parts.is_absolute() or ".." in parts.parts:
            raise ValueError(f"{relative!r} ({self._where(index)}) is not a path inside the root")
        path = self.root / relative
        try:
            with open_regular(path) as stream, Image.open(stream) as image:  # a FIFO is refused
                rgb = image.convert("RGB")
        except FileNotFoundError:
            raise FileNotFoundError(
                f"{path}: missing ({self._where(index)}); download the list's images into "
                f"{self.root} or point root at where they are"
            ) from None
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as exc:
            raise ImageReadError(f"{path}: cannot decode ({self._where(index)}): {exc}") from None
        return rgb if self.transform is None else self.transform(rgb)
