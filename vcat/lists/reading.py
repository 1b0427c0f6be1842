"""Reading a list file in blocks of whole items, gzip'd or not, with bounded memory.

An item is a line of a text list or a fixed-width entry of a memmap list. Blocks of about
``BLOCK_BYTES`` are read by a thread ahead of the caller (zlib and numpy both release the
GIL, so decompression and parsing run on two cores), and each block knows the 0-based index
of its first item, so errors can name their line however the file was cut.
"""

from __future__ import annotations

import gzip
import queue
import threading
import zlib
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vcat.regular import open_regular
from vcat.stage_cli import InputError

BLOCK_BYTES = 16 * 2**20
GZIP_MAGIC = b"\x1f\x8b"


class ListFormatError(InputError):
    """A list that cannot be converted; the message names the file and, where known, the line."""


@dataclass(frozen=True)
class Block:
    """Whole items of a list: ``data`` holds items ``first`` .. ``first + count - 1``;
    ``position`` is how far the file (compressed, if it is) had been read."""

    first: int
    count: int
    data: bytes
    position: int


def is_gzip(path: Path) -> bool:
    """Whether the list ``path`` is gzip'd (by its magic bytes)."""
    with open_regular(path) as raw:
        return raw.read(2) == GZIP_MAGIC


@contextmanager
def open_list(path: Path) -> Iterator[tuple[BinaryIO, BinaryIO]]:
    """``(text, raw)``: the list's decompressed bytes (gzip is recognised by its magic
    bytes) and the file itself; a FIFO or device is refused without being waited on."""
    with open_regular(path) as raw:
        compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        if not compressed:
            yield raw, raw
            return
        with gzip.GzipFile(fileobj=raw, mode="rb") as text:
            yield text, raw  # type: ignore[misc]


def iter_blocks(stream: BinaryIO, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Successive blocks of whole lines read from ``stream``, about ``block_bytes`` each."""
    pending = b""
    while True:
        data = stream.read(block_bytes)
        if not data:
            if pending:
                yield pending
            return
        data = pending + data
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            pending = data  # one line longer than a block: keep reading
            continue
        pending = data[cut:]
        yield data[:cut]


def iter_entries(stream: BinaryIO, width: int, block_bytes: int = BLOCK_BYTES) -> Iterator[bytes]:
    """Successive blocks of whole ``width``-byte entries; a last partial entry is kept as it
    is (the caller says that the size is not a whole number of entries)."""
    size = max(width, block_bytes // width * width)
    while data := stream.read(size):
        yield data


def prefetch(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """``blocks``, read ahead by a thread; an error in the thread is raised here, and leaving
    the loop early stops the thread."""
    ready: queue.Queue[bytes | BaseException | None] = queue.Queue(depth)
    stop = threading.Event()

    def offer(item: bytes | BaseException | None) -> bool:
        """Hand ``item`` to the caller; False once the caller has stopped listening."""
        while not stop.is_set():
            try:
                ready.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for block in blocks:
                if not offer(block):
                    return
        except BaseException as exc:
            offer(exc)
            return
        offer(None)

    thread = threading.Thread(target=produce, name="list-reader", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


def line_count(data: bytes) -> int:
    """The number of lines in a block of whole lines (the last may lack its newline)."""
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def read_blocks(
    path: Path, entry_width: int | None = None, block_bytes: int = BLOCK_BYTES
) -> Iterator[Block]:
    """The blocks of the list ``path``: lines of a text list, or entries of ``entry_width``
    bytes of a memmap list (``entry_width`` given). A gzip file cut short is a
    ListFormatError naming the file and how many items were read."""
    first = 0
    with open_list(path) as (text, raw):
        pieces = (
            iter_entries(text, entry_width, block_bytes)
            if entry_width
            else iter_blocks(text, block_bytes)
        )
        try:
            # closed before the file is, so the reading thread never outlives it
            with closing(prefetch(pieces)) as blocks:
                for data in blocks:
                    items = -(-len(data) // entry_width) if entry_width else line_count(data)
                    yield Block(first, items, data, raw.tell())
                    first += items
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ListFormatError(
                f"{path}: not a complete gzip file after {first:,} lines ({exc}); fetch it again"
            ) from None


def count_items(path: Path, entry_width: int | None = None) -> int:
    """The number of lines (or ``entry_width``-byte entries) of the list ``path``."""
    return sum(block.count for block in read_blocks(path, entry_width))


def within(
    blocks: Iterator[Block], items: range, cut: Callable[[Block, int, int], Block]
) -> Iterator[Block]:
    """The parts of ``blocks`` that hold items ``items`` (a contiguous range), cut by
    ``cut(block, start, stop)`` (offsets of items inside the block)."""
    if not items:
        return
    for block in blocks:
        end = block.first + block.count
        if end <= items.start:
            continue
        if block.first >= items.stop:
            return
        start = max(items.start, block.first) - block.first
        stop = min(items.stop, end) - block.first
        yield block if (start, stop) == (0, block.count) else cut(block, start, stop)
        if end >= items.stop:
            return


def cut_lines(block: Block, start: int, stop: int) -> Block:
    """Lines ``start`` .. ``stop - 1`` of a block of lines."""
    newlines = np.flatnonzero(np.frombuffer(block.data, dtype=np.uint8) == ord("\n"))
    begin = int(newlines[start - 1]) + 1 if start else 0
    end = int(newlines[stop - 1]) + 1 if stop - 1 < newlines.size else len(block.data)
    return Block(block.first + start, stop - start, block.data[begin:end], block.position)


def cut_entries(width: int) -> Callable[[Block, int, int], Block]:
    """Cutting entries ``start`` .. ``stop - 1`` of a block of ``width``-byte entries."""

    def cut(block: Block, start: int, stop: int) -> Block:
        data = block.data[start * width : stop * width]
        return Block(block.first + start, stop - start, data, block.position)

    return cut
