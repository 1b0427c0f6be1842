"""Stage ``flickr-memmap``: a Flickr-CC subset list (``.tsv.gz``) to the fixed-width memmap.

Training code reads the subset's image paths from a headerless ``numpy.memmap(dtype='S120')``
(see :mod:`vcat.lists.memmap`), which DataLoader workers share instead of copying. The list is
converted in blocks of whole lines with numpy (:mod:`vcat.lists.parsing`), so memory stays
bounded for lists of hundreds of millions of lines. The column holding the path and the slot
width come from params.yaml. The ``path-list`` stage converts the other list formats.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vcat.console import stderr, stderr_bars
from vcat.display import shown
from vcat.lists.memmap import DEFAULT_WIDTH
from vcat.lists.parsing import convert_block
from vcat.lists.reading import BLOCK_BYTES, ListFormatError, iter_blocks, read_blocks
from vcat.stage import MetricsOption, OverwriteOption, ParamsOption, StageError, write_json
from vcat.stage_cli import list_argument, output_argument, run_stage, settings

__all__ = [
    "BLOCK_BYTES",
    "ListFormatError",
    "command",
    "convert",
    "convert_block",
    "default_conf",
    "iter_blocks",
    "main",
]

NAME = "flickr-memmap"
default_conf: dict[str, Any] = {
    "width": DEFAULT_WIDTH,  # bytes per path slot; the training code reads S120
    "column": 2,  # 0-based tab-separated field holding the path
}
# params.yaml keys that dvc.yaml reads to choose what to convert
pipeline_keys = ("entry", "subsets")


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
    with _progress() as progress:
        task = progress.add_task(list_path.name, total=list_path.stat().st_size, lines=0)
        for block in read_blocks(list_path, block_bytes=block_bytes):
            rows = convert_block(block.data, column, width, list_path, first_line=count + 1)
            sink.write(rows.data)
            count += len(rows)
            progress.update(task, completed=block.position, lines=count)
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
    conf = settings(NAME, default_conf, conf)
    width, column = int(conf.width), int(conf.column)
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


ListArgument = list_argument("Subset list: tab-separated lines, gzip'd or not.")
OutputArgument = output_argument("The .memmap file to write.", folder=False)


def command(
    list_path: ListArgument,
    output: OutputArgument,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Convert a Flickr-CC subset list into the S120 memmap path list DataLoaders share."""
    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, list_path, output, overwrite, metrics),
        pipeline_keys,
    )
