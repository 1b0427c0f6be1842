"""Stage ``flickr-memmap``: a Flickr-CC subset list (``.tsv.gz``) to the fixed-width memmap.

Training code reads the subset's image paths from a headerless ``numpy.memmap(dtype='S120')``
(see :mod:`vcat.lists.memmap`), which DataLoader workers share instead of copying. The list is
converted in blocks of whole lines with numpy, so memory stays bounded for lists of hundreds
of millions of lines. The column holding the path and the slot width come from params.yaml.
"""

from __future__ import annotations

import gzip
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import closing
from pathlib import Path
from typing import Annotated, Any, BinaryIO

import numpy as np
import typer
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vcat.console import fail, stderr, stderr_bars
from vcat.display import shown
from vcat.lists.memmap import DEFAULT_WIDTH
from vcat.regular import open_regular
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    stage_conf,
    write_json,
)

NAME = "flickr-memmap"
default_conf: dict[str, Any] = {
    "width": DEFAULT_WIDTH,  # bytes per path slot; the training code reads S120
    "column": 2,  # 0-based tab-separated field holding the path
}
# params.yaml keys that dvc.yaml reads to choose what to convert
pipeline_keys = ("entry", "subsets")

BLOCK_BYTES = 16 * 2**20
_GZIP_MAGIC = b"\x1f\x8b"
_NL, _CR, _TAB = ord("\n"), ord("\r"), ord("\t")


class ListFormatError(ValueError):
    """A list that cannot be converted; the message names the file and, where known, the line."""


def _first(mask: NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _line_of_byte(block: bytes, byte: bytes, ends: NDArray[np.intp]) -> int | None:
    """The line holding the first ``byte`` in ``block``, or None."""
    position = block.find(byte)
    return None if position < 0 else int(np.searchsorted(ends, position))


def _field_count_problem(tab_count: int, column: int, empty: bool) -> str:
    if empty:
        return f"an empty line where {column + 1} tab-separated fields are needed"
    if tab_count == 0:
        return f"one field where the path column needs {column + 1} tab-separated fields"
    return f"{tab_count + 1} tab-separated fields where the path column needs {column + 1}"


def _check_utf8(block: bytes) -> int | None:
    """The index of the first line holding bytes that are not UTF-8, or None."""
    if block.isascii():
        return None
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        return block.count(b"\n", 0, exc.start)
    return None


def convert_block(
    block: bytes, column: int, width: int, source: Path, first_line: int = 1
) -> NDArray[np.uint8]:
    """The path field of every line of ``block`` as rows of ``width`` NUL-padded bytes.

    ``block`` holds whole lines (the last one may lack its newline); errors name the line as
    ``source:<first_line + i>``.
    """
    buf = np.frombuffer(block, dtype=np.uint8)
    newlines = np.flatnonzero(buf == _NL)
    ends = newlines if block.endswith(b"\n") else np.append(newlines, buf.size)
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    ends = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR))

    tabs = np.flatnonzero(buf == _TAB)
    first_tab = np.searchsorted(tabs, starts)
    tab_count = np.searchsorted(tabs, ends) - first_tab
    too_few = tab_count < column
    if tabs.size == 0:
        field_start, field_end = starts, ends
    else:
        last = tabs.size - 1
        before = tabs[np.clip(first_tab + column - 1, 0, last)] + 1
        field_start = starts if column == 0 else before
        after = tabs[np.clip(first_tab + column, 0, last)]
        field_end = np.where(tab_count > column, after, ends)
    lengths = field_end - field_start

    candidates: list[tuple[int | None, Callable[[int], str]]] = [
        (
            _first(too_few),
            lambda i: _field_count_problem(tab_count[i], column, starts[i] == ends[i]),
        ),
        (
            _first(~too_few & (lengths <= 0)),
            lambda i: f"the path (field {column + 1}) is empty",
        ),
        (
            _first(~too_few & (lengths > width)),
            lambda i: (
                f"the path is {lengths[i]} bytes, longer than the {width}-byte slots "
                "of the list; raise the stage's width setting"
            ),
        ),
        (
            _line_of_byte(block, b"\0", ends),
            lambda i: "holds a NUL byte, which the NUL-padded list cannot store",
        ),
        (_check_utf8(block), lambda i: "holds bytes that are not UTF-8"),
    ]
    found = [(line, describe) for line, describe in candidates if line is not None]
    if found:
        line, describe = min(found, key=lambda item: item[0])
        raise ListFormatError(f"{source}:{first_line + line}: {describe(line)}")

    # each row is the `width` bytes from its field's start, the bytes past the field zeroed
    padded = np.frombuffer(block + bytes(width), dtype=np.uint8)
    rows = sliding_window_view(padded, width)[field_start]
    rows *= np.arange(width) < lengths[:, None]
    return rows


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


