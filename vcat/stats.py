"""Statistics of a dataset tree, as numbers DVC can show and diff as metrics.

Everything here is counted from the files themselves (image headers, video streams,
subset lists), so a metric that moves between commits means the data moved.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vcat.catalog.schema import ArchiveKind, DatasetEntry, ListFormat, Subset

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})
DEPTH_SUFFIXES = frozenset({".h5", ".hdf5"})
ARRAY_SUFFIXES = frozenset({".npz", ".npy"})
MEMMAP_WIDTH = 120


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


class StatsError(Exception):
    """Raised for a file that cannot be read; the message names the file."""


def _files(root: Path) -> Iterator[Path]:
    for folder, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            yield Path(folder) / name


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


def walk_tree(root: Path) -> TreeStats:
    """Count files, bytes and kinds under ``root``; read image sizes and video lengths."""
    stats = TreeStats()
    for path in _files(root):
        stats.files += 1
        stats.bytes += path.stat().st_size
        kind = _kind(path)
        stats.by_kind[kind] = stats.by_kind.get(kind, 0) + 1
        if kind == "images":
            try:
                with Image.open(path) as image:
                    width, height = image.size
            except OSError as exc:
                raise StatsError(f"{path}: not a readable image ({exc})") from exc
            stats.widths.add(width)
            stats.heights.add(height)
        elif kind == "videos":
            frames, seconds = _video_length(path)
            stats.video_frames += frames
            stats.video_seconds += seconds
    return stats


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
    if list_format == ListFormat.MEMMAP_S120:
        size = path.stat().st_size
        if size % MEMMAP_WIDTH:
            raise StatsError(f"{path}: {size} bytes is not a whole number of 120-byte paths")
        return size // MEMMAP_WIDTH
    opener = gzip.open if path.suffix == ".gz" else open
    count = 0
    with opener(path, "rt", encoding="utf-8") as stream:
        for line in stream:
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            if list_format == ListFormat.CROCO_CROPS and len(text.split(", ")) < 8:
                continue  # a pair header; its crop lines are the items
            count += 1
    return count


def dataset_stats(entry: DatasetEntry, root: Path) -> dict[str, Any]:
    """The metrics of a fetched dataset: tree statistics and, per subset, listed vs expected."""
    tree = walk_tree(root)
    metrics: dict[str, Any] = {
        "files": tree.files,
        "bytes": tree.bytes,
        "by_kind": dict(sorted(tree.by_kind.items())),
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
        if not path.is_file():
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
