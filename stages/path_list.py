"""Stage ``path-list``: a list in any of the guides' formats to the fixed-width memmap list.

The continuous self-supervised learning guide trains on path lists in several formats
(seed-formats.md section B): the Flickr-CC subset lists (``flickr-tsv-gz``), Kinetics frame
lists ``<frame_dir> <n_frames>`` (``kinetics-frames``), plain path lists of Krishna-CAM frames
and Full ImageNet images (``path-list``), and published S120 memmaps (``memmap-s120``). This
stage turns any of them into a list folder (:mod:`vcat.lists.folder`): the paths as a
headerless ``numpy.memmap(dtype='S<width>')`` that the source project's memmap reader and
:class:`vcat.lists.memmap.PathList` map lazily in each DataLoader worker, with the frame counts
as ``n_frames.npy`` and, with ``--labels parent-folder``, each path's parent folder as its class
(``labels.npy`` and ``classes.txt``, the classes sorted by name as the source project does).

The list is read in blocks of whole lines and parsed with numpy, so memory stays bounded but
for the frame counts and labels (8 bytes per line each). A line that cannot be used (a path
longer than ``width`` bytes, a malformed line, bytes that are not UTF-8, ...) is an error
naming the file and the line, and nothing is written. An output made from the same list bytes
and settings is left alone.

``--shard I/N`` converts the block of lines ``[I*T//N, (I+1)*T//N)`` of the T lines into the
part ``<output>.parts/<I>-of-<N>/``; ``--merge N`` combines the N parts into ``output``,
byte-identical to a run without ``--shard``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import closing
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from omegaconf import DictConfig
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.display import shown
from vcat.executors.run import run_sharded
from vcat.hashing import hash_file
from vcat.lists.folder import ListBuilder, merge_parts
from vcat.lists.layout import read_meta
from vcat.lists.memmap import DEFAULT_WIDTH
from vcat.lists.parsing import (
    FLICKR_TSV,
    FORMATS,
    KINETICS_FRAMES,
    MEMMAP,
    PATH_LIST,
    parse_entries,
    parse_lines,
)
from vcat.lists.reading import (
    BLOCK_BYTES,
    Block,
    ListFormatError,
    count_items,
    cut_entries,
    cut_lines,
    is_gzip,
    read_blocks,
    within,
)
from vcat.parts import WHOLE, MergeOption, ShardOption, ShardSpec, part_folder, remove_parts
from vcat.regular import require_regular
from vcat.stage import MetricsOption, OverwriteOption, ParamsOption, StageError, write_json
from vcat.stage_cli import list_argument, output_argument, run_stage, settings, shard_or_merge

NAME = "path-list"
default_conf: dict[str, Any] = {
    "width": DEFAULT_WIDTH,  # bytes per path slot; the source project reads S120
    "column": 2,  # flickr-tsv-gz lists: the 0-based tab-separated field holding the path
}
# params.yaml keys that only dvc.yaml reads (which lists to convert)
pipeline_keys = ("lists",)


def made_from(
    list_path: Path, list_format: str, width: int, column: int, labels: bool
) -> dict[str, Any]:
    """What an output depends on: the list's bytes and the settings that change the result."""
    require_regular(list_path)  # a FIFO would be waited on forever
    source = {
        "list_md5": hash_file(list_path, ("md5",))["md5"],
        "list_bytes": list_path.stat().st_size,
        "format": list_format,
        "width": width,
        "labels": labels,
    }
    if list_format == FLICKR_TSV:
        source["column"] = column
    return source


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[lines]:,} lines"),
        TimeRemainingColumn(),
    )


def convert(
    list_path: Path,
    target: Path,
    list_format: str,
    width: int,
    column: int,
    labels: bool,
    source: Mapping[str, Any],
    items: range | None = None,
    block_bytes: int = BLOCK_BYTES,
    **extra: Any,
) -> dict[str, Any]:
    """The lines ``items`` (all when None) of ``list_path`` as the list folder ``target``,
    read in blocks of about ``block_bytes``; returns its ``list.json`` values (``extra`` added
    to them)."""
    entry_width = width if list_format == MEMMAP else None
    size = list_path.stat().st_size
    if entry_width and size % width and not is_gzip(list_path):
        raise ListFormatError(
            f"{list_path}: {size} bytes is not a whole number of {width}-byte entries; is it a "
            "memmap list of this width (the stage's width setting)?"
        )
    frames = list_format == KINETICS_FRAMES
    with (
        closing(read_blocks(list_path, entry_width, block_bytes)) as every_block,
        _progress() as progress,
        ListBuilder(target, width, frames=frames, labels=labels) as builder,
    ):
        task = progress.add_task(list_path.name, total=size, lines=0)
        blocks: Iterator[Block] = every_block
        if items is not None:
            blocks = within(blocks, items, cut_entries(width) if entry_width else cut_lines)
        for block in blocks:
            if entry_width:
                rows = parse_entries(block.data, width, list_path, block.first + 1)

                def where(i: int, first: int = block.first) -> str:
                    return f"{list_path}: entry {first + i + 1}"
            else:
                rows = parse_lines(
                    block.data, list_format, width, list_path, block.first + 1, column
                )

                def where(i: int, first: int = block.first) -> str:
                    return f"{list_path}:{first + i + 1}"

            builder.add(rows, where)
            progress.update(task, completed=block.position, lines=builder.count)
        return builder.finish(list_format, source, **extra)


