"""Statistics of a dataset tree, as numbers DVC can show and diff as metrics.

Everything here is counted from the files themselves (decoded images, video streams,
subset lists), so a metric that moves between commits means the data moved. A file that is
not what its name says (an image that does not decode, a FIFO or device in the tree, a
folder that cannot be listed) is a failure recorded with its class and relative path, never
opened when it is not a regular file, and never counted as an image.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vcat.catalog.schema import ArchiveKind, DatasetEntry, ListFormat, Subset
from vcat.images import ImageFailure, ImageInfo, ImageLimits, ImageProblem, check_image_file
from vcat.regular import NotRegularFile, open_regular, out_of_resources, require_regular

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})
DEPTH_SUFFIXES = frozenset({".h5", ".hdf5"})
ARRAY_SUFFIXES = frozenset({".npz", ".npy"})
MEMMAP_WIDTH = 120
LISTED_FAILURES = 100  # failed files named in the metrics; the rest are only counted
CORRUPT_VIDEO = "corrupt_video"
SYMLINK_LOOP = "symlink_loop"


@dataclass
class _Range:
    """Minimum, mean and maximum of a stream of numbers."""

    count: int = 0
    total: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.low = min(self.low, value)
        self.high = max(self.high, value)

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {}
        return {"min": self.low, "mean": round(self.total / self.count, 3), "max": self.high}


@dataclass
class TreeStats:
    """What one walk over a tree found."""

    files: int = 0
    bytes: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    widths: _Range = field(default_factory=_Range)
    heights: _Range = field(default_factory=_Range)
    video_frames: int = 0
    video_seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # relative path: failure class


class StatsError(Exception):
    """Raised for a file that cannot be read; the message names the file."""


def _files(root: Path, failures: dict[str, str]) -> Iterator[Path]:
    """Every non-folder under ``root`` in sorted order, following links to folders as a
    loader would; a folder that cannot be listed, or a link back to a folder that contains
    it (a loop), is recorded in ``failures`` instead of being skipped silently."""

    def unlisted(error: OSError) -> None:
        if out_of_resources(error):
            raise error
        where = Path(error.filename or root)
        failures[where.relative_to(root).as_posix()] = ImageFailure.UNREADABLE

    identities: dict[Path, tuple[int, int]] = {}  # each folder walked: its (device, inode)
    for folder, dirs, names in os.walk(root, onerror=unlisted, followlinks=True):
        here = Path(folder)
        try:
            info = os.stat(here)
        except OSError as error:  # removed while the walk ran
            unlisted(error)
            dirs.clear()
            continue
        identity = (info.st_dev, info.st_ino)
        if here != root and identity in {identities.get(up) for up in here.parents}:
            failures[here.relative_to(root).as_posix()] = SYMLINK_LOOP
            dirs.clear()
            continue
        identities[here] = identity
        dirs.sort()
        for name in sorted(names):
            yield here / name


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "images"
    if suffix in VIDEO_SUFFIXES:
        return "videos"
    if suffix in DEPTH_SUFFIXES:
        return "depth_maps"
    if suffix in ARRAY_SUFFIXES:
        return "arrays"
    if path.name.endswith((".tsv.gz", ".txt", ".memmap", ".csv", ".conf")):
        return "lists"
    return "other"


def _video_length(path: Path) -> tuple[int, float]:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for packet in container.demux(stream) if packet.size)
            seconds = float(stream.duration * stream.time_base) if stream.duration else 0.0
    except (av.FFmpegError, IndexError) as exc:
        raise StatsError(f"{path}: not a readable video ({exc})") from exc
    return frames, seconds


def walk_tree(root: Path, limits: ImageLimits | None = None, jobs: int = 1) -> TreeStats:
    """Count files, bytes and kinds under ``root``; decode every image (within ``limits``,
    on ``jobs`` threads: Pillow decodes without holding the GIL) and read video lengths.
    Regular files count in ``files`` and ``bytes``; one that fails counts under the kind
    ``failed`` and in ``failures`` with its class, as does anything that is not a regular
    file (symlinks are followed; a FIFO or device is never opened). The result does not
    depend on ``jobs``."""
    stats = TreeStats()
    pending: deque[tuple[str, Future[ImageInfo]]] = deque()

    def count(kind: str) -> None:
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1

    def collect() -> None:
        relative, checked = pending.popleft()
        try:
            image = checked.result()
        except ImageProblem as problem:
            stats.failures[relative] = problem.failure
            count("failed")
            return
        stats.widths.add(image.width)
        stats.heights.add(image.height)
        count("images")

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        for path in _files(root, stats.failures):
            relative = path.relative_to(root).as_posix()
            try:
                size = require_regular(path).st_size
            except NotRegularFile:
                stats.failures[relative] = ImageFailure.NOT_A_FILE
                continue
            except OSError as error:  # a dangling or looping symlink, a file that cannot be read
                if out_of_resources(error):
                    raise
                stats.failures[relative] = ImageFailure.UNREADABLE
                continue
            stats.files += 1
            stats.bytes += size
            kind = _kind(path)
            if kind == "images":
                pending.append((relative, pool.submit(check_image_file, path, limits)))
                if len(pending) >= 4 * max(1, jobs):  # bounded memory however large the tree
                    collect()
                continue
            if kind == "videos":
                try:
                    frames, seconds = _video_length(path)
                except StatsError:
                    stats.failures[relative] = CORRUPT_VIDEO
                    kind = "failed"
                else:
                    stats.video_frames += frames
                    stats.video_seconds += seconds
            count(kind)
        while pending:
            collect()
    return stats


def failure_metrics(failures: dict[str, str]) -> dict[str, Any]:
    """How many files failed, per class, and the first ``LISTED_FAILURES`` of them by path."""
    listed = dict(sorted(failures.items())[:LISTED_FAILURES])
    metrics: dict[str, Any] = {
        "count": len(failures),
        "by_class": dict(sorted(Counter(failures.values()).items())),
    }
    if failures:
        metrics["files"] = listed
    if len(failures) > len(listed):
        metrics["files_not_listed"] = len(failures) - len(listed)
    return metrics


def subset_list_path(entry: DatasetEntry, subset: Subset, root: Path) -> Path | None:
    """Where ``subset``'s list file lies under ``root`` once fetched; None if it has none."""
    if subset.list_file is None:
        return None
    source = next(s for s in entry.sources if s.name == subset.list_file.source)
    base = root / (source.unpack_to or ".")
    if source.archive != ArchiveKind.NONE and subset.list_file.member:
        return base / subset.list_file.member
    return base / source.filename


