"""Stage ``video-frames``: videos to JPEG frames on an fps grid, in WebDataset shards.

Input: a folder of videos (walked in sorted order of relative path; the ``extensions``
setting says which files are videos) or a list file naming one video per line, relative to
``--root`` (default: the list's folder; blank lines and ``#`` comments are skipped). Each
video is decoded once and the frames on the ``fps`` grid are kept, their shorter side capped
at ``max_short_side`` (see :mod:`vcat.video.decode` for the exact rule), as JPEG numbered
from 1. Output folder:

- shards: one sample per frame, keyed ``<frame dir>/<number:05d>`` with member ``.jpg``
  (:mod:`vcat.video.naming`), so ``vcat.shards.unpack_shards`` gives back the source
  project's ``<frame dir>/%05d.jpg`` tree;
- ``videos.jsonl``: per video in input order, its frame count and frame times, or its
  failure (:mod:`vcat.video.records`);
- ``video_list.txt`` (``<frame dir> <n_frames>``, Kinetics style) and ``frame_list.txt`` (one
  frame path per line, Krishna-CAM style), in video order;
- ``failures.tsv``: each video that gave no frames (not a file, empty, unreadable, no video
  stream, decode error, no frames) with its class and message. The stage fails (exit 1)
  once more than ``max_failed_fraction`` of the videos failed.

A stopped run resumes at the first video whose frames are not all in sealed shards; a
re-run of a finished one decodes nothing and changes no byte; a folder made from other videos
(relative path and size), settings or decoding libraries is started afresh. A worker holds
one video's JPEG frames in memory at a time (a 10-minute video at 10 fps: about 6,000).
``--shard I/N`` does a contiguous block of the videos into a part beside the output;
``--merge N`` combines the parts into exactly what one run writes.
"""

from __future__ import annotations

import filecmp
import functools
import hashlib
import json
import os
import shutil
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import av
import cv2
import typer
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.executors.listing import listed_files
from vcat.executors.run import run_sharded
from vcat.parts import (
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    concatenate,
    finished_parts,
    merge_samples,
    part_folder,
)
from vcat.processes import ordered_map
from vcat.regular import read_regular_text
from vcat.shards import ShardError, ShardWriter, check_member_name
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    write_json,
)
from vcat.stage_cli import StageFailed, run_stage, shard_or_merge
from vcat.video.decode import (
    ExtractedVideo,
    FrameSettings,
    VideoProblem,
    extract_frames,
    frame_rate,
)
from vcat.video.naming import (
    FAILURES_NAME,
    FRAME_DIR_SCHEMES,
    FRAME_EXT,
    FRAME_LIST_NAME,
    RECORDS_NAME,
    VIDEO_LIST_NAME,
    FrameNameError,
    frame_dir,
    frame_key,
)
from vcat.video.records import (
    VideoRecord,
    failure_lines,
    frame_list_lines,
    read_records,
    video_list_lines,
)

NAME = "video-frames"
default_conf: dict[str, Any] = {
    "fps": 10.0,  # frames kept per second of video (the grid of vcat.video.decode)
    "max_short_side": 256,  # shorter side of the kept frames at most this; 0: original size
    "jpeg_quality": 90,
    # files of an input folder that are videos (compared without case)
    "extensions": [".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"],
    "frame_dirs": "relative",  # relative: path without extension; basename: the source's flat names
    "jobs": 0,  # processes decoding videos; 0: one per core
    "thread_type": "SLICE",  # FFmpeg decoder threads per video: NONE, SLICE, FRAME or AUTO
    "shard_max_count": 10_000,
    "shard_max_bytes": 1 << 30,
    "max_failed_fraction": 0.0,  # of the videos; more fails the stage (exit 1)
}
pipeline_keys = ("entries",)

RUN_NAME = ".run.json"  # what the folder's shards were made from
JOURNAL_NAME = f".{RECORDS_NAME}.partial"  # the records of a run in progress


class ListError(ValueError):
    """Input that cannot be used (a bad list line, clashing frame dirs); names file and line."""


class TooManyFailed(StageFailed):
    """More videos gave no frames than the stage allows."""


