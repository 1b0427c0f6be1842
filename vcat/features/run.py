"""Features of every item, in batches, resumable: the loop behind the features stage.

The items (sorted by name) are cut into fixed batches ``[k*B, (k+1)*B)``; a batch whose
images are all finished in the partial folder is skipped, any other is computed whole (so
every image is seen by the network in the same batch as in an uninterrupted run) and its
unfinished images are written as one part (:mod:`vcat.features.parts`). Images are read
and resized in DataLoader workers while the network runs, parts are written by a thread
while the next batch runs, and on CUDA batches travel through pinned memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from vcat.features.extract import Extractor
from vcat.features.images import Item, Prepared, prepare
from vcat.features.parts import Finished, finished, next_index, write_part
from vcat.processes import usable_cores


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
) -> Finished:
    """Every item not yet finished in ``folder`` described and written as parts there;
    ``step(n)`` after each batch with the images it settled (finished ones count at once)."""
    done = finished(folder, signature)
    settled = set(done.where) | set(done.failures)
    todo = [
        b for b in batches(len(items), batch_size) if any(items[i].name not in settled for i in b)
    ]
    step(len(items) - sum(len(b) for b in todo))
    if not todo:
        return done
    next_part = next_index(folder)
    loader = DataLoader(
        _Items(items, extractor.size, interpolation, store_depth),
        batch_sampler=todo,
        num_workers=min(workers, usable_cores()),  # more only compete
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
            listed = [(f.name, f.reason) for f in failures]
            pending = writer.submit(write_part, folder, next_part, signature, groups, listed)
            next_part += 1
            step(len(prepared))
        if pending is not None:
            pending.result()
    return finished(folder, signature)
