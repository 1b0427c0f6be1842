"""Copy detection: k-NN predictions over descriptors and ISC2021/DISC21 micro average precision.

Micro AP (muAP), as ISC2021's scorer defines it:

- Every (query, reference, score) prediction of every query is pooled in one list, sorted
  by score descending. Among equal scores, wrong predictions come first (the worst case),
  so a constant score cannot buy a good AP.
- Walking the list, precision = true positives so far / predictions so far and recall =
  true positives so far / number of ground-truth pairs (pairs never predicted count too).
- muAP = sum over the list of (recall step) x (precision there), i.e. the sum of the
  precision at each true positive divided by the number of ground-truth pairs; in [0, 1].

Ground truth is DISC21's rows ``(query, reference or None)``: a row without a reference is a
distractor and adds no pair (:func:`vcat.copydetect.groundtruth.read` gives these rows).
Duplicate predictions of one (query, reference) are refused, as ISC2021 refuses them; so are
duplicate ground-truth pairs (ISC2021 would count them twice in the denominator).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from vcat.evaluation.knn_index import inner_product_index

PRECISION_OPERATING_POINT = 0.9


@dataclass(frozen=True)
class Prediction:
    """A claim that ``query`` copies ``reference``; higher ``score`` is more confident."""

    query: str
    reference: str
    score: float


@dataclass(frozen=True)
class CopyDetectMetrics:
    """muAP and recall at precision >= 0.9 (0 when never reached), both in [0, 1]."""

    micro_average_precision: float
    recall_at_p90: float
    n_predictions: int
    n_positives: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "muAP": self.micro_average_precision,
            "recall@p90": self.recall_at_p90,
            "n_predictions": self.n_predictions,
            "n_positives": self.n_positives,
        }


def positive_pairs(rows: Iterable[tuple[str, str | None]]) -> set[tuple[str, str]]:
    """The (query, reference) pairs of ground-truth rows, distractor rows (no reference)
    dropped; a pair given twice is refused."""
    pairs: set[tuple[str, str]] = set()
    for query, reference in rows:
        if not reference:
            continue
        if (query, reference) in pairs:
            raise ValueError(f"ground truth lists ({query!r}, {reference!r}) twice; list it once")
        pairs.add((query, reference))
    return pairs


def precision_recall(
    predictions: Sequence[Prediction], positives: set[tuple[str, str]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and score at each position of the pooled, sorted predictions."""
    if not positives:
        raise ValueError("the ground truth has no (query, reference) pair; muAP is undefined")
    seen: set[tuple[str, str]] = set()
    for p in predictions:
        if (p.query, p.reference) in seen:
            raise ValueError(f"({p.query!r}, {p.reference!r}) is predicted twice; keep one score")
        seen.add((p.query, p.reference))
    scores = np.array([p.score for p in predictions], dtype=np.float64)
    if np.isnan(scores).any():
        raise ValueError("a prediction has a NaN score")
    correct = np.array([(p.query, p.reference) in positives for p in predictions], dtype=bool)
    # primary key: score descending; among equals, wrong (False) before right
    order = np.lexsort((correct, -scores))
    correct, scores = correct[order], scores[order]
    true_positives = np.cumsum(correct)
    precision = true_positives / np.arange(1, len(correct) + 1)
    recall = true_positives / len(positives)
    return precision, recall, scores


def micro_average_precision(
    predictions: Sequence[Prediction], ground_truth: Iterable[tuple[str, str | None]]
) -> CopyDetectMetrics:
    """muAP and recall at precision 0.9 of pooled predictions (module doc)."""
    positives = positive_pairs(ground_truth)
    precision, recall, _ = precision_recall(predictions, positives)
    steps = np.diff(recall, prepend=0.0)
    reached = precision >= PRECISION_OPERATING_POINT
    return CopyDetectMetrics(
        micro_average_precision=float(np.sum(steps * precision)),
        recall_at_p90=float(recall[reached].max()) if reached.any() else 0.0,
        n_predictions=len(predictions),
        n_positives=len(positives),
    )


def _unit(x: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"{what} must be an (images x D) matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any() or not np.isfinite(norms).all():
        raise ValueError(f"{what} holds a zero or non-finite descriptor; it has no direction")
    return np.ascontiguousarray(x / norms)


def knn_predictions(
    query_descriptors: np.ndarray,
    query_ids: Sequence[str],
    reference_descriptors: np.ndarray,
    reference_ids: Sequence[str],
    k: int,
) -> list[Prediction]:
    """The ``k`` nearest references of every query by cosine similarity (exact faiss search,
    inner product of L2-normalised descriptors, on the GPU where faiss can use one), as
    predictions scored by that cosine."""
    queries = _unit(query_descriptors, "query_descriptors")
    references = _unit(reference_descriptors, "reference_descriptors")
    if queries.shape[1] != references.shape[1]:
        raise ValueError(
            f"query descriptors have {queries.shape[1]} dimensions, references "
            f"{references.shape[1]}; use one descriptor model for both"
        )
    if len(query_ids) != len(queries) or len(reference_ids) != len(references):
        raise ValueError("give one id per descriptor row, for queries and references")
    if not 1 <= k <= len(references):
        raise ValueError(f"k must be in 1..{len(references)} (the references), got {k}")
    index = inner_product_index(references.shape[1])
    index.add(references)
    similarity, neighbours = index.search(queries, k)
    return [
        Prediction(query_ids[q], reference_ids[int(r)], float(s))
        for q in range(len(queries))
        for r, s in zip(neighbours[q], similarity[q], strict=True)
    ]