@dataclass(frozen=True)
class Video:
    """One input video: its path relative to the input root, and where it is."""

    relative: str
    path: Path
    frame_dir: str


def _frame_dirs(videos: list[tuple[str, Path, str]], scheme: str) -> list[Video]:
    found: list[Video] = []
    seen: dict[str, str] = {}
    for relative, path, where in videos:
        try:
            directory = frame_dir(relative, scheme)
            check_member_name(frame_key(directory, 1), FRAME_EXT)
        except (FrameNameError, ShardError) as exc:
            raise ListError(f"{where}: {exc}") from None
        if directory in seen:
            raise ListError(
                f"{where}: {relative} and {seen[directory]} both get the frame dir "
                f"{directory!r}; rename one"
                + (" or use frame_dirs: relative" if scheme == "basename" else "")
            )
        seen[directory] = relative
        found.append(Video(relative, path, directory))
    return found


def walk_videos(folder: Path, extensions: Sequence[str], scheme: str) -> list[Video]:
    """The videos under ``folder`` (files whose extension is one of ``extensions``, links
    to files included), sorted by relative path."""
    wanted = {extension.lower() for extension in extensions}
    listed = listed_files(folder)  # a shard that fetched only its block's videos
    paths = _walk(folder) if listed is None else listed
    found = sorted(
        (path.relative_to(folder).as_posix(), path)
        for path in paths
        if path.suffix.lower() in wanted
    )
    return _frame_dirs([(relative, path, str(path)) for relative, path in found], scheme)


def _walk(folder: Path) -> Iterator[Path]:
    def unlisted(error: OSError) -> None:
        raise ListError(f"{error.filename}: cannot list the folder ({error.strerror})")

    for directory, _, names in os.walk(folder, onerror=unlisted):
        for name in names:
            yield Path(directory) / name


def read_video_list(list_path: Path, root: Path, scheme: str) -> list[Video]:
    """The videos a list file names, one relative path per line, in list order."""
    videos = []
    listed: dict[str, int] = {}
    try:
        text = read_regular_text(list_path)
    except UnicodeDecodeError:
        raise ListError(f"{list_path}: not UTF-8 text; a list names one video per line") from None
    for number, line in enumerate(text.splitlines(), start=1):
        relative = line.strip()
        if not relative or relative.startswith("#"):
            continue
        parts = PurePosixPath(relative).parts
        if relative.startswith("/") or ".." in parts or "\\" in relative:
            raise ListError(
                f"{list_path}:{number}: {relative!r} must be a path relative to the root "
                "(no leading '/', no '..', '/' as separator)"
            )
        if relative in listed:
            raise ListError(
                f"{list_path}:{number}: {relative} is listed again (line {listed[relative]})"
            )
        listed[relative] = number
        videos.append((relative, root / relative, f"{list_path}:{number}"))
    return _frame_dirs(videos, scheme)


def find_videos(source: Path, root: Path | None, settings: Mapping[str, Any]) -> list[Video]:
    """The input videos: a folder walked, or a list file read."""
    scheme = str(settings["frame_dirs"])
    if scheme not in FRAME_DIR_SCHEMES:
        raise StageError(f"stage {NAME}: frame_dirs is {scheme!r}, not one of {FRAME_DIR_SCHEMES}")
    if source.is_dir():
        if root is not None:
            raise ListError(f"--root is for a list file; {source} is a folder of videos")
        return walk_videos(source, list(settings["extensions"]), scheme)
    return read_video_list(source, root if root is not None else source.parent, scheme)


def frame_settings(settings: Mapping[str, Any]) -> FrameSettings:
    try:
        return FrameSettings(
            fps=frame_rate(settings["fps"]),
            max_short_side=int(settings["max_short_side"]),
            jpeg_quality=int(settings["jpeg_quality"]),
            thread_type=str(settings["thread_type"]).upper(),
        )
    except ValueError as exc:
        raise StageError(f"stage {NAME}: {exc}") from None


