"""Byte-reproducible file writers for the demo world.

The ``demo-*`` catalog entries record the md5 of every published file, so the same
definition must give the same bytes on every build: no timestamps, owners or insertion
order in any container, and encoders pinned by the ``demo`` extra. Every writer here
creates the parent folder and writes to a temporary name before renaming into place.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
from numpy.typing import NDArray
from PIL import Image

JPEG_QUALITY = 90
# 1980-01-01, the earliest time a zip entry can carry
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary stream that becomes ``path`` only when the block finishes without error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("wb") as stream:
            yield stream
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def save_jpeg(path: Path, pixels: NDArray[np.uint8], quality: int = JPEG_QUALITY) -> None:
    """An RGB (H, W, 3) or grey (H, W) image as baseline JPEG, without metadata."""
    with atomic_output(path) as stream:
        Image.fromarray(pixels).save(stream, format="JPEG", quality=quality, optimize=False)


def save_png(path: Path, pixels: NDArray[np.uint8] | NDArray[np.uint16]) -> None:
    """An 8- or 16-bit image as PNG, without metadata (16-bit stays 16-bit)."""
    with atomic_output(path) as stream:
        Image.fromarray(pixels).save(stream, format="PNG", compress_level=6)


def write_npz(path: Path, arrays: Mapping[str, NDArray[np.generic]]) -> None:
    """Arrays in numpy's ``.npz`` format (readable by ``np.load``), with fixed zip times.

    ``np.savez`` stamps each member with the current time; this writes the same format
    with members in key order and a constant time, so equal arrays give equal bytes.
    Object arrays are refused: they would need pickle to read.
    """
    with atomic_output(path) as stream, zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            array = np.asanyarray(arrays[key])
            if array.dtype.hasobject:
                raise TypeError(f"{path}: array {key!r} holds Python objects; use a fixed dtype")
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buffer.getvalue())


def _tree_files(tree: Path) -> list[Path]:
    return sorted(path for path in tree.rglob("*") if path.is_file())


def pack_tar(tree: Path, archive: Path, compression: str = "gz") -> None:
    """Every file under ``tree`` as a tar (``compression`` '', 'gz' or 'xz'), paths relative.

    Members are sorted, owned by 0:0 with mode 644 and time 0, so the bytes depend only on
    the files' paths and contents.
    """
    with atomic_output(archive) as raw:
        if compression == "gz":
            # the gzip header would otherwise carry the file name and the current time
            outer: BinaryIO = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
        elif compression in ("", "xz"):
            outer = raw
        else:
            raise ValueError(f"unknown tar compression {compression!r}")
        mode = "w:xz" if compression == "xz" else "w"
        with outer, tarfile.open(fileobj=outer, mode=mode, format=tarfile.PAX_FORMAT) as tar:
            for path in _tree_files(tree):
                info = tarfile.TarInfo(path.relative_to(tree).as_posix())
                info.size = path.stat().st_size
                info.mode = 0o644
                info.mtime = 0
                with path.open("rb") as stream:
                    tar.addfile(info, stream)


def pack_zip(tree: Path, archive: Path) -> None:
    """Every file under ``tree`` as a zip, sorted, with a constant time and mode 644."""
    with atomic_output(archive) as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in _tree_files(tree):
            info = zipfile.ZipInfo(path.relative_to(tree).as_posix(), date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())


def gzip_text(path: Path, text: str) -> None:
    """UTF-8 ``text`` gzip'd with no name and time in the header."""
    with (
        atomic_output(path) as raw,
        gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz,
    ):
        gz.write(text.encode("utf-8"))
