"""Copy-detection micro AP against hand-computed lists, and k-NN predictions end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcat.copydetect import groundtruth
from vcat.evaluation.copydetect import (
    Prediction,
    knn_predictions,
    micro_average_precision,
    positive_pairs,
)

GROUND_TRUTH = [("q1", "r1"), ("q2", "r2"), ("q3", "r3"), ("q4", "r4"), ("q5", None)]


def test_micro_ap_of_five_pooled_predictions() -> None:
    predictions = [  # given out of order: they are pooled and sorted by score
        Prediction("q3", "r3", 0.7),  # right
        Prediction("q1", "r1", 0.9),  # right
        Prediction("q5", "r1", 0.6),  # wrong (q5 is a distractor)
        Prediction("q2", "r9", 0.8),  # wrong
        Prediction("q2", "r2", 0.5),  # right
    ]
    # sorted: R W R W R; precision at the right ones 1/1, 2/3, 3/5; 4 ground-truth pairs
    # (q4 never predicted): muAP = (1 + 2/3 + 3/5) / 4 = 0.5666667
    # precision >= 0.9 only at position 1, recall there 1/4
    metrics = micro_average_precision(predictions, GROUND_TRUTH)
    assert metrics.micro_average_precision == pytest.approx((1 + 2 / 3 + 3 / 5) / 4)
    assert metrics.micro_average_precision == pytest.approx(0.5666667)
    assert metrics.recall_at_p90 == pytest.approx(0.25)
    assert (metrics.n_predictions, metrics.n_positives) == (5, 4)
    flat = metrics.as_dict()
    assert json.loads(json.dumps(flat)) == flat


def test_ties_put_wrong_predictions_first() -> None:
    right, wrong = Prediction("q1", "r1", 0.5), Prediction("q2", "r9", 0.5)
    # a tie is ordered W R whatever the input order: precision 1/2 at the one right
    # prediction, 1 of 4 pairs found -> muAP = (1/2) / 4 = 0.125
    for predictions in ([right, wrong], [wrong, right]):
        metrics = micro_average_precision(predictions, GROUND_TRUTH)
        assert metrics.micro_average_precision == pytest.approx(0.125)
        assert metrics.recall_at_p90 == 0.0
    # without the tie the right one leads: 1 / 4
    ahead = [Prediction("q1", "r1", 0.51), wrong]
    assert micro_average_precision(ahead, GROUND_TRUTH).micro_average_precision == 0.25
    # a constant score over everything gets the worst order: W W R R
    constant = [Prediction(q, r, 1.0) for q, r in [("q1", "r1"), ("q1", "r2"), ("q2", "r2")]]
    constant.append(Prediction("q3", "r1", 1.0))
    # precision 1/3 and 2/4 at the right ones: (1/3 + 1/2) / 4
    metrics = micro_average_precision(constant, GROUND_TRUTH)
    assert metrics.micro_average_precision == pytest.approx((1 / 3 + 1 / 2) / 4)


def test_duplicates_are_refused() -> None:
    twice = [Prediction("q1", "r1", 0.9), Prediction("q1", "r1", 0.3)]
    with pytest.raises(ValueError, match="predicted twice"):
        micro_average_precision(twice, GROUND_TRUTH)
    with pytest.raises(ValueError, match="twice"):
        positive_pairs([("q1", "r1"), ("q1", "r1")])
    with pytest.raises(ValueError, match="no \\(query, reference\\) pair"):
        micro_average_precision([Prediction("q1", "r1", 1.0)], [("q1", None)])
    with pytest.raises(ValueError, match="NaN"):
        micro_average_precision([Prediction("q1", "r1", float("nan"))], GROUND_TRUTH)


def test_no_predictions_score_zero() -> None:
    assert micro_average_precision([], GROUND_TRUTH).micro_average_precision == 0.0


def test_copies_near_their_originals_are_found_end_to_end() -> None:
    rng = np.random.default_rng(11)
    references = rng.normal(size=(8, 32))
    reference_ids = [f"R{i}" for i in range(8)]
    copied = [1, 4, 6]  # queries Q0..Q2 copy these; Q3, Q4 are distractors
    queries = np.vstack([references[copied] + rng.normal(scale=0.05, size=(3, 32))])
    queries = np.vstack([queries, rng.normal(size=(2, 32))])
    query_ids = [f"Q{i}" for i in range(5)]
    text = "query_id,reference_id\nQ0,R1\nQ1,R4\nQ2,R6\nQ3,\nQ4,\n"
    rows = groundtruth.loads(text)

    top1 = knn_predictions(queries, query_ids, references, reference_ids, k=1)
    assert [(p.query, p.reference) for p in top1[:3]] == [("Q0", "R1"), ("Q1", "R4"), ("Q2", "R6")]
    assert all(0.99 < p.score <= 1.0 + 1e-6 for p in top1[:3])
    # copies score near 1, distractors' neighbours far lower: all 3 right ones rank first
    metrics = micro_average_precision(top1, rows)
    assert metrics.micro_average_precision == pytest.approx(1.0)
    assert metrics.recall_at_p90 == pytest.approx(1.0)

    top3 = knn_predictions(queries, query_ids, references, reference_ids, k=3)
    assert len(top3) == 15
    assert micro_average_precision(top3, rows).micro_average_precision == pytest.approx(1.0)
    # scaling a descriptor does not change its cosine neighbours
    scaled = knn_predictions(queries * 7.0, query_ids, references, reference_ids, k=1)
    assert [p.reference for p in scaled] == [p.reference for p in top1]


def test_knn_refuses_bad_input() -> None:
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match=r"k must be in 1\.\.2"):
        knn_predictions(x, ["a", "b"], x, ["c", "d"], k=3)
    with pytest.raises(ValueError, match="dimensions"):
        knn_predictions(x, ["a", "b"], np.ones((2, 3)), ["c", "d"], k=1)
    with pytest.raises(ValueError, match="one id per descriptor"):
        knn_predictions(x, ["a"], x, ["c", "d"], k=1)
    with pytest.raises(ValueError, match="zero or non-finite"):
        knn_predictions(np.zeros((1, 4)), ["a"], x, ["c", "d"], k=1)