def _signature(videos: Sequence[Video], settings: Mapping[str, Any]) -> dict[str, Any]:
    """What the bytes of a folder depend on: the videos (path, size), the settings that
    change frames or shards, and the libraries that decode and encode."""
    listing = hashlib.md5()
    for video in videos:
        try:
            size = video.path.stat().st_size
        except OSError:
            size = -1
        listing.update(f"{video.relative}\t{video.frame_dir}\t{size}\n".encode())
    keys = ("fps", "max_short_side", "jpeg_quality", "shard_max_count", "shard_max_bytes")
    return {
        "videos": len(videos),
        "videos_md5": listing.hexdigest(),
        **{key: settings[key] for key in keys},
        "frame_dirs": settings["frame_dirs"],
        "libraries": {
            "av": av.__version__,
            "ffmpeg": av.ffmpeg_version_info,
            "cv2": cv2.__version__,
        },
    }


def _signature_text(signature: Mapping[str, Any]) -> str:
    return json.dumps(signature, sort_keys=True) + "\n"


def _prepare_folder(folder: Path, signature: Mapping[str, Any], overwrite: bool) -> None:
    """Empty ``folder`` unless it holds work made from the same videos and settings."""
    run_file = folder / RUN_NAME
    text = _signature_text(signature)
    try:
        same = run_file.read_text(encoding="utf-8") == text
    except (FileNotFoundError, UnicodeDecodeError):
        same = False
    if overwrite or not same:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    _write_if_changed(run_file, [text])


def _write_if_changed(path: Path, lines: Iterable[str]) -> None:
    """``lines`` as the file ``path``, written under a temporary name and renamed; an
    existing file with the same bytes is left alone."""
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8", newline="") as stream:
            stream.writelines(lines)
        if path.is_file() and filecmp.cmp(partial, path, shallow=False):
            return
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _resumable(folder: Path, videos: Sequence[Video], sealed: int) -> list[VideoRecord]:
    """The records of an earlier run for the leading videos whose frames all lie in the
    ``sealed`` samples kept by the shard writer: those videos are not decoded again."""
    journal = folder / JOURNAL_NAME
    path = journal if journal.is_file() else folder / RECORDS_NAME
    if not path.is_file():
        return []
    kept: list[VideoRecord] = []
    frames = 0
    for video, record in zip(videos, read_records(path, tolerate_cut=True).records, strict=False):
        if record.video != video.relative or record.frame_dir != video.frame_dir:
            break
        frames += record.frames
        if frames > sealed:
            break
        kept.append(record)
    return kept


def _extract(video: Video, settings: FrameSettings) -> ExtractedVideo | VideoProblem:
    try:
        return extract_frames(video.path, settings)
    except VideoProblem as problem:
        return problem


def _results(
    videos: Sequence[Video], settings: FrameSettings, jobs: int
) -> Iterator[ExtractedVideo | VideoProblem]:
    """What each video gives, in order; ``jobs`` processes decode at most ``2 * jobs``
    videos ahead of the one being stored. Spawned, not forked: a fork of a process running
    threads (the progress display's, a library's pool) can inherit a lock held forever."""
    extract = functools.partial(_extract, settings=settings)
    jobs = min(jobs, len(videos))
    advice = "lower jobs; what was sealed is kept, run the stage again to resume"
    yield from ordered_map(
        extract, videos, jobs, start_method="spawn", ahead=2 * jobs, advice=advice
    )


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[frames]:,} frames, {task.fields[failed]} failed"),
        TimeRemainingColumn(),
    )


def _already_sealed() -> dict[str, bytes]:
    raise AssertionError("a frame of a sealed shard was asked for again")


def _allowed_failures(settings: Mapping[str, Any], videos: int) -> int:
    return int(float(settings["max_failed_fraction"]) * videos)


def _too_many(failed: int, total: int, settings: Mapping[str, Any], detail: str) -> TooManyFailed:
    allowed = _allowed_failures(settings, total)
    return TooManyFailed(
        f"{failed} of {total} videos gave no frames, more than the {allowed} that "
        f"{NAME}.max_failed_fraction={settings['max_failed_fraction']} allows; {detail}"
    )


def _record(video: Video, result: ExtractedVideo | VideoProblem) -> VideoRecord:
    if isinstance(result, VideoProblem):
        return VideoRecord(video.relative, video.frame_dir, (), result.failure, result.reason)
    return VideoRecord(video.relative, video.frame_dir, tuple(result.times_ms))


