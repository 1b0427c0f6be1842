"""Retrieval metrics against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vcat.evaluation.ranking import (
    average_precision,
    hit_at,
    ranking_metrics,
    rankings_from_scores,
)


def test_average_precision_counts_precision_at_each_relevant_rank() -> None:
    # relevant at ranks 2 and 5 of 2 relevant: (1/2 + 2/5) / 2 = 0.45
    assert average_precision(["x", "a", "y", "z", "b"], {"a", "b"}) == pytest.approx(0.45)


def test_average_precision_counts_unretrieved_relevant_as_zero() -> None:
    # 3 relevant, only "a" retrieved, at rank 1: (1/1 + 0 + 0) / 3 = 1/3
    assert average_precision(["a", "x", "y"], {"a", "b", "c"}) == pytest.approx(1 / 3)
    # relevant at ranks 1 and 3 of 2: (1/1 + 2/3) / 2 = 5/6
    assert average_precision([7, 8, 9], {7, 9}) == pytest.approx(5 / 6)


def test_average_precision_refuses_a_query_without_relevant_items() -> None:
    with pytest.raises(ValueError, match="no relevant id"):
        average_precision([1, 2], set())


def test_recall_at_k_is_the_fraction_of_queries_with_a_hit() -> None:
    ranked = [["a", "b", "c"], ["d", "e", "f"], ["g", "h", "i"]]
    relevant = [{"a"}, {"f"}, {"z"}]
    # query 0 hits at rank 1, query 1 at rank 3, query 2 never:
    # recall@1 = 1/3, recall@2 = 1/3, recall@3 = 2/3, recall@10 = 2/3 (lists are shorter)
    metrics = ranking_metrics(ranked, relevant, ks=(1, 2, 3, 10))
    assert metrics.recall_at == pytest.approx({1: 1 / 3, 2: 1 / 3, 3: 2 / 3, 10: 2 / 3})
    # APs: 1, 1/3, 0 -> mAP = 4/9
    assert metrics.mean_average_precision == pytest.approx(4 / 9)
    assert (metrics.n_queries, metrics.n_excluded) == (3, 0)


def test_queries_without_relevant_items_are_excluded_and_counted() -> None:
    ranked = [[0, 1, 2], [2, 1, 0], [1, 0, 2]]
    relevant: list[set[int]] = [{1}, set(), {0, 2}]
    # kept: query 0 (rank 2 -> AP 1/2, no hit@1) and query 2 (ranks 2, 3 -> (1/2 + 2/3)/2 = 7/12)
    metrics = ranking_metrics(ranked, relevant, ks=(1, 2))
    assert (metrics.n_queries, metrics.n_excluded) == (2, 1)
    assert metrics.recall_at == pytest.approx({1: 0.0, 2: 1.0})
    assert metrics.mean_average_precision == pytest.approx((1 / 2 + 7 / 12) / 2)
    flat = metrics.as_dict()
    assert json.loads(json.dumps(flat)) == flat
    assert set(flat) == {"recall@1", "recall@2", "mAP", "n_queries", "n_excluded"}


def test_all_queries_excluded_is_an_error() -> None:
    with pytest.raises(ValueError, match="none of the 2 queries"):
        ranking_metrics([[1], [2]], [set(), set()])


def test_repeated_ids_and_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="repeats a database id"):
        ranking_metrics([[1, 1, 2]], [{2}])
    with pytest.raises(ValueError, match="2 rankings but 1 relevant"):
        ranking_metrics([[1], [2]], [{1}])
    with pytest.raises(ValueError, match="k must be at least 1"):
        hit_at([1], {1}, 0)


def test_rankings_from_scores_sorts_descending_and_breaks_ties_by_index() -> None:
    scores = np.array([[0.1, 0.9, 0.5, 0.9], [3.0, -1.0, 2.0, 0.0]])
    assert rankings_from_scores(scores) == [[1, 3, 2, 0], [0, 2, 3, 1]]
    names = ["w", "x", "y", "z"]
    assert rankings_from_scores(scores, names)[0] == ["x", "z", "y", "w"]
    # with query 0 relevant {"w"} at rank 4 and query 1 relevant {"y"} at rank 2:
    # mAP = (1/4 + 1/2) / 2 = 0.375, recall@2 = 1/2
    metrics = ranking_metrics(rankings_from_scores(scores, names), [{"w"}, {"y"}], ks=(2,))
    assert metrics.mean_average_precision == pytest.approx(0.375)
    assert metrics.recall_at[2] == pytest.approx(0.5)


def test_rankings_from_scores_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rankings_from_scores(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match="matrix"):
        rankings_from_scores(np.zeros(3))
    with pytest.raises(ValueError, match="3 database ids"):
        rankings_from_scores(np.zeros((1, 2)), ["a", "b", "c"])
