"""Scenes of overlap ground truth joined to VOP features, and the pairs each epoch trains on.

A scene is an overlap file of the ``overlap`` stage (``names``, ``overlap``, ``valid``) whose
images are looked up in a :class:`~vcat.training.overlap_features.FeatureStore`. Images
without any valid depth are dropped (their overlap row is all zeros only because nothing was
measured; VOP drops them too), so they never become false negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vcat.training.loop import seed_of
from vcat.training.overlap_features import FeatureStore
from vcat.training.overlap_pairs import OverlapBins, sample_pairs

#: One training pair: the two images' feature keys and the overlap of the first in the second.
Pair = tuple[str, str, float]


@dataclass(frozen=True)
class Scene:
    """A scene's images (feature keys and the overlap file's names, in matrix order) and
    their overlap matrix."""

    name: str
    keys: tuple[str, ...]
    overlap: np.ndarray
    names: tuple[str, ...]


def read_scene(
    path: Path, store: FeatureStore, exclude: Callable[[str], bool] | None = None
) -> Scene:
    """The scene of overlap file ``path`` (named by its stem), its images found in ``store``;
    images whose name ``exclude`` accepts (held-out images) are left out."""
    from vcat.geometry.overlap import read_overlap

    names, matrix = read_overlap(path)
    with np.load(path, allow_pickle=False) as data:
        valid = np.asarray(data["valid"]) if "valid" in data else np.ones(len(names))
    if valid.shape != (len(names),):
        raise ValueError(f"{path}: 'valid' has shape {valid.shape}, not ({len(names)},)")
    usable = valid > 0
    if exclude is not None:
        usable &= np.array([not exclude(name) for name in names], dtype=bool)
    kept = np.flatnonzero(usable)
    if len(kept) < 2:
        raise ValueError(
            f"{path}: fewer than two images with valid depth (and not held out); nothing to pair"
        )
    keys = store.keys_of(names[i] for i in kept)
    kept_names = tuple(names[i] for i in kept)
    return Scene(path.stem, tuple(keys), matrix[np.ix_(kept, kept)], kept_names)


def epoch_pairs(
    scenes: Sequence[Scene],
    bins: OverlapBins,
    positives: int,
    negatives: int,
    seed: int,
    epoch: int,
) -> list[Pair]:
    """Every scene's pairs for ``epoch`` (drawn afresh each epoch from ``(seed, epoch,
    scene)``), scenes in the order given."""
    pairs: list[Pair] = []
    for scene in scenes:
        rng = np.random.default_rng(seed_of(seed, epoch, "pairs", scene.name))
        for i, j in sample_pairs(scene.overlap, bins, positives, negatives, rng):
            pairs.append((scene.keys[i], scene.keys[j], float(scene.overlap[i, j])))
    return pairs


class PairDataset(torch.utils.data.Dataset[dict[str, Any]]):
    """Pairs as tensors: ``descriptors0/1``, ``keypoints0/1``, ``image_size0/1``, ``overlap``.
    The feature file is opened in the process that reads (each DataLoader worker)."""

    def __init__(self, store: FeatureStore, pairs: Sequence[Pair]) -> None:
        self.store = store
        self.pairs = list(pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        first, second, overlap = self.pairs[index]
        item: dict[str, Any] = {"overlap": torch.tensor(overlap, dtype=torch.float32)}
        for suffix, key in (("0", first), ("1", second)):
            features = self.store.read(key)
            item["descriptors" + suffix] = torch.from_numpy(features.descriptors)
            item["keypoints" + suffix] = torch.from_numpy(features.keypoints)
            item["image_size" + suffix] = torch.from_numpy(features.image_size)
        return item