def extract_videos(
    videos: Sequence[Video],
    folder: Path,
    settings: Mapping[str, Any],
    overwrite: bool = False,
    label: str = NAME,
    total: int | None = None,
) -> list[VideoRecord]:
    """The frames of ``videos`` into the shard folder ``folder`` with their records, resuming
    an earlier run with the same videos and settings; returns the records in order. Stops
    once more videos failed than the settings allow of ``total`` (default: all of
    ``videos``; a shard's part counts against the whole input, as the merge will)."""
    frames_conf = frame_settings(settings)
    if int(settings["jobs"]) < 0:
        raise StageError(f"stage {NAME}: jobs must be 0 (one per core) or more")
    jobs = int(settings["jobs"]) or os.cpu_count() or 1
    total = len(videos) if total is None else total
    allowed = _allowed_failures(settings, total)
    _prepare_folder(folder, _signature(videos, settings), overwrite)
    with ShardWriter(
        folder,
        max_count=int(settings["shard_max_count"]),
        max_bytes=int(settings["shard_max_bytes"]),
    ) as writer:
        records = _resumable(folder, videos, writer.resumed_samples)
        for record in records:
            for number in record.numbers:
                writer.add(frame_key(record.frame_dir, number), _already_sealed)
        failed = sum(record.failure is not None for record in records)
        frames = sum(record.frames for record in records)
        todo = videos[len(records) :]
        if todo:  # a finished folder is only checked
            _write_if_changed(folder / JOURNAL_NAME, (record.to_line() for record in records))
            with (
                (folder / JOURNAL_NAME).open("a", encoding="utf-8") as journal,
                _progress() as bars,
            ):
                task = bars.add_task(
                    label,
                    total=len(videos),
                    completed=len(records),
                    frames=frames,
                    failed=failed,
                )
                for video, result in zip(todo, _results(todo, frames_conf, jobs), strict=True):
                    record = _record(video, result)
                    # the record goes first: frames in sealed shards always have their record
                    journal.write(record.to_line())
                    journal.flush()
                    records.append(record)
                    if record.failure is not None:
                        failed += 1
                        if failed > allowed:
                            raise _too_many(
                                failed,
                                total,
                                settings,
                                f"the last: {video.path}: {record.failure}: {record.message}. The "
                                "frames stored so far are kept: fix or remove the videos, or allow "
                                "more failures, and run the stage again to resume",
                            )
                    else:
                        assert isinstance(result, ExtractedVideo)
                        for number, jpeg in zip(record.numbers, result.frames, strict=True):
                            writer.add(frame_key(video.frame_dir, number), {FRAME_EXT: jpeg})
                    frames += record.frames
                    bars.update(task, advance=1, frames=frames, failed=failed)
    _write_if_changed(folder / RECORDS_NAME, (record.to_line() for record in records))
    (folder / JOURNAL_NAME).unlink(missing_ok=True)
    return records


def write_lists(folder: Path, records: Sequence[VideoRecord]) -> None:
    """The video list, the frame list and the failures file of ``records`` in ``folder``."""
    _write_if_changed(folder / VIDEO_LIST_NAME, video_list_lines(records))
    _write_if_changed(folder / FRAME_LIST_NAME, frame_list_lines(records))
    _write_if_changed(folder / FAILURES_NAME, failure_lines(records))


def counts(records: Sequence[VideoRecord], folder: Path) -> dict[str, Any]:
    failures = Counter(record.failure for record in records if record.failure is not None)
    with_frames = [record for record in records if record.failure is None]
    shards = sum(1 for path in folder.glob("shard-*.tar"))
    return {
        "videos": len(records),
        "videos_with_frames": len(with_frames),
        "failed": sum(failures.values()),
        "failures": dict(sorted(failures.items())),
        "frames": sum(record.frames for record in with_frames),
        "shards": shards,
    }


