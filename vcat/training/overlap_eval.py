"""Retrieval quality of patch embeddings on one scene, every image a query against the rest.

An image j is relevant to query i when ``overlap[i, j] >= min_overlap`` (j != i). VOP's
retrieval (:func:`vcat.evaluation.overlap_retrieval.overlap_retrieval`) runs with the whole
scene as the database and shortlist (``pre_filter`` = all images), so the ranking is the patch
votes' alone; the query itself is removed from its ranking. The radius is VOP's median patch
similarity over a seeded sample of the scene's patches unless given.
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


def _without_self(rankings: list[list[int]]) -> list[list[int]]:
    return [[j for j in row if j != i] for i, row in enumerate(rankings)]


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
    shortlist of ``pre_filter`` others (all of them when None); the query is left out."""
    count = len(patches)
    if pre_filter is not None and pre_filter < 1:
        raise ValueError(f"pre_filter must be at least 1, got {pre_filter}")
    if radius is None:
        radius = median_radius(patches, sample_size, np.random.default_rng(seed))
        radius = min(max(radius, 0.1), 2.0)  # a median of 0 or less rounds out of (0, 2]
    # the query is in the database: its shortlist holds itself plus pre_filter others
    shortlist = count if pre_filter is None else min(pre_filter + 1, count)
    found = overlap_retrieval(
        patches,
        patches,
        global_descriptors,
        global_descriptors,
        pre_filter=shortlist,
        radius=radius,
    )
    return _without_self(found.rankings())


def cls_rankings(global_descriptors: np.ndarray) -> list[list[int]]:
    """Per image, the other images of the scene by global-descriptor similarity."""
    found = cls_retrieval(global_descriptors, global_descriptors, len(global_descriptors))
    return _without_self(found.rankings())


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
