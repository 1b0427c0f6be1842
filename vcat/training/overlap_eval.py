"""Retrieval quality of patch embeddings on one scene, every image a query against the rest.

An image j is relevant to query i when ``overlap[i, j] >= min_overlap`` (j != i). Each query
searches a database of the scene's other images with VOP's retrieval
(:func:`vcat.evaluation.overlap_retrieval.overlap_retrieval`); with ``pre_filter`` None its
CLS shortlist is the whole database, so the ranking is the patch votes' alone. The radius is
VOP's median patch similarity over a seeded sample of the scene's patches unless given.
"""

from __future__ import annotations

import numpy as np

from vcat.evaluation.overlap_retrieval import cls_retrieval, median_radius, overlap_retrieval
from vcat.evaluation.ranking import DEFAULT_KS, RankingMetrics, ranking_metrics


def relevant_sets(overlap: np.ndarray, min_overlap: float) -> list[set[int]]:
    """Per query i, the images j != i it overlaps by at least ``min_overlap``."""
    overlap = np.asarray(overlap)
    if overlap.ndim != 2 or overlap.shape[0] != overlap.shape[1]:
        raise ValueError(f"an overlap matrix is square, got shape {overlap.shape}")
    return [
        {int(j) for j in np.flatnonzero(row >= min_overlap) if j != i}
        for i, row in enumerate(overlap)
    ]


def vop_rankings(
    patches: np.ndarray,
    global_descriptors: np.ndarray,
    *,
    pre_filter: int | None = None,
    radius: float | None = None,
    seed: int = 0,
    sample_size: int = 2000,
) -> list[list[int]]:
    """Per image, the other images of the scene ranked by VOP's patch votes within its CLS
    shortlist of ``pre_filter`` others (all of them when None). Each query searches a
    database of the other images, as VOP's queries are not in its database."""
    count = len(patches)
    if pre_filter is not None and pre_filter < 1:
        raise ValueError(f"pre_filter must be at least 1, got {pre_filter}")
    if count < 2:
        raise ValueError("a scene needs at least two images to rank one against the others")
    if radius is None:
        radius = median_radius(patches, sample_size, np.random.default_rng(seed))
        radius = min(max(radius, 0.1), 2.0)  # a median of 0 or less rounds out of (0, 2]
    shortlist = count - 1 if pre_filter is None else min(pre_filter, count - 1)
    rankings = []
    for query in range(count):
        others = np.delete(np.arange(count), query)
        found = overlap_retrieval(
            patches[query : query + 1],
            patches[others],
            global_descriptors[query : query + 1],
            global_descriptors[others],
            pre_filter=shortlist,
            radius=radius,
        )
        rankings.append([int(others[row]) for row in found.ids[0]])
    return rankings


def cls_rankings(global_descriptors: np.ndarray) -> list[list[int]]:
    """Per image, the other images of the scene by global-descriptor similarity."""
    count = len(global_descriptors)
    rankings = []
    for query in range(count):
        others = np.delete(np.arange(count), query)
        found = cls_retrieval(
            global_descriptors[query : query + 1], global_descriptors[others], count - 1
        )
        rankings.append([int(others[row]) for row in found.ids[0]])
    return rankings


def vop_metrics(
    patches: np.ndarray,
    global_descriptors: np.ndarray,
    overlap: np.ndarray,
    min_overlap: float,
    *,
    radius: float | None = None,
    seed: int = 0,
    sample_size: int = 2000,
    ks: tuple[int, ...] = DEFAULT_KS,
) -> RankingMetrics:
    """recall@k and mAP of VOP's patch-vote retrieval on the scene (module doc)."""
    rankings = vop_rankings(
        patches, global_descriptors, radius=radius, seed=seed, sample_size=sample_size
    )
    return ranking_metrics(rankings, relevant_sets(overlap, min_overlap), ks)


def cls_metrics(
    global_descriptors: np.ndarray,
    overlap: np.ndarray,
    min_overlap: float,
    ks: tuple[int, ...] = DEFAULT_KS,
) -> RankingMetrics:
    """recall@k and mAP of the CLS-only baseline on the scene (module doc)."""
    return ranking_metrics(
        cls_rankings(global_descriptors), relevant_sets(overlap, min_overlap), ks
    )