def _is_current(target: Path, source: Mapping[str, Any]) -> bool:
    meta = read_meta(target)
    return meta is not None and meta.get("made_from") == dict(source)


def main(
    conf: Mapping[str, Any] | None,
    list_path: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    list_format: str = PATH_LIST,
    labels: bool = False,
    shard: ShardSpec = WHOLE,
    merge: int | None = None,
) -> Path:
    """Convert ``list_path`` (in ``list_format``) into the list folder ``output``; with
    ``shard`` (not the whole run) only its block of lines, into its part beside ``output``;
    with ``merge`` N, combine the N finished parts into ``output``. Returns the folder written.

    An output made from the same list bytes and settings is kept unless ``overwrite``.
    ``metrics``, when given, receives the counts (paths, bytes, classes, frames) as JSON.
    """
    conf = settings(NAME, default_conf, conf)
    width, column = int(conf.width), int(conf.column)
    if width < 1 or column < 0:
        raise StageError(f"stage {NAME}: width must be >= 1 and column >= 0")
    if list_format not in FORMATS:
        raise StageError(
            f"stage {NAME}: {list_format!r} is not a list format ({', '.join(FORMATS)})"
        )
    source = made_from(list_path, list_format, width, column, labels)
    target = output if merge is not None or shard.whole else part_folder(output, shard)
    started = time.perf_counter()
    skipped = not overwrite and _is_current(target, source)
    if skipped:
        stderr.print(f"{shown(target)} is up to date with {shown(list_path)}", highlight=False)
        meta = read_meta(target) or {}
    elif merge is not None:
        frames = list_format == KINETICS_FRAMES
        meta = merge_parts(output, merge, list_format, width, source, frames=frames, labels=labels)
        remove_parts(output)
    elif shard.whole:
        meta = convert(list_path, output, list_format, width, column, labels, source)
        remove_parts(output)
    else:
        entry_width = width if list_format == MEMMAP else None
        if entry_width and list_path.stat().st_size % width and not is_gzip(list_path):
            total = 0  # convert() names the problem
        else:
            total = count_items(list_path, entry_width)
        items = shard.block(total)
        meta = convert(
            list_path,
            target,
            list_format,
            width,
            column,
            labels,
            source,
            items,
            lines=[items.start, items.stop],
            shard=str(shard),
        )
    if not skipped:
        seconds = time.perf_counter() - started
        stderr.print(
            f"{shown(target)}: {meta['count']:,} paths of {width} bytes from "
            f"{shown(list_path)} in {seconds:.1f} s",
            highlight=False,
        )
    if metrics is not None:
        write_json(metrics, _counts(meta))
    return target


def _counts(meta: Mapping[str, Any]) -> dict[str, Any]:
    counts = {
        "paths": meta["count"],
        "bytes": meta["count"] * meta["width"],
        "width": meta["width"],
        "format": meta["format"],
    }
    counts.update({key: meta[key] for key in ("classes", "frames") if key in meta})
    return counts


ListArgument = list_argument(
    "The list: a Flickr-CC subset list, a Kinetics frame list, a plain path list (gzip'd or "
    "not) or an S120 memmap list; see --format."
)
OutputArgument = output_argument(
    "The list folder to write (paths.memmap, n_frames.npy, labels.npy, classes.txt, list.json).",
    folder=True,
)
ListFormat = StrEnum("ListFormat", {name: name for name in FORMATS})  # type: ignore[misc]
DEFAULT_FORMAT = ListFormat(PATH_LIST)
FormatOption = Annotated[
    ListFormat,
    typer.Option(
        "--format",
        help="How LIST is written: flickr-tsv-gz (tab-separated, the path in the `column` "
        "setting), kinetics-frames (`<frame_dir> <n_frames>`), path-list (a path per line) or "
        "memmap-s120 (fixed-width entries).",
    ),
]
Labels = StrEnum("Labels", {"none": "none", "parent-folder": "parent-folder"})  # type: ignore[misc]
NO_LABELS = Labels("none")
LabelsOption = Annotated[
    Labels,
    typer.Option(
        "--labels",
        help="parent-folder: label each path by its parent folder, as Full ImageNet is "
        "(labels.npy, int64, and classes.txt, the sorted folder names, line i naming label i).",
    ),
]


def command(
    context: typer.Context,
    list_path: ListArgument,
    output: OutputArgument,
    list_format: FormatOption = DEFAULT_FORMAT,
    labels: LabelsOption = NO_LABELS,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Convert a path list in any of the guides' formats into the S120 memmap list folder."""
    spec, parts = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, parts: int | None) -> None:
            by_folder = labels == Labels("parent-folder")
            main(
                conf,
                list_path,
                output,
                overwrite,
                metrics,
                str(list_format),
                by_folder,
                spec or WHOLE,
                parts,
            )

        run_sharded(context, output, params, spec, parts, run)

    run_stage(NAME, default_conf, params, work, pipeline_keys)