def count_list_items(path: Path, list_format: str) -> int:
    """How many items a subset list holds (crop lines for CroCo lists, one per line else)."""
    try:
        size = require_regular(path).st_size
    except FileNotFoundError:
        raise StatsError(f"{path}: the list is missing; fetch it") from None
    except NotRegularFile as exc:
        raise StatsError(str(exc)) from None
    if list_format == ListFormat.MEMMAP_S120:
        if size % MEMMAP_WIDTH:
            raise StatsError(f"{path}: {size} bytes is not a whole number of 120-byte paths")
        return size // MEMMAP_WIDTH
    count = number = 0
    try:
        with open_regular(path) as raw:
            binary = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
            for line in io.TextIOWrapper(binary, encoding="utf-8"):
                number += 1
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                if list_format == ListFormat.CROCO_CROPS and len(text.split(", ")) < 8:
                    continue  # a pair header; its crop lines are the items
                count += 1
    except UnicodeDecodeError:
        raise StatsError(f"{path}:{number + 1}: not UTF-8 text; fetch the list again") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise StatsError(f"{path}: not a readable gzip file ({exc}); fetch it again") from None
    return count


def dataset_stats(
    entry: DatasetEntry, root: Path, limits: ImageLimits | None = None, jobs: int = 1
) -> dict[str, Any]:
    """The metrics of a fetched dataset: tree statistics, the files that failed (see
    :func:`walk_tree`) and, per subset, listed vs expected."""
    tree = walk_tree(root, limits, jobs)
    metrics: dict[str, Any] = {
        "files": tree.files,
        "bytes": tree.bytes,
        "by_kind": dict(sorted(tree.by_kind.items())),
        "failures": failure_metrics(tree.failures),
    }
    if tree.widths.count:
        metrics["image_width"] = tree.widths.summary()
        metrics["image_height"] = tree.heights.summary()
    if tree.by_kind.get("videos"):
        metrics["video_frames"] = tree.video_frames
        metrics["video_seconds"] = round(tree.video_seconds, 3)
    subsets: dict[str, Any] = {}
    for subset in entry.subsets:
        path = subset_list_path(entry, subset, root)
        if path is None or subset.list_file is None:
            continue
        if not path.exists():
            raise StatsError(f"{path}: the list of subset {subset.name!r} is missing; fetch it")
        numbers: dict[str, int] = {"listed": count_list_items(path, subset.list_file.format)}
        if subset.count is not None:
            expected = subset.count.released or subset.count.published
            if expected is not None:
                numbers["expected"] = expected
        subsets[subset.name] = numbers
    if subsets:
        metrics["subsets"] = subsets
    return metrics
