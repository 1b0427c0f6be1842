"""Relative pose, pose errors and AUC against synthetic scenes and hand-computed cases."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from vcat.evaluation.pose import (
    PoseEstimate,
    PosePair,
    estimate_pose,
    evaluate_poses,
    pose_auc,
    pose_error_deg,
    rotation_error_deg,
    select_ransac_threshold,
    translation_error_deg,
)

K1 = np.array([[500.0, 0.0, 320.0], [0.0, 500.0, 240.0], [0.0, 0.0, 1.0]])
K2 = np.array([[450.0, 0.0, 300.0], [0.0, 460.0, 250.0], [0.0, 0.0, 1.0]])


def _rot_z(degrees: float) -> np.ndarray:
    a = math.radians(degrees)
    return np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0, 0, 1]])


def _project(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    uvw = points @ K.T
    return uvw[:, :2] / uvw[:, 2:]


def _scene(seed: int, n: int = 200, outlier_fraction: float = 0.0, noise_px: float = 0.3):
    rng = np.random.default_rng(seed)
    R, _ = cv2.Rodrigues(rng.normal(scale=0.1, size=3))
    t = np.array([1.0, 0.1, 0.2]) + rng.normal(scale=0.05, size=3)
    X1 = np.c_[rng.uniform(-2, 2, n), rng.uniform(-1.5, 1.5, n), rng.uniform(4, 8, n)]
    X2 = X1 @ R.T + t
    kpts1 = _project(X1, K1) + rng.normal(scale=noise_px, size=(n, 2))
    kpts2 = _project(X2, K2) + rng.normal(scale=noise_px, size=(n, 2))
    outliers = rng.random(n) < outlier_fraction
    kpts2[outliers] = rng.uniform([0, 0], [640, 480], size=(int(outliers.sum()), 2))
    return PosePair(kpts1, kpts2, K1, K2, R, t), outliers


def test_rotation_error_of_a_10_degree_turn_about_z_is_10() -> None:
    assert rotation_error_deg(_rot_z(10.0), np.eye(3)) == pytest.approx(10.0)
    # errors compose: 25 degrees estimated against 10 true -> 15
    assert rotation_error_deg(_rot_z(25.0), _rot_z(10.0)) == pytest.approx(15.0)
    assert rotation_error_deg(_rot_z(180.0), np.eye(3)) == pytest.approx(180.0)


def test_translation_error_folds_the_sign_ambiguity() -> None:
    t = np.array([1.0, 0.0, 0.0])
    assert translation_error_deg(-t, t) == pytest.approx(0.0)
    assert translation_error_deg(np.array([0.0, 2.0, 0.0]), t) == pytest.approx(90.0)
    thirty = np.array([math.cos(math.radians(30)), math.sin(math.radians(30)), 0.0])
    assert translation_error_deg(thirty, 5 * t) == pytest.approx(30.0)
    # 150 degrees apart is 30 after folding: min(150, 180 - 150)
    assert translation_error_deg(-thirty, t) == pytest.approx(30.0)
    with pytest.raises(ValueError, match="zero"):
        translation_error_deg(np.zeros(3), t)


def test_pose_error_is_the_max_of_both_and_inf_on_failure() -> None:
    t = np.array([0.0, 0.0, 1.0])
    tilted = np.array([0.0, math.sin(math.radians(4)), math.cos(math.radians(4))])
    estimate = PoseEstimate(_rot_z(7.0), tilted, np.ones(5, bool))
    # rotation 7, translation 4 -> 7
    assert pose_error_deg(estimate, np.eye(3), t) == pytest.approx(7.0)
    assert pose_error_deg(None, np.eye(3), t) == math.inf


def test_auc_of_a_hand_computed_error_list() -> None:
    # errors [0, 2.5, inf], threshold 5: curve points (0,0) (0,1/3) (2.5,2/3) (5,2/3);
    # trapezoids: 0 + 2.5 * (1/3 + 2/3) / 2 + 2.5 * 2/3 = 1.25 + 5/3 = 2.91667; / 5 = 0.58333
    # threshold 1: (0,0) (0,1/3) (1,1/3): area 1/3, / 1 = 1/3
    aucs = pose_auc([2.5, math.inf, 0.0], thresholds=(5.0, 1.0))
    assert aucs[5.0] == pytest.approx((1.25 + 5 / 3) / 5)
    assert aucs[1.0] == pytest.approx(1 / 3)
    # errors [1, 3], threshold 2: (0,0) (1,1/2) (2,1/2): 0.25 + 0.5 = 0.75, / 2 = 0.375
    assert pose_auc([3.0, 1.0], thresholds=(2.0,))[2.0] == pytest.approx(0.375)
    # all failures -> 0; all perfect -> 1
    assert pose_auc([math.inf] * 3) == {5.0: 0.0, 10.0: 0.0, 20.0: 0.0}
    assert pose_auc([0.0, 0.0]) == {5.0: 1.0, 10.0: 1.0, 20.0: 1.0}


def test_auc_refuses_bad_errors() -> None:
    with pytest.raises(ValueError, match="at least one"):
        pose_auc([])
    with pytest.raises(ValueError, match="NaN"):
        pose_auc([1.0, float("nan")])
    with pytest.raises(ValueError, match="positive"):
        pose_auc([1.0], thresholds=(0.0,))


def test_estimate_recovers_a_known_pose_without_outliers() -> None:
    pair, _ = _scene(seed=3)
    estimate = estimate_pose(pair, threshold_px=1.0)
    assert estimate is not None
    assert rotation_error_deg(estimate.R, pair.R) < 0.5
    assert translation_error_deg(estimate.t, pair.t) < 1.0
    assert estimate.inliers.mean() > 0.9


def test_estimate_rejects_outliers() -> None:
    pair, outliers = _scene(seed=5, outlier_fraction=0.3)
    assert outliers.mean() > 0.2
    estimate = estimate_pose(pair, threshold_px=1.0)
    assert estimate is not None
    assert pose_error_deg(estimate, pair.R, pair.t) < 2.0
    # nearly every outlier is rejected, nearly every true match kept
    assert estimate.inliers[outliers].mean() < 0.05
    assert estimate.inliers[~outliers].mean() > 0.9


def test_too_few_matches_fail_and_bad_input_is_refused() -> None:
    pair, _ = _scene(seed=1, n=4)
    assert estimate_pose(pair, threshold_px=1.0) is None
    scores = evaluate_poses([pair], threshold_px=1.0)
    assert scores == {"auc@5": 0.0, "auc@10": 0.0, "auc@20": 0.0, "failures": 1.0}
    with pytest.raises(ValueError, match="positive pixels"):
        estimate_pose(pair, threshold_px=0.0)
    bad = PosePair(pair.keypoints1, pair.keypoints2[:3], K1, K2, pair.R, pair.t)
    with pytest.raises(ValueError, match="M x 2"):
        estimate_pose(bad, threshold_px=1.0)


def test_threshold_selection_picks_the_best_mean_auc_on_validation_pairs() -> None:
    pairs = [_scene(seed=s, outlier_fraction=0.3)[0] for s in range(4)]
    best, means = select_ransac_threshold(
        pairs, [1.0, 200.0], split="validation", reported_splits={"test"}
    )
    assert set(means) == {1.0, 200.0}
    assert best == max(means, key=means.get)
    # a 200 px threshold accepts the outliers, so 1 px wins
    assert best == 1.0 and means[1.0] > means[200.0]


def test_threshold_selection_refuses_test_or_reported_splits() -> None:
    pairs = [_scene(seed=0)[0]]
    with pytest.raises(ValueError, match="also reported"):
        select_ransac_threshold(pairs, [1.0], split="val", reported_splits={"val", "test"})
    for name in ("test", "megadepth-test", "Test1500"):
        with pytest.raises(ValueError, match="test split"):
            select_ransac_threshold(pairs, [1.0], split=name, reported_splits=set())
    with pytest.raises(ValueError, match="no candidate"):
        select_ransac_threshold(pairs, [], split="val", reported_splits=set())
    with pytest.raises(ValueError, match="no pairs"):
        select_ransac_threshold([], [1.0], split="val", reported_splits=set())
