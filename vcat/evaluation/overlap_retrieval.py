"""VOP's place retrieval by patch overlap voting, and the global-descriptor (CLS) baseline.

Inputs are numpy arrays: patch descriptors ``(images, P, D)`` and global descriptors
``(images, D)``; queries and database are separate arrays, and every returned id is a row
index of the database arrays.

1. Shortlist: the ``pre_filter`` database images with the highest dot product of global
   descriptors (not normalised, as VOP does), ties to the lower database index.
2. Neighbours: query and shortlisted patches are L2-normalised; a database patch is a
   neighbour of a query patch when their cosine similarity s satisfies ``s > 1 - radius``,
   i.e. cosine distance ``1 - s < radius`` (faiss range search on ``IndexFlatIP`` with
   threshold ``1 - radius``, strict as faiss is). This is VOP's code; note that it uses the
   median *similarity* (:func:`median_radius`) as a *distance* radius.
3. Votes: a shortlisted image scores the sum, over query patches, of the similarities of its
   patches that are neighbours, each query patch weighted (if ``weighted``) by
   :func:`tfidf_weight`. Images are returned best first, ties in shortlist (CLS) order.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np

TFIDF_EPS = 1e-5


@dataclass(frozen=True)
class Retrieval:
    """Per query, database row indices best first (``ids``, Q x k) and their ``scores``."""

    ids: np.ndarray
    scores: np.ndarray

    def rankings(self) -> list[list[int]]:
        """``ids`` as lists of ints, the form :mod:`vcat.evaluation.ranking` takes."""
        return [[int(i) for i in row] for row in self.ids]


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    if (norms == 0).any() or not np.isfinite(norms).all():
        raise ValueError(f"{what} holds a zero or non-finite descriptor; it has no direction")
    return np.ascontiguousarray(x / norms)


def _check_global(query: np.ndarray, database: np.ndarray, k: int) -> None:
    if query.ndim != 2 or database.ndim != 2 or query.shape[1] != database.shape[1]:
        raise ValueError(
            f"global descriptors must be (queries x D) and (database x D), got {query.shape} "
            f"and {database.shape}"
        )
    if not 1 <= k <= len(database):
        raise ValueError(f"k (pre_filter) must be in 1..{len(database)} (database size), got {k}")


def cls_retrieval(query_global: np.ndarray, database_global: np.ndarray, k: int) -> Retrieval:
    """The baseline: the top ``k`` database images by global-descriptor dot product."""
    query_global = np.asarray(query_global, dtype=np.float64)
    database_global = np.asarray(database_global, dtype=np.float64)
    _check_global(query_global, database_global, k)
    scores = query_global @ database_global.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return Retrieval(ids, np.take_along_axis(scores, ids, axis=1))


def median_radius(patches: np.ndarray, sample_size: int, rng: np.random.Generator) -> float:
    """Median cosine similarity over all pairs (i < j) of ``sample_size`` patches drawn
    without replacement from ``patches`` (any shape ``(..., D)``), rounded to 0.1 (half to
    even). All patches are used when there are fewer. VOP instead takes 100 random images and
    pairs patches within each image, self-pairs included."""
    flat = np.asarray(patches).reshape(-1, np.shape(patches)[-1])
    if sample_size < 2 or len(flat) < 2:
        raise ValueError("the radius needs a sample of at least 2 patches")
    chosen = rng.choice(len(flat), size=min(sample_size, len(flat)), replace=False)
    unit = _unit(flat[np.sort(chosen)], "the patch sample").astype(np.float64)
    similarity = unit @ unit.T
    upper = np.triu_indices(len(unit), k=1)
    return float(np.round(np.median(similarity[upper]), 1))


def tfidf_weight(
    n_id: np.ndarray | int, n_i: np.ndarray | int, n_patches: int, n_images: int
) -> np.ndarray:
    """VOP's weight of a query patch: ``(n_id / n_patches) * log(n_images / (n_i + 1e-5))``,
    clipped at 0, where for that query patch

    - ``n_id``: its neighbour patches, counted over all shortlisted images;
    - ``n_i``: the shortlisted images holding at least one of those neighbours;
    - ``n_patches``: patches per database image (256 for DINOv2 ViT-L/14 at 224 px);
    - ``n_images``: shortlisted images (``pre_filter``), not the whole database.

    A patch with neighbours in every shortlisted image gets 0 (``log(N / (N + eps)) < 0``)."""
    n_id = np.asarray(n_id, dtype=np.float64)
    n_i = np.asarray(n_i, dtype=np.float64)
    weight = (n_id / n_patches) * np.log(n_images / (n_i + TFIDF_EPS))
    return np.maximum(weight, 0.0)


def _check_patches(query: np.ndarray, database: np.ndarray) -> None:
    if query.ndim != 3 or database.ndim != 3 or query.shape[2] != database.shape[2]:
        raise ValueError(
            f"patch descriptors must be (queries x P x D) and (database x P x D), got "
            f"{query.shape} and {database.shape}"
        )


def overlap_retrieval(
    query_patches: np.ndarray,
    database_patches: np.ndarray,
    query_global: np.ndarray,
    database_global: np.ndarray,
    *,
    pre_filter: int,
    radius: float,
    weighted: bool = True,
) -> Retrieval:
    """VOP's re-ranking of each query's CLS shortlist by patch votes (module doc).

    Returns the ``pre_filter`` shortlisted database images per query, best first, with
    their vote scores (TF-IDF weighted if ``weighted``, else plain similarity sums)."""
    query_patches = np.asarray(query_patches)
    database_patches = np.asarray(database_patches)
    _check_patches(query_patches, database_patches)
    if len(query_global) != len(query_patches) or len(database_global) != len(database_patches):
        raise ValueError("global and patch descriptors must have one row per image each")
    if not 0.0 < radius <= 2.0:
        raise ValueError(f"radius is a cosine distance in (0, 2], got {radius}")
    shortlist = cls_retrieval(query_global, database_global, pre_filter).ids
    n_patches, dim = database_patches.shape[1:]
    query_unit = _unit(query_patches, "query_patches")
    database_unit = _unit(database_patches, "database_patches")
    ids = np.empty((len(query_patches), pre_filter), dtype=np.int64)
    scores = np.empty((len(query_patches), pre_filter), dtype=np.float64)
    for q, candidates in enumerate(shortlist):
        index = faiss.IndexFlatIP(dim)
        index.add(database_unit[candidates].reshape(-1, dim))
        lims, similarity, found = index.range_search(query_unit[q], 1.0 - radius)
        lims = lims.astype(np.int64)
        # a patch row of the index belongs to the shortlist *position* row // P
        position = found.astype(np.int64) // n_patches
        n_id = np.diff(lims)
        owner = np.repeat(np.arange(len(n_id)), n_id)  # the query patch of each neighbour
        # distinct (query patch, image) pairs, counted per query patch
        distinct = np.unique(owner * pre_filter + position)
        n_i = np.bincount(distinct // pre_filter, minlength=len(n_id))
        weight = tfidf_weight(n_id, n_i, n_patches, pre_filter) if weighted else np.ones(len(n_id))
        votes = np.bincount(position, weights=similarity * weight[owner], minlength=pre_filter)
        order = np.argsort(-votes, kind="stable")
        ids[q] = candidates[order]  # shortlist positions mapped back to database rows
        scores[q] = votes[order]
    return Retrieval(ids, scores)
