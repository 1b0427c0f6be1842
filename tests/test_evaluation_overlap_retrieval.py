"""VOP's overlap retrieval on hand-built descriptors, checked against hand-computed rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vcat.evaluation.overlap_retrieval import (
    cls_retrieval,
    median_radius,
    overlap_retrieval,
    tfidf_weight,
)

E1, E2, E3 = np.eye(3)
A = np.array([0.8, 0.6, 0.0])  # cosine 0.8 with E1, 0.6 with E2, 0 with E3

QUERY_PATCHES = np.array([[E1, E2]])
QUERY_GLOBAL = np.array([[1.0, 0.0]])
# database 0 matches the query perfectly but its CLS score (0.1) keeps it off a 2-shortlist,
# which is therefore [3, 1]: shortlist positions 0, 1 are NOT database rows 0, 1
DATABASE_PATCHES = np.array([[E1, E2], [E1, E1], [E3, E3], [A, 2 * E3]])
DATABASE_GLOBAL = np.array([[0.1, 5.0], [0.5, 0.0], [0.2, 0.0], [0.9, -1.0]])


def test_tfidf_weight_matches_a_hand_computed_value() -> None:
    # 3 neighbours in 2 of 20 shortlisted images, 256 patches per image:
    # 3/256 * ln(20 / 2.00001) = 0.01171875 * 2.3025801 = 0.0269834
    assert float(tfidf_weight(3, 2, 256, 20)) == pytest.approx(0.0269834, abs=1e-7)
    assert float(tfidf_weight(3, 2, 256, 20)) == pytest.approx(3 / 256 * math.log(20 / 2.00001))
    # neighbours in every shortlisted image: log(N / (N + eps)) < 0, clipped to 0
    assert float(tfidf_weight(5, 20, 256, 20)) == 0.0
    # no neighbour: 0
    assert float(tfidf_weight(0, 0, 256, 20)) == 0.0


def test_cls_baseline_ranks_by_global_dot_product() -> None:
    # scores 0.1, 0.5, 0.2, 0.9 -> [3, 1, 2]
    result = cls_retrieval(QUERY_GLOBAL, DATABASE_GLOBAL, k=3)
    assert result.rankings() == [[3, 1, 2]]
    assert result.scores[0] == pytest.approx([0.9, 0.5, 0.2])
    with pytest.raises(ValueError, match="pre_filter"):
        cls_retrieval(QUERY_GLOBAL, DATABASE_GLOBAL, k=5)


def test_unweighted_votes_sum_neighbour_similarities() -> None:
    # radius 0.5: neighbours have cosine > 0.5. Shortlist [3, 1].
    # query E1: database 1's E1, E1 (1 + 1), database 3's A (0.8); database 3's 2*E3 is 0
    # query E2: database 3's A (0.6)
    # votes: database 1 = 2.0, database 3 = 0.8 + 0.6 = 1.4 -> [1, 3]
    result = overlap_retrieval(
        QUERY_PATCHES,
        DATABASE_PATCHES,
        QUERY_GLOBAL,
        DATABASE_GLOBAL,
        pre_filter=2,
        radius=0.5,
        weighted=False,
    )
    assert result.rankings() == [[1, 3]]
    assert result.scores[0] == pytest.approx([2.0, 1.4])


def test_weighted_votes_use_tfidf_and_map_the_shortlist_to_database_rows() -> None:
    # query E1: n_id = 3 neighbours in n_i = 2 of N = 2 images -> weight 0
    # query E2: n_id = 1 in n_i = 1 -> weight 1/2 * ln(2 / 1.00001) = 0.3465701
    # votes: database 3 = 0.6 * 0.3465701 = 0.2079421, database 1 = 0 -> [3, 1].
    # A shortlist position used as a database row (VOP's bug) would give ids 0 and 1 instead.
    result = overlap_retrieval(
        QUERY_PATCHES,
        DATABASE_PATCHES,
        QUERY_GLOBAL,
        DATABASE_GLOBAL,
        pre_filter=2,
        radius=0.5,
    )
    assert result.rankings() == [[3, 1]]
    assert result.scores[0] == pytest.approx([0.2079421, 0.0], abs=1e-6)


def test_neighbours_need_similarity_strictly_above_one_minus_radius() -> None:
    # radius 0.4: threshold 0.6, strict -> A no longer neighbours E2 (0.6 is not > 0.6)
    # query E1: database 1 (1 + 1), database 3 (0.8); query E2: none -> [1, 3] with 2.0, 0.8
    result = overlap_retrieval(
        QUERY_PATCHES,
        DATABASE_PATCHES,
        QUERY_GLOBAL,
        DATABASE_GLOBAL,
        pre_filter=2,
        radius=0.4,
        weighted=False,
    )
    assert result.rankings() == [[1, 3]]
    assert result.scores[0] == pytest.approx([2.0, 0.8])


def test_votes_match_a_dense_computation_on_random_descriptors() -> None:
    rng = np.random.default_rng(7)
    queries, database, patches, dim, pre_filter, radius = 3, 12, 16, 8, 5, 0.7
    qp = rng.normal(size=(queries, patches, dim))
    dp = rng.normal(size=(database, patches, dim))
    qg, dg = rng.normal(size=(queries, dim)), rng.normal(size=(database, dim))
    result = overlap_retrieval(qp, dp, qg, dg, pre_filter=pre_filter, radius=radius)
    unit_q = qp / np.linalg.norm(qp, axis=-1, keepdims=True)
    unit_d = dp / np.linalg.norm(dp, axis=-1, keepdims=True)
    for q in range(queries):
        shortlist = np.argsort(-(dg @ qg[q]), kind="stable")[:pre_filter]
        sim = np.einsum("pd,ird->pir", unit_q[q], unit_d[shortlist])  # query patch, image, patch
        near = sim > 1 - radius
        n_id, n_i = near.sum(axis=(1, 2)), near.any(axis=2).sum(axis=1)
        weight = np.maximum(n_id / patches * np.log(pre_filter / (n_i + 1e-5)), 0)
        votes = np.einsum("pir,p->i", np.where(near, sim, 0.0), weight)
        expected = dict(zip(shortlist.tolist(), votes.tolist(), strict=True))
        assert set(result.ids[q].tolist()) == set(shortlist.tolist())
        assert result.scores[q] == pytest.approx([expected[i] for i in result.ids[q]], abs=1e-5)
        assert (np.diff(result.scores[q]) <= 0).all()


def test_median_radius_of_a_hand_built_sample() -> None:
    patches = np.array([[E1, E1], [E2, A]])
    # all 4 patches, 6 pairs: E1.E1 = 1, E1.E2 = 0 (twice), E1.A = 0.8 (twice), E2.A = 0.6
    # sorted 0, 0, 0.6, 0.8, 0.8, 1 -> median 0.7
    assert median_radius(patches, sample_size=10, rng=np.random.default_rng(0)) == 0.7


def test_median_radius_is_seeded_and_refuses_tiny_samples() -> None:
    patches = np.random.default_rng(1).normal(size=(20, 30, 4))
    first = median_radius(patches, 50, np.random.default_rng(42))
    assert first == median_radius(patches, 50, np.random.default_rng(42))
    assert round(first, 1) == first
    with pytest.raises(ValueError, match="at least 2"):
        median_radius(patches, 1, np.random.default_rng(0))


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="zero or non-finite"):
        overlap_retrieval(
            np.zeros((1, 2, 3)), DATABASE_PATCHES, QUERY_GLOBAL, DATABASE_GLOBAL,
            pre_filter=2, radius=0.5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="patch descriptors must be"):
        overlap_retrieval(
            QUERY_PATCHES[0], DATABASE_PATCHES, QUERY_GLOBAL, DATABASE_GLOBAL,
            pre_filter=2, radius=0.5,
        )  # fmt: skip
    with pytest.raises(ValueError, match="radius"):
        overlap_retrieval(
            QUERY_PATCHES, DATABASE_PATCHES, QUERY_GLOBAL, DATABASE_GLOBAL,
            pre_filter=2, radius=0.0,
        )  # fmt: skip
    with pytest.raises(ValueError, match="one row per image"):
        overlap_retrieval(
            QUERY_PATCHES, DATABASE_PATCHES, QUERY_GLOBAL, DATABASE_GLOBAL[:3],
            pre_filter=2, radius=0.5,
        )  # fmt: skip
