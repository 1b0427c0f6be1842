"""Training pairs drawn from an overlap matrix as VOP draws them.

Positives: ordered pairs (i, j), i != j, whose overlap (fraction of image i seen by j) lies in
one of ``bins`` equal bins over ``(low, high]``; ``positives`` are shared equally among the
bins that hold at least twice their share (the others are skipped), each bin drawing without
replacement (all of it when it holds fewer). Negatives: ``negatives`` pairs with overlap
exactly 0. Unlike VOP, which reuses one seed for every bin and scene, the caller gives a
generator per scene and epoch, and the bins draw from it one after another, so no two draws
are the same choice.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class OverlapBins:
    """Positive overlaps lie in ``(low, high]``, split into ``count`` equal bins."""

    low: float = 0.1
    high: float = 0.7
    count: int = 3

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0 or self.count < 1:
            raise ValueError(
                f"overlap bins need 0 <= low < high <= 1 and count >= 1, got {self}; "
                "VOP trains with (0.1, 0.7] in 3 bins"
            )

    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.count + 1)


def _draw(pairs: np.ndarray, number: int, rng: np.random.Generator) -> np.ndarray:
    if len(pairs) <= number:
        return pairs
    return pairs[np.sort(rng.choice(len(pairs), number, replace=False))]


def sample_pairs(
    overlap: np.ndarray,
    bins: OverlapBins,
    positives: int,
    negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Rows ``(i, j)`` of positive then negative pairs of one scene (module doc), int64 (k, 2)."""
    overlap = np.asarray(overlap, dtype=np.float64)
    if overlap.ndim != 2 or overlap.shape[0] != overlap.shape[1]:
        raise ValueError(f"an overlap matrix is square, got shape {overlap.shape}")
    if positives < 0 or negatives < 0:
        raise ValueError("the numbers of positive and negative pairs cannot be negative")
    off = ~np.eye(len(overlap), dtype=bool)
    edges = bins.edges()
    share = positives // bins.count
    in_bins = [
        np.argwhere(off & (overlap > lo) & (overlap <= hi)) for lo, hi in itertools.pairwise(edges)
    ]
    kept = [pairs for pairs in in_bins if len(pairs) >= 2 * share]
    chosen = [np.zeros((0, 2), dtype=np.int64)]
    if kept and positives:
        per_bin = positives // len(kept)
        chosen += [_draw(pairs, per_bin, rng) for pairs in kept]
    if negatives:
        chosen.append(_draw(np.argwhere(off & (overlap == 0.0)), negatives, rng))
    return np.concatenate(chosen).astype(np.int64)