def _finish(
    folder: Path,
    records: Sequence[VideoRecord],
    settings: Mapping[str, Any],
    metrics: Path | None,
    total: int,
) -> None:
    write_lists(folder, records)
    numbers = counts(records, folder)
    if metrics is not None:
        write_json(metrics, numbers)
    stderr.print(
        f"{folder}: {numbers['frames']:,} frames of {numbers['videos_with_frames']:,} videos in "
        f"{numbers['shards']} shard(s), {numbers['failed']:,} failed",
        highlight=False,
    )
    if numbers["failed"] > _allowed_failures(settings, total):
        raise _too_many(
            numbers["failed"],
            total,
            settings,
            f"they are listed in {folder / FAILURES_NAME}",
        )


def block_videos(
    conf: Mapping[str, Any] | None, source: Path, root: Path | None, count: int
) -> list[list[Path]]:
    """The videos each of ``count`` shards reads (for executor data: remote)."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    videos = find_videos(source, root, settings)
    blocks = [ShardSpec(index, count).block(len(videos)) for index in range(count)]
    return [[videos[position].path for position in block] for block in blocks]


def main(
    conf: Mapping[str, Any] | None,
    source: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    root: Path | None = None,
    shard: ShardSpec | None = None,
) -> Path:
    """Extract the frames of the videos of ``source`` (a folder, or a list file relative to
    ``root``) into the folder ``output``; with a ``shard`` (even 0/1), only its block of
    videos, into its part folder beside ``output``. Returns the folder written."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    videos = find_videos(source, root, settings)
    if shard is None:
        folder, block, label = output, videos, source.name
    else:
        folder, label = part_folder(output, shard), f"{source.name} {shard}"
        block = [videos[position] for position in shard.block(len(videos))]
    records = extract_videos(block, folder, settings, overwrite, label, len(videos))
    _finish(folder, records, settings, metrics, len(videos))
    return folder


def merge(
    conf: Mapping[str, Any] | None,
    source: Path,
    output: Path,
    count: int,
    overwrite: bool = False,
    metrics: Path | None = None,
    root: Path | None = None,
) -> Path:
    """Combine the ``count`` finished parts of ``output`` into ``output``: the same bytes as
    one run over all the videos of ``source``."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    videos = find_videos(source, root, settings)
    parts = finished_parts(output, count)
    for index, part in enumerate(parts):
        block = [videos[position] for position in ShardSpec(index, count).block(len(videos))]
        expected = _signature_text(_signature(block, settings))
        try:
            found = (part / RUN_NAME).read_text(encoding="utf-8")
        except (FileNotFoundError, UnicodeDecodeError):
            found = None
        if found != expected:
            raise PartsError(
                f"{part}: made from other videos or settings than {source} with today's "
                f"params; run the stage with --shard {index}/{count} again, then merge"
            )
    _prepare_folder(output, _signature(videos, settings), overwrite)
    merge_samples(
        parts,
        output,
        max_count=int(settings["shard_max_count"]),
        max_bytes=int(settings["shard_max_bytes"]),
    )
    concatenate(parts, RECORDS_NAME, output / RECORDS_NAME)
    records = read_records(output / RECORDS_NAME).records
    _finish(output, records, settings, metrics, len(videos))
    return output


def command(
    context: typer.Context,
    source: Annotated[
        Path,
        typer.Argument(
            help="Folder of videos (walked in sorted order), or a list file naming one video "
            "per line relative to --root.",
            metavar="INPUT",
            exists=True,
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder of shards and lists to write.", file_okay=False, metavar="OUTPUT"
        ),
    ],
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder the paths of a list file are relative to (default: the list's folder).",
            file_okay=False,
            exists=True,
        ),
    ] = None,
    shard: ShardOption = None,
    merge_count: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Decode videos once and keep the frames on an fps grid as JPEG in WebDataset shards,
    with the Kinetics-style video list and the plain frame list."""
    spec, merge_count = shard_or_merge(shard, merge_count)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge_count: int | None) -> None:
            if merge_count is not None:
                merge(conf, source, output, merge_count, overwrite, metrics, root)
            else:
                main(conf, source, output, overwrite, metrics, root, spec)

        def blocks(count: int) -> list[list[Path]]:
            return block_videos(conf, source, root, count)

        run_sharded(context, output, params, spec, merge_count, run, block_inputs=blocks)

    run_stage(NAME, default_conf, params, work, pipeline_keys, input_errors=(ListError,))
