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
    if radius is None:
        radius = median_radius(patches, sample_size, np.random.default_rng(seed))
        radius = min(max(radius, 0.1), 2.0)  # a median of 0 or less rounds out of (0, 2]
    found = overlap_retrieval(
        patches,
        patches,
        global_descriptors,
        global_descriptors,
        pre_filter=len(patches),
        radius=radius,
    )
    return ranking_metrics(_without_self(found.rankings()), relevant_sets(overlap, min_overlap), ks)


def cls_metrics(
    global_descriptors: np.ndarray,
    overlap: np.ndarray,
    min_overlap: float,
    ks: tuple[int, ...] = DEFAULT_KS,
) -> RankingMetrics:
    """recall@k and mAP of the CLS-only baseline on the scene (module doc)."""
    found = cls_retrieval(global_descriptors, global_descriptors, len(global_descriptors))
    return ranking_metrics(_without_self(found.rankings()), relevant_sets(overlap, min_overlap), ks)
