"""Image shards: every image member of a WebDataset shard folder, decoded once.

Rows of the ``images`` table, one per image member (``<key>.<ext>``): its shard, size in
bytes, whether it decodes (and the failure class when not: ``vcat.images``), width, height,
channels, and the mean and spread (standard deviation) of its grey levels, which catch black
and blank frames. JPEGs are decoded at an eighth of their size: libjpeg still reads every
coefficient, so a cut or corrupt stream fails as it would at full size, at a fraction of the
cost. Rows of the ``shards`` table, one per shard: whether its size and MD5 are those of the
index (a shard changed after it was written).

Shards are profiled in parallel on processes, one shard per task, reading one member at a
time: memory stays bounded by the largest image whatever the size of the artifact.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcat.gates.checks import (
    Check,
    row_count,
    values_between,
    values_in_set,
    values_true,
    values_unique,
)
from vcat.gates.profile import Profile, ProfileError, Table
from vcat.images import ImageProblem, load_image
from vcat.processes import ordered_map
from vcat.shards import INDEX_NAME, ShardError, ShardIndex

KIND = "images"
DESCRIPTION = "WebDataset shards of images (a folder with index.json)"
IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "ppm", "pgm"})
COLUMNS = (
    "item",
    "shard",
    "bytes",
    "decodable",
    "failure",
    "width",
    "height",
    "channels",
    "mean",
    "std",
)

CHECKS: list[Check] = [
    values_true(
        "decodable", "images", "decodable", "every image decodes to the end (not cut, corrupt "
        "or another kind of file)"
    ),
    values_between(
        "not_black", "images", "mean", "mean grey level at least {min_mean} (not a black frame)",
        low="min_mean", high=None, defaults={"min_mean": 8.0},
    ),
    values_between(
        "not_blank", "images", "std", "grey levels spread by at least {min_std} (not one flat "
        "colour)", low="min_std", high=None, defaults={"min_std": 2.0},
    ),
    values_between(
        "width", "images", "width", "width between {min_width} and {max_width} pixels",
        low="min_width", high="max_width", defaults={"min_width": None, "max_width": None},
    ),
    values_between(
        "height", "images", "height", "height between {min_height} and {max_height} pixels",
        low="min_height", high="max_height", defaults={"min_height": None, "max_height": None},
    ),
    values_in_set(
        "channels", "images", "channels", "channels one of {allowed}", "allowed", [1, 3]
    ),
    values_unique("unique", "images", "item", "no image appears twice"),
    row_count("count", "images", "images: exactly {equal}, or between {min} and {max}"),
    values_true(
        "shards_intact", "shards", "intact", "every shard has the size and MD5 its index records"
    ),
]  # fmt: skip


def detect(artifact: Path) -> bool:
    return (artifact / INDEX_NAME).is_file()


@dataclass(frozen=True)
class _ShardTask:
    folder: str
    number: int
    name: str
    size: int
    md5: str
    members: list[tuple[str, int, int]]  # (item, offset, size), in shard order


def load_index(artifact: Path) -> ShardIndex:
    """The shard index of ``artifact``; ProfileError when it is missing or unreadable."""
    if not artifact.is_dir():
        raise ProfileError(f"{artifact}: not a folder of shards; give the shard folder")
    if not (artifact / INDEX_NAME).is_file():
        raise ProfileError(
            f"{artifact}: no {INDEX_NAME}, so it is not a complete shard folder (the stage that "
            "writes it did not finish: run it again)"
        )
    try:
        return ShardIndex.load(artifact / INDEX_NAME)
    except ShardError as exc:
        raise ProfileError(str(exc)) from None


def _tasks(artifact: Path, index: ShardIndex) -> list[_ShardTask]:
    members: list[list[tuple[str, int, int]]] = [[] for _ in index.shards]
    for key, location in index.samples.items():
        for ext, (offset, size) in location.members.items():
            if ext.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS:
                members[location.shard].append((f"{key}.{ext}", offset, size))
    return [
        _ShardTask(str(artifact), number, shard.name, shard.bytes, shard.md5, members[number])
        for number, shard in enumerate(index.shards)
    ]


def grey_stats(image: Any) -> tuple[float, float]:
    """Mean and standard deviation of the grey levels (0-255) of a Pillow image."""
    grey = np.asarray(image.convert("L"), dtype=np.float32)
    return float(grey.mean()), float(grey.std())


def image_row(item: str, shard: str, data: bytes) -> tuple[Any, ...]:
    """The ``images`` row of one member."""
    suffix = item.rsplit(".", 1)[-1]
    try:
        info, image = load_image(data, suffix)
    except ImageProblem as problem:
        nan = float("nan")
        return (item, shard, len(data), False, str(problem.failure), nan, nan, nan, nan, nan)
    with image:
        mean, std = grey_stats(image)
        channels = len(image.getbands())
    return (item, shard, len(data), True, "", info.width, info.height, channels, mean, std)


def _profile_shard(task: _ShardTask) -> tuple[list[tuple[Any, ...]], tuple[str, bool, str]]:
    path = os.path.join(task.folder, task.name)
    rows: list[tuple[Any, ...]] = []
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        return rows, (task.name, False, f"cannot open: {exc.strerror}")
    try:
        size = os.fstat(descriptor).st_size
        for item, offset, length in task.members:
            rows.append(image_row(item, task.name, os.pread(descriptor, length, offset)))
        digest = hashlib.md5()
        position = 0
        while chunk := os.pread(descriptor, 1 << 20, position):
            digest.update(chunk)
            position += len(chunk)
    finally:
        os.close(descriptor)
    if size != task.size:
        return rows, (task.name, False, f"{size:,} bytes, the index says {task.size:,}")
    if digest.hexdigest() != task.md5:
        return rows, (task.name, False, "its MD5 is not the one in the index")
    return rows, (task.name, True, "")


def profile_shards(
    artifact: Path, workers: int | None
) -> Iterator[tuple[list[tuple[Any, ...]], tuple[str, bool, str]]]:
    """The image rows and the shard row of each shard of ``artifact``, in shard order."""
    tasks = _tasks(artifact, load_index(artifact))
    workers = max(1, min(workers or os.cpu_count() or 1, len(tasks)))
    yield from ordered_map(_profile_shard, tasks, workers, start_method="fork")


def tables(artifact: Path, workers: int | None) -> dict[str, Table]:
    """The ``images`` and ``shards`` tables of a shard folder."""
    import pandas as pd

    image_rows: list[tuple[Any, ...]] = []
    shard_rows: list[tuple[str, bool, str]] = []
    for rows, shard in profile_shards(artifact, workers):
        image_rows.extend(rows)
        shard_rows.append(shard)
    images = pd.DataFrame.from_records(image_rows, columns=list(COLUMNS))
    shards = pd.DataFrame.from_records(shard_rows, columns=["shard", "intact", "problem"])
    return {"images": Table(images, "item"), "shards": Table(shards, "shard")}


def failure_counts(images: Any) -> dict[str, int]:
    """Undecodable images by failure class."""
    failures = images.loc[~images["decodable"].astype(bool), "failure"]
    return {str(name): int(count) for name, count in failures.value_counts().sort_index().items()}


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    found = tables(artifact, workers)
    facts = {"failures": failure_counts(found["images"].frame)}
    return Profile(KIND, artifact, found, facts)