def prefetch(blocks: Iterator[bytes], depth: int = 2) -> Iterator[bytes]:
    """``blocks``, read ahead by a thread so decompression overlaps the caller's numpy work.

    zlib and numpy both release the GIL, so the two run on two cores. An error in the
    thread is raised here; leaving the loop early stops the thread.
    """
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


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
        TimeRemainingColumn(),
    )


def convert(
    list_path: Path, sink: BinaryIO, column: int, width: int, block_bytes: int = BLOCK_BYTES
) -> int:
    """Write the memmap rows of ``list_path`` (gzip'd or plain) to ``sink``; return the count.

    The list is read in blocks of about ``block_bytes`` of text, which bounds the memory used.
    """
    count = 0
    with open_regular(list_path) as raw, _progress() as progress:  # a FIFO is refused
        compressed = raw.read(2) == _GZIP_MAGIC
        raw.seek(0)
        text: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw
        task = progress.add_task(list_path.name, total=list_path.stat().st_size, lines=0)
        try:
            # closed before the file is, so the reading thread never outlives it
            with closing(prefetch(iter_blocks(text, block_bytes))) as blocks:
                for block in blocks:
                    rows = convert_block(block, column, width, list_path, first_line=count + 1)
                    sink.write(rows.data)
                    count += len(rows)
                    progress.update(task, completed=raw.tell(), lines=count)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise ListFormatError(
                f"{list_path}: not a complete gzip file after {count:,} lines ({exc}); "
                "fetch it again"
            ) from None
    if count == 0:
        raise ListFormatError(f"{list_path}: the list holds no lines")
    return count


def is_current(list_path: Path, output: Path, width: int) -> bool:
    """True when ``output`` exists, is newer than ``list_path`` and holds whole rows."""
    if not output.is_file():
        return False
    stat = output.stat()
    return stat.st_mtime >= list_path.stat().st_mtime and stat.st_size % width == 0


def main(
    conf: Mapping[str, Any] | None,
    list_path: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
) -> Path:
    """Convert the subset list ``list_path`` into the memmap ``output``; return ``output``.

    Skipped when ``output`` is already newer than the list, unless ``overwrite``. The rows are
    written to a temporary name beside ``output`` and renamed into place when complete.
    ``metrics``, when given, receives the number of paths and bytes as JSON.
    """
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    width, column = int(settings.width), int(settings.column)
    if width < 1 or column < 0:
        raise StageError(f"stage {NAME}: width must be >= 1 and column >= 0")
    if not overwrite and is_current(list_path, output, width):
        stderr.print(f"{shown(output)} is up to date with {shown(list_path)}", highlight=False)
    else:
        _convert_into(list_path, output, column, width)
    if metrics is not None:
        paths = output.stat().st_size // width
        write_json(metrics, {"paths": paths, "bytes": paths * width, "width": width})
    return output


def _convert_into(list_path: Path, output: Path, column: int, width: int) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.partial")
    started = time.perf_counter()
    try:
        with partial.open("wb") as sink:
            count = convert(list_path, sink, column, width)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    seconds = time.perf_counter() - started
    stderr.print(
        f"{shown(output)}: {count:,} paths of {width} bytes from {shown(list_path)} "
        f"in {seconds:.1f} s",
        highlight=False,
    )


def command(
    list_path: Annotated[
        Path,
        typer.Argument(
            help="Subset list: tab-separated lines, gzip'd or not.",
            metavar="LIST",
            exists=True,
            dir_okay=False,
            readable=True,
        ),
    ],
    output: Annotated[
        Path, typer.Argument(help="The .memmap file to write.", dir_okay=False, metavar="OUTPUT")
    ],
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Convert a Flickr-CC subset list into the S120 memmap path list DataLoaders share."""
    try:
        conf = stage_conf(NAME, default_conf, params, pipeline_keys)
        main(conf, list_path, output, overwrite, metrics)
    except (StageError, ListFormatError) as exc:
        fail(str(exc))
