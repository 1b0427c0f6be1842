"""Stage ``flickr-images``: download the images of a Flickr-CC subset list into shards.

Each line ``flickr_id <TAB> url <TAB> images/.../<name>.jpg`` becomes one WebDataset sample
keyed by the relative path without its extension (see :mod:`vcat.shards`), so the subset is
a few large files for DVC however many images it holds; ``vcat.shards.unpack_shards`` gives
back the guide's file tree for loaders that want it. Every line is attempted: unlike the
upstream downloader, the last ``len % workers`` lines are not dropped.

An image that cannot be had (deleted upstream, a web page instead of a JPEG, retries spent)
or that does not decode as the image its path names (empty, text, cut short, a decompression
bomb, a PNG named ``.jpg``: see :mod:`vcat.images`) is written to ``missing.tsv`` in the
output folder with its line, URL and failure class, and not stored; the stage fails once more
than ``max_missing_fraction`` of the list is missing. A stopped
run resumes where its last sealed shard ended; images after it are attempted again.

Like the source project's downloader, the stage stores each image with its shorter side at
``short_side`` pixels (256) by default: Pillow's ``resize`` with its default filter (bicubic;
nearest for palette and 1-bit images), smaller images enlarged unless ``enlarge`` is false,
saved in the format its path names (JPEG at quality ``jpeg_quality``, Pillow's default 75,
without the original's metadata or EXIF rotation, as there). Unlike there, the shorter side is
exactly ``short_side``: the source computes the size in floating point and gets 255 for about
one shorter side in eight (49, 98, 103 pixels, ...). An image whose size is already right is
stored as downloaded; ``short_side: 0`` stores every image as downloaded. The downloaded bytes
are checked before any resizing, so a bomb is never decoded in full.

The list is somebody else's data, so its URLs reach public hosts only (``allowed_hosts``
names exceptions; see :mod:`vcat.fetch.hosts`) and local files below the allowed roots only
(:mod:`vcat.localfiles`): a line cannot pack this machine's secrets into a released shard.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, TypeVar

import typer
from omegaconf import DictConfig
from PIL import Image
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.executors.run import run_sharded
from vcat.failures import FetchFailure
from vcat.fetch.download import RetryPolicy
from vcat.fetch.hosts import HostPolicy
from vcat.fetch.small import fetch_bytes
from vcat.images import (
    DEFAULT_MAX_PIXELS,
    ImageFailure,
    ImageInfo,
    ImageLimits,
    ImageProblem,
    check_image,
)
from vcat.lists.reading import ListFormatError, open_list
from vcat.parts import (
    WHOLE,
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    finished_parts,
    merge_samples,
    part_folder,
)
from vcat.regular import NotRegularFile, require_regular
from vcat.shards import ShardError, ShardWriter, check_member_name
from vcat.stage import MetricsOption, OverwriteOption, ParamsOption, StageError, write_json
from vcat.stage_cli import (
    StageFailed,
    list_argument,
    output_argument,
    run_stage,
    shard_or_merge,
)
from vcat.stage_cli import settings as stage_settings

NAME = "flickr-images"
default_conf: dict[str, Any] = {
    "jobs": 8,  # parallel downloads
    "attempts": 3,  # per image, with exponential backoff
    "max_image_bytes": 64 << 20,
    "max_image_pixels": DEFAULT_MAX_PIXELS,  # more is a decompression_bomb failure
    "shard_max_count": 10_000,
    "shard_max_bytes": 1 << 30,
    "max_missing_fraction": 0.0,  # Flickr deletes photos: real subsets need a few percent
    # the shorter side of every stored image, as the source project's downloader stores them;
    # 0 stores the downloaded bytes as they are
    "short_side": 256,
    "enlarge": True,  # smaller images are enlarged to short_side, as the downloader does
    "jpeg_quality": 75,  # of resized JPEGs: Pillow's default, which the downloader uses
    # hosts that may serve images although they are not public (a lab mirror); any other
    # loopback, private or link-local address in a list is refused (vcat.fetch.hosts)
    "allowed_hosts": [],
}
pipeline_keys = ("entry", "subsets")

MISSING_NAME = "missing.tsv"
RUN_NAME = ".run.json"  # what the shards in the folder were made from
_T = TypeVar("_T")
_UNSAFE_URL = re.compile(r"[\x00-\x20\x7f]|%00")
Fetched = bytes | FetchFailure | ImageProblem  # an image's bytes, or why there are none


class TooManyMissing(StageFailed):
    """More images could not be had than the stage allows."""


@dataclass(frozen=True)
class Row:
    """One line of a subset list."""

    line: int
    flickr_id: str
    url: str
    path: str

    @property
    def key(self) -> str:
        return str(PurePosixPath(self.path).with_suffix(""))

    @property
    def ext(self) -> str:
        return PurePosixPath(self.path).suffix.lstrip(".").lower()


def read_rows(list_path: Path) -> list[Row]:
    """Every line of a Flickr-CC list (gzip'd or not), checked; errors name file and line."""
    try:
        require_regular(list_path)  # a FIFO would be waited on forever
    except NotRegularFile as exc:
        raise ListFormatError(str(exc)) from None
    rows = []
    try:
        with (
            open_list(list_path) as (binary, _),
            io.TextIOWrapper(binary, encoding="utf-8", newline="") as lines,
        ):
            for number, text in enumerate(lines, start=1):
                fields = text.rstrip("\r\n").split("\t")
                if len(fields) != 3 or not all(fields):
                    raise ListFormatError(
                        f"{list_path}:{number}: expected 3 tab-separated fields "
                        "(flickr_id, url, relative path)"
                    )
                row = Row(number, *fields)
                if _UNSAFE_URL.search(row.url):
                    raise ListFormatError(
                        f"{list_path}:{number}: the URL holds a space, a control character or "
                        "an encoded NUL (%00); fix the line"
                    )
                try:
                    check_member_name(row.key, row.ext)
                except ShardError as exc:
                    raise ListFormatError(f"{list_path}:{number}: {exc}") from None
                rows.append(row)
    except (EOFError, gzip.BadGzipFile, UnicodeDecodeError) as exc:
        raise ListFormatError(f"{list_path}: not a readable list ({exc}); fetch it again") from None
    if not rows:
        raise ListFormatError(f"{list_path}: the list holds no lines")
    return rows


def _signature(list_path: Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    digest = hashlib.md5(list_path.read_bytes()).hexdigest()
    kept = ("shard_max_count", "shard_max_bytes", "short_side", "enlarge", "jpeg_quality")
    return {"list_md5": digest, **{key: settings[key] for key in kept}}


def _prepare_folder(output: Path, signature: dict[str, Any], overwrite: bool) -> None:
    """Empty ``output`` unless it holds shards made from the same list and limits."""
    run_file = output / RUN_NAME
    try:
        same = json.loads(run_file.read_text(encoding="utf-8")) == signature
    except (FileNotFoundError, ValueError):  # none, or cut short by a kill: start afresh
        same = False
    if overwrite or not same:
        shutil.rmtree(output, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)
    partial = output / f".{RUN_NAME}.partial"
    try:
        partial.write_text(json.dumps(signature, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(partial, run_file)
    finally:
        partial.unlink(missing_ok=True)


def _recorded_missing(output: Path) -> dict[int, str]:
    """Lines recorded as missing by an earlier run, with their record."""
    path = output / MISSING_NAME
    if not path.is_file():
        return {}
    records = {}
    for text in path.read_text(encoding="utf-8", errors="replace").splitlines()[1:]:
        fields = text.split("\t")
        if len(fields) == 5 and fields[0].isdigit():  # else cut by a kill: that image is retried
            records[int(fields[0])] = text
    return records


def _fetch(
    row: Row, policy: RetryPolicy, max_bytes: int, hosts: HostPolicy
) -> bytes | FetchFailure:
    try:
        return fetch_bytes(row.url, policy=policy, max_bytes=max_bytes, hosts=hosts)
    except FetchFailure as failure:
        return failure


@dataclass(frozen=True)
class Resize:
    """How stored images are resized: shorter side (0: not at all), enlarging, JPEG quality."""

    short_side: int = 0
    enlarge: bool = True
    jpeg_quality: int = 75


def resized(data: bytes, info: ImageInfo, resize: Resize) -> bytes:
    """The checked image ``data`` (``info`` says what it is) with its shorter side at
    ``resize.short_side``, saved in its own format; ``data`` itself when no resize is due."""
    short = min(info.width, info.height)
    target = resize.short_side
    if target <= 0 or short == target or (short < target and not resize.enlarge):
        return data
    size = (info.width * target // short, info.height * target // short)
    kind = "JPEG" if info.format in ("JPEG", "MPO") else info.format
    options = {"quality": resize.jpeg_quality} if kind == "JPEG" else {}
    buffer = io.BytesIO()
    with Image.open(io.BytesIO(data), formats=[info.format]) as image:
        image.resize(size).save(buffer, format=kind, **options)
    return buffer.getvalue()


def _checked(
    row: Row, result: bytes | FetchFailure, limits: ImageLimits, resize: Resize
) -> Fetched:
    """What to store for ``row``: ``result`` when it is a body that decodes as the image
    ``row`` names, resized as ``resize`` says; else why there is nothing."""
    if isinstance(result, FetchFailure):
        return result
    try:
        info = check_image(result, row.ext, limits)
    except ImageProblem as problem:
        return problem
    try:
        return resized(result, info, resize)
    except Exception as exc:  # a decoder or encoder's complaint, after the checks passed
        return ImageProblem(ImageFailure.CORRUPT, f"cannot be resized ({exc})")


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[missing]} missing"),
        TimeRemainingColumn(),
    )


def _resume_point(rows: list[Row], kept_samples: int, recorded: dict[int, str]) -> int:
    """The index of the first row still to download after an earlier run sealed
    ``kept_samples`` samples; lines recorded missing before that point stay missing."""
    sealed = 0
    for index, row in enumerate(rows):
        if sealed == kept_samples:
            return index
        if row.line not in recorded:
            sealed += 1
    return len(rows)


def _in_order(
    pool: ThreadPoolExecutor, work: Callable[[Row], _T], rows: list[Row], window: int
) -> Iterator[_T]:
    """``work(row)`` for each row, run on ``pool`` with at most ``window`` in flight, in order
    (so memory holds ``window`` images however long the list)."""
    pending: deque[Future[_T]] = deque()
    for row in rows:
        pending.append(pool.submit(work, row))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def main(
    conf: Mapping[str, Any] | None,
    list_path: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    shard: ShardSpec | None = None,
    merge: int | None = None,
) -> Path:
    """Download every image of ``list_path`` into shards in the folder ``output``; with
    ``shard`` (even 0/1) only the lines of its block, into its part beside ``output``; with
    ``merge`` the parts combined.

    Skips nothing that an earlier complete run with the same list and limits made, resumes
    an interrupted one, and starts afresh otherwise (or with ``overwrite``). ``metrics``,
    when given, receives the counts of listed, stored and missing images as JSON.
    """
    settings = stage_settings(NAME, default_conf, conf)
    jobs = int(settings.jobs)
    if jobs < 1 or int(settings.attempts) < 1:
        raise StageError(f"stage {NAME}: jobs and attempts must be at least 1")
    if int(settings.short_side) < 0 or not 1 <= int(settings.jpeg_quality) <= 100:
        raise StageError(
            f"stage {NAME}: short_side must be >= 0 (0: keep the size) and jpeg_quality 1..100"
        )
    rows = read_rows(list_path)
    signature = _signature(list_path, settings)
    allowed = _allowed(settings, len(rows))
    if merge is not None:
        shards, missing = _merge(output, merge, rows, signature, settings, overwrite)
        folder, listed = output, len(rows)
        if missing > allowed:
            raise _too_many(list_path, missing, allowed, settings, output / MISSING_NAME)
    else:
        block = (shard or WHOLE).block(len(rows))
        folder = output if shard is None else part_folder(output, shard)
        own = signature if shard is None else _part_signature(signature, shard, block)
        _prepare_folder(folder, own, overwrite)
        todo = rows[block.start : block.stop]
        shards, missing = _download(list_path, todo, folder, settings, allowed)
        listed = len(todo)
    stored = listed - missing
    stderr.print(
        f"{folder}: {stored:,} of {listed:,} images in {shards} shard(s), {missing:,} missing",
        highlight=False,
    )
    if metrics is not None and shard is None:
        counts = {"listed": listed, "stored": stored, "missing": missing, "shards": shards}
        write_json(metrics, counts)
    return folder


def _allowed(settings: Any, listed: int) -> int:
    """The images of a list of ``listed`` lines that may be missing. A shard stops on this
    figure too, not on its share of it: missing images crowd in some blocks, and a shard
    fails only when the whole list would."""
    return int(float(settings.max_missing_fraction) * listed)


def _too_many(
    list_path: Path, missing: int, allowed: int, settings: Any, log: Path
) -> TooManyMissing:
    return TooManyMissing(
        f"{list_path}: {missing} images missing, more than the {allowed} that "
        f"{NAME}.max_missing_fraction={settings.max_missing_fraction} allows; see {log}. The "
        "images stored so far are kept: run the stage again to retry the rest"
    )


def remote_reads(list_path: Path, count: int) -> list[list[Path]]:
    """What each of ``count`` shards reads besides URLs, for executor data: remote: the list.
    StageError for a line naming a local file (``file:``): a shard on another node has none
    of this machine's files, and would count the image missing."""
    for row in read_rows(list_path):
        if row.url.lower().startswith("file:"):
            raise StageError(
                f"{list_path}:{row.line}: {row.url} is a file of this machine, which a shard "
                "on another node cannot read; run this stage with executor data: shared"
            )
    return [[list_path] for _ in range(count)]


def _part_signature(signature: dict[str, Any], spec: ShardSpec, block: range) -> dict[str, Any]:
    return {**signature, "shard": str(spec), "block": [block.start, block.stop]}


def _download(
    list_path: Path, rows: list[Row], folder: Path, settings: Any, allowed: int
) -> tuple[int, int]:
    """The images of ``rows`` into the prepared shard folder ``folder``, resuming what an
    earlier run sealed there, with ``missing.tsv``; the shards and the missing images.
    TooManyMissing as soon as more than ``allowed`` are missing."""
    jobs = int(settings.jobs)
    resize = Resize(int(settings.short_side), bool(settings.enlarge), int(settings.jpeg_quality))
    policy = RetryPolicy(attempts=int(settings.attempts))
    hosts = HostPolicy.allowing(settings.allowed_hosts)
    recorded = _recorded_missing(folder)
    with ShardWriter(
        folder,
        max_count=int(settings.shard_max_count),
        max_bytes=int(settings.shard_max_bytes),
    ) as writer:
        start = _resume_point(rows, writer.resumed_samples, recorded)
        missing = [recorded[row.line] for row in rows[:start] if row.line in recorded]
        for row in rows[:start]:
            if row.line not in recorded:
                writer.add(row.key, _already_sealed)
        with (
            _MissingLog(folder / MISSING_NAME, missing) as log,
            _progress() as progress,
            ThreadPoolExecutor(jobs) as pool,
        ):
            task = progress.add_task(list_path.name, total=len(rows), completed=start, missing=0)
            todo = rows[start:]
            max_bytes = int(settings.max_image_bytes)
            limits = ImageLimits(max_bytes, int(settings.max_image_pixels))

            def download(row: Row) -> Fetched:
                return _checked(row, _fetch(row, policy, max_bytes, hosts), limits, resize)

            results = _in_order(pool, download, todo, 4 * jobs)
            for row, result in zip(todo, results, strict=True):
                if isinstance(result, FetchFailure | ImageProblem):
                    log.add(row, result)
                    if log.count > allowed:
                        raise _too_many(list_path, log.count, allowed, settings, log.path)
                else:
                    writer.add(row.key, {row.ext: result})
                progress.update(task, advance=1, missing=log.count)
    return len(writer.index.shards), log.count


def _merge(
    output: Path,
    count: int,
    rows: list[Row],
    signature: dict[str, Any],
    settings: Any,
    overwrite: bool,
) -> tuple[int, int]:
    """The ``count`` finished parts of ``output`` into it; the shards and missing images."""
    parts = finished_parts(output, count)
    missing: list[str] = []
    for number, part in enumerate(parts):
        spec = ShardSpec(number, count)
        expected = _part_signature(signature, spec, spec.block(len(rows)))
        try:
            made_from = json.loads((part / RUN_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            made_from = None
        if made_from != expected:
            raise PartsError(
                f"{part} was made from another list or other settings; run the stage with "
                f"--shard {spec} again, then merge"
            )
        missing += list(_recorded_missing(part).values())
    _prepare_folder(output, signature, overwrite)
    index = merge_samples(
        parts,
        output,
        max_count=int(settings.shard_max_count),
        max_bytes=int(settings.shard_max_bytes),
    )
    with _MissingLog(output / MISSING_NAME, missing):
        pass
    return len(index.shards), len(missing)


def _already_sealed() -> dict[str, bytes]:
    raise AssertionError("a sample of a sealed shard was asked for again")


class _MissingLog:
    """``missing.tsv``: a header, then one line per image that could not be had, kept in
    list order and flushed as it grows so that an interrupted run keeps it."""

    HEADER = "line\tflickr_id\turl\tfailure\treason\n"

    def __init__(self, path: Path, kept: list[str]) -> None:
        self.path = path
        self.count = len(kept)
        partial = path.with_name(f".{path.name}.partial")
        try:
            text = self.HEADER + "".join(f"{record}\n" for record in kept)
            partial.write_text(text, encoding="utf-8")
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)  # a full disk leaves no half-written file
        self._stream = path.open("a", encoding="utf-8")

    def add(self, row: Row, failure: FetchFailure | ImageProblem) -> None:
        reason = " ".join(failure.reason.split())
        self._stream.write(f"{row.line}\t{row.flickr_id}\t{row.url}\t{failure.failure}\t{reason}\n")
        self._stream.flush()
        self.count += 1

    def __enter__(self) -> _MissingLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stream.close()


ListArgument = list_argument("Subset list: id, URL and relative path per line, gzip'd or not.")
OutputArgument = output_argument("Folder of shards to write.", folder=True)


def command(
    context: typer.Context,
    list_path: ListArgument,
    output: OutputArgument,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Download the images of a Flickr-CC subset list into WebDataset shards."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(conf, list_path, output, overwrite, metrics, spec, merge)

        run_sharded(
            context,
            output,
            params,
            spec,
            merge,
            run,
            block_inputs=lambda count: remote_reads(list_path, count),
        )

    run_stage(NAME, default_conf, params, work, pipeline_keys)
