"""Retrieval metrics over ranked lists: recall@k (place-recognition definition) and mAP.

Conventions, shared by every function here:

- A query's ranking is a sequence of database ids, best first, without repeats; it may be
  shorter than the database (a shortlist). Ranks are 1-based.
- recall@k is the fraction of queries with at least one relevant id among their first k
  (the place-recognition definition, as in NetVLAD and VOP), not the fraction of relevant
  items retrieved. A ranking shorter than k counts what it has.
- AP of a query is the mean, over ALL its relevant ids, of the precision at the rank where
  that id appears; a relevant id the ranking does not hold contributes 0. mAP is the mean AP.
- A query with no relevant id has neither recall nor AP: it is excluded from every mean and
  counted in ``n_excluded``; if every query is excluded the metrics are refused (ValueError).
- From a score matrix, higher scores rank first; equal scores keep the lower database index
  first (a stable sort), so results do not depend on the sort implementation.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_KS = (1, 5, 10)


@dataclass(frozen=True)
class RankingMetrics:
    """Recall@k per k (in [0, 1]), mAP (in [0, 1]), how many queries counted and were excluded."""

    recall_at: dict[int, float]
    mean_average_precision: float
    n_queries: int
    n_excluded: int

    def as_dict(self) -> dict[str, float | int]:
        """Flat JSON-ready form: ``recall@1``, ..., ``mAP``, ``n_queries``, ``n_excluded``."""
        flat: dict[str, float | int] = {f"recall@{k}": v for k, v in self.recall_at.items()}
        flat["mAP"] = self.mean_average_precision
        flat["n_queries"] = self.n_queries
        flat["n_excluded"] = self.n_excluded
        return flat


def rankings_from_scores(
    scores: np.ndarray, database_ids: Sequence[Hashable] | None = None
) -> list[list[Hashable]]:
    """Each row of a (queries x database) score matrix as database ids, highest score first.

    Ties keep the lower column first. ``database_ids`` names the columns (default: 0..N-1).
    NaN scores are refused: they have no place in an order.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"scores must be a (queries x database) matrix, got shape {scores.shape}")
    if np.isnan(scores).any():
        raise ValueError("scores hold NaN; replace them (e.g. with -inf) before ranking")
    ids: Sequence[Hashable] = range(scores.shape[1]) if database_ids is None else database_ids
    if len(ids) != scores.shape[1]:
        raise ValueError(f"{len(ids)} database ids for a score matrix of {scores.shape[1]} columns")
    order = np.argsort(-scores, axis=1, kind="stable")
    return [[ids[j] for j in row] for row in order]


def _check(ranked: Sequence[Sequence[Hashable]], relevant: Sequence[Collection[Hashable]]) -> None:
    if len(ranked) != len(relevant):
        raise ValueError(f"{len(ranked)} rankings but {len(relevant)} relevant sets; one per query")
    for q, ranking in enumerate(ranked):
        if len(set(ranking)) != len(ranking):
            raise ValueError(f"query {q}: its ranking repeats a database id; rank each id once")


def average_precision(ranking: Sequence[Hashable], relevant: Collection[Hashable]) -> float:
    """AP of one query: mean over all relevant ids of the precision at each one's rank
    (0 for a relevant id not in ``ranking``). Refuses an empty ``relevant``."""
    relevant = set(relevant)
    if not relevant:
        raise ValueError("AP is undefined for a query with no relevant id; exclude the query")
    hits = 0
    total = 0.0
    for rank, item in enumerate(ranking, start=1):
        if item in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def hit_at(ranking: Sequence[Hashable], relevant: Collection[Hashable], k: int) -> bool:
    """Whether any of the first ``k`` ids of ``ranking`` is relevant."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    relevant = set(relevant)
    return any(item in relevant for item in ranking[:k])


def ranking_metrics(
    ranked: Sequence[Sequence[Hashable]],
    relevant: Sequence[Collection[Hashable]],
    ks: Sequence[int] = DEFAULT_KS,
) -> RankingMetrics:
    """recall@k for each k and mAP over the queries that have a relevant id (see module doc)."""
    _check(ranked, relevant)
    if not ks:
        raise ValueError("ks is empty; name at least one k for recall@k")
    kept = [(r, set(rel)) for r, rel in zip(ranked, relevant, strict=True) if rel]
    n_excluded = len(ranked) - len(kept)
    if not kept:
        raise ValueError(
            f"none of the {len(ranked)} queries has a relevant id; recall and mAP are undefined"
        )
    recall = {int(k): float(np.mean([hit_at(r, rel, k) for r, rel in kept])) for k in ks}
    mean_ap = float(np.mean([average_precision(r, rel) for r, rel in kept]))
    return RankingMetrics(recall, mean_ap, n_queries=len(kept), n_excluded=n_excluded)
