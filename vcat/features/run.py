"""Features of every item, in batches, resumable: the loop behind the features stage.

The items (sorted by name) are cut into fixed batches ``[k*B, (k+1)*B)``; a batch whose
images are all finished in the partial folder is skipped, any other is computed whole (so
every image is seen by the network in the same batch as in an uninterrupted run) and its
unfinished images are written as one part (:mod:`vcat.features.h5layout`). Images are read
and resized in DataLoader workers while the network runs, parts are written by a thread
while the next batch runs, and on CUDA batches travel through pinned memory.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import DataLoader, Dataset

from vcat.features.extract import Extractor
from vcat.features.h5layout import SIGNATURE_ATTR, finished_parts, write_part
from vcat.features.images import Item, Prepared, prepare

FAILURES_ATTR = "vcat_failures"


@dataclass(frozen=True)
class Failure:
    name: str
    reason: str


class _Items(Dataset):
    def __init__(self, items: Sequence[Item], size: int, interpolation: str, depth: bool):
        self.items = items
        self.size = size
        self.interpolation = interpolation
        self.depth = depth

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Prepared:
        return prepare(self.items[index], self.size, self.interpolation, self.depth)


def _collate(prepared: list[Prepared]) -> tuple[torch.Tensor, list[Prepared]]:
    images = [p.image for p in prepared if p.image is not None]
    stacked = torch.from_numpy(np.stack(images)) if images else torch.empty(0, dtype=torch.uint8)
    for p in prepared:
        p.image = None
    return stacked, prepared


def batches(count: int, size: int) -> list[list[int]]:
    """The fixed batches of ``count`` items: consecutive runs of ``size`` indices."""
    return [list(range(start, min(start + size, count))) for start in range(0, count, size)]


def _done(folder: Path, signature: str) -> tuple[dict[str, Path], dict[str, str]]:
    """Finished images (name -> part) and recorded failures (name -> reason) in ``folder``."""
    parts = finished_parts(folder, signature)
    failures: dict[str, str] = {}
    for part in sorted(folder.glob("part-*.h5")) if folder.is_dir() else []:
        with h5py.File(part, "r") as file:
            for name, reason in json.loads(file.attrs.get(FAILURES_ATTR, "[]")):
                failures[name] = reason
    return parts, failures


def _write(
    folder: Path,
    index: int,
    signature: str,
    groups: list[tuple[str, dict[str, NDArray]]],
    failures: list[Failure],
) -> Path:
    # the failures ride on the part as an attribute, so a resumed run does not retry them
    listed = json.dumps([[f.name, f.reason] for f in failures])
    return write_part(folder, index, signature, groups, {FAILURES_ATTR: listed})


@dataclass
class Result:
    """Which part holds each finished image, and the images that could not be read."""

    parts: dict[str, Path]
    failures: list[Failure]


def extract_all(
    items: Sequence[Item],
    extractor: Extractor,
    folder: Path,
    signature: str,
    *,
    batch_size: int,
    workers: int,
    interpolation: str,
    store_depth: bool,
    step: Callable[[int], None] = lambda _: None,
) -> Result:
    """Every item not yet finished in ``folder`` described and written as parts there;
    ``step(n)`` after each batch with the images it settled (finished ones count at once)."""
    parts, failed = _done(folder, signature)
    settled = set(parts) | set(failed)
    todo = [
        b for b in batches(len(items), batch_size) if any(items[i].name not in settled for i in b)
    ]
    step(len(items) - sum(len(b) for b in todo))
    if not todo:
        return Result(parts, [Failure(n, r) for n, r in sorted(failed.items())])
    next_part = 1 + max((int(p.stem.split("-")[1]) for p in folder.glob("part-*.h5")), default=-1)
    loader = DataLoader(
        _Items(items, extractor.size, interpolation, store_depth),
        batch_sampler=todo,
        num_workers=min(workers, len(os.sched_getaffinity(0))),  # more only compete
        collate_fn=_collate,
        pin_memory=extractor.cuda,
        persistent_workers=False,
    )
    keypoints = extractor.keypoints
    with ThreadPoolExecutor(1) as writer:
        pending: Future[Path] | None = None
        for images, prepared in loader:
            outputs = extractor(images) if len(images) else None
            groups, failures, row = [], [], 0
            for p in prepared:
                if p.failure is not None:
                    if p.name not in settled:
                        failures.append(Failure(p.name, p.failure))
                    continue
                if p.name not in settled:
                    assert outputs is not None
                    groups.append(
                        (
                            p.name,
                            {
                                **p.arrays,
                                "keypoints": keypoints,
                                "descriptors": outputs.descriptors[row],
                                "global_descriptor": outputs.global_descriptor[row],
                            },
                        )
                    )
                row += 1
            if pending is not None:
                pending.result()
            pending = writer.submit(_write, folder, next_part, signature, groups, failures)
            next_part += 1
            step(len(prepared))
        if pending is not None:
            pending.result()
    parts, failed = _done(folder, signature)
    return Result(parts, [Failure(n, r) for n, r in sorted(failed.items())])


__all__ = ["SIGNATURE_ATTR", "Failure", "Result", "batches", "extract_all"]
