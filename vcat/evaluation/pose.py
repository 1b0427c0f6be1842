"""Relative pose from matched keypoints, its error, and the pose AUC of SuperGlue/LoFTR.

Conventions:

- Keypoints are pixel coordinates (x, y) in each image; ``K1``, ``K2`` are 3x3 intrinsics.
- The ground-truth pose maps camera-1 coordinates to camera 2: ``X2 = R @ X1 + t``.
- The essential matrix is estimated with OpenCV's RANSAC on normalised coordinates; the
  threshold, given in pixels, is divided by the mean focal length (fx, fy of both cameras).
- Angles are in degrees. The pose error is ``max(rotation error, translation-direction
  error)``; the translation error is folded to ``min(e, 180 - e)`` because an essential
  matrix fixes t only up to sign. A failed estimate (fewer than 5 matches, no E, no pose
  with inliers) has error ``inf``.
- AUC at threshold T is the area under the recall-vs-error curve from 0 to T, divided by T
  (in [0, 1]); every pair counts, failures included.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

AUC_THRESHOLDS_DEG = (5.0, 10.0, 20.0)
_TEST_SPLIT = re.compile(r"(^|[^a-z])test", re.IGNORECASE)


@dataclass(frozen=True)
class PosePair:
    """One image pair: matched pixel coordinates (M x 2 each, row i matches row i), both
    intrinsics, and the ground-truth relative pose (``X2 = R @ X1 + t``)."""

    keypoints1: np.ndarray
    keypoints2: np.ndarray
    K1: np.ndarray
    K2: np.ndarray
    R: np.ndarray
    t: np.ndarray


@dataclass(frozen=True)
class PoseEstimate:
    """An estimated rotation, unit translation direction and the RANSAC inlier mask of E."""

    R: np.ndarray
    t: np.ndarray
    inliers: np.ndarray


def _normalise(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    return (points - K[:2, 2]) / np.array([K[0, 0], K[1, 1]])


def estimate_pose(
    pair: PosePair, threshold_px: float, confidence: float = 0.99999
) -> PoseEstimate | None:
    """R, t (unit) from the pair's matches by RANSAC on E, or None when estimation fails.

    Of the several E OpenCV may return, the one whose ``recoverPose`` cheirality check keeps
    the most inliers wins (SuperGlue/LoFTR do the same)."""
    if threshold_px <= 0:
        raise ValueError(f"the RANSAC threshold must be positive pixels, got {threshold_px}")
    kpts1 = np.asarray(pair.keypoints1, dtype=np.float64)
    kpts2 = np.asarray(pair.keypoints2, dtype=np.float64)
    if kpts1.shape != kpts2.shape or kpts1.ndim != 2 or kpts1.shape[1] != 2:
        raise ValueError(
            f"keypoints must be two M x 2 arrays of matched rows, got {kpts1.shape} and "
            f"{kpts2.shape}"
        )
    if len(kpts1) < 5:
        return None
    focal = np.mean([pair.K1[0, 0], pair.K1[1, 1], pair.K2[0, 0], pair.K2[1, 1]])
    n1, n2 = _normalise(kpts1, pair.K1), _normalise(kpts2, pair.K2)
    try:
        E, mask = cv2.findEssentialMat(
            n1, n2, np.eye(3), method=cv2.RANSAC, prob=confidence, threshold=threshold_px / focal
        )
    except cv2.error:
        return None  # OpenCV 5.1 raises on a degenerate minimal sample: no estimate
    if E is None:
        return None
    best: PoseEstimate | None = None
    best_count = 0
    for candidate in np.split(E, len(E) // 3):
        # recoverPose may narrow the mask it is given in place: give each candidate a copy
        count, R, t, _ = cv2.recoverPose(candidate, n1, n2, np.eye(3), 1e9, mask=mask.copy())
        if count > best_count:
            best_count = count
            best = PoseEstimate(R, t[:, 0] / np.linalg.norm(t), mask.ravel() > 0)
    return best


def rotation_error_deg(R_est: np.ndarray, R_true: np.ndarray) -> float:
    """Angle of ``R_est.T @ R_true`` in degrees, in [0, 180]."""
    cos = (np.trace(R_est.T @ R_true) - 1.0) / 2.0
    return math.degrees(math.acos(float(np.clip(cos, -1.0, 1.0))))


def translation_error_deg(t_est: np.ndarray, t_true: np.ndarray) -> float:
    """Angle between the directions, folded for E's sign ambiguity: in [0, 90] degrees.
    Refuses a zero vector (a pure rotation has no translation direction to compare)."""
    norm = float(np.linalg.norm(t_est) * np.linalg.norm(t_true))
    if norm == 0.0:
        raise ValueError("a translation is zero; its direction, hence the error, is undefined")
    angle = math.degrees(math.acos(float(np.clip(np.dot(t_est, t_true) / norm, -1.0, 1.0))))
    return min(angle, 180.0 - angle)


def pose_error_deg(estimate: PoseEstimate | None, R_true: np.ndarray, t_true: np.ndarray) -> float:
    """max(rotation error, translation error) in degrees; ``inf`` for a failed estimate."""
    if estimate is None:
        return math.inf
    return max(rotation_error_deg(estimate.R, R_true), translation_error_deg(estimate.t, t_true))


def pose_auc(
    errors: Sequence[float], thresholds: Sequence[float] = AUC_THRESHOLDS_DEG
) -> dict[float, float]:
    """Area under the cumulative error curve up to each threshold, divided by it.

    The curve starts at (0, 0), steps up by 1/n at each sorted error, and is integrated with
    the trapezoid rule up to the threshold, where it is held at its last value."""
    values = np.sort(np.asarray(errors, dtype=np.float64))
    if values.size == 0:
        raise ValueError("no pose errors; AUC needs at least one pair")
    if np.isnan(values).any() or (values < 0).any():
        raise ValueError("pose errors must be non-negative degrees (inf for a failure), not NaN")
    recall = np.r_[0.0, np.arange(1, len(values) + 1) / len(values)]
    values = np.r_[0.0, values]
    aucs = {}
    for threshold in thresholds:
        if threshold <= 0:
            raise ValueError(f"AUC thresholds must be positive degrees, got {threshold}")
        last = int(np.searchsorted(values, threshold))
        x = np.r_[values[:last], threshold]
        y = np.r_[recall[:last], recall[last - 1]]
        area = float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))
        aucs[float(threshold)] = area / threshold
    return aucs


def pose_errors(
    pairs: Sequence[PosePair],
    threshold_px: float,
    jobs: int = 1,
    on_done: Callable[[], None] | None = None,
) -> list[float]:
    """The pose error of each pair (in order) at one RANSAC threshold, on ``jobs`` threads
    (OpenCV releases the GIL while it estimates; each estimate is deterministic, so the
    errors do not depend on ``jobs``). ``on_done`` is called after each pair."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")

    def error(pair: PosePair) -> float:
        found = pose_error_deg(estimate_pose(pair, threshold_px), pair.R, pair.t)
        if on_done is not None:
            on_done()
        return found

    if jobs == 1 or len(pairs) < 2:
        return [error(pair) for pair in pairs]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(error, pairs))


def evaluate_poses(
    pairs: Sequence[PosePair],
    threshold_px: float,
    thresholds: Sequence[float] = AUC_THRESHOLDS_DEG,
    jobs: int = 1,
    on_done: Callable[[], None] | None = None,
) -> dict[str, float]:
    """Pose AUC of the pairs at one RANSAC threshold: ``{"auc@5": ..., "failures": ...}``."""
    errors = pose_errors(pairs, threshold_px, jobs, on_done)
    result = {f"auc@{t:g}": v for t, v in pose_auc(errors, thresholds).items()}
    result["failures"] = float(sum(math.isinf(e) for e in errors))
    return result


def select_ransac_threshold(
    pairs: Sequence[PosePair],
    candidates_px: Sequence[float],
    *,
    split: str,
    reported_splits: Collection[str],
    thresholds: Sequence[float] = AUC_THRESHOLDS_DEG,
    jobs: int = 1,
    on_done: Callable[[], None] | None = None,
) -> tuple[float, dict[float, float]]:
    """The candidate RANSAC threshold with the best mean AUC over ``thresholds``, and the mean
    AUC of every candidate (ties: the smaller threshold).

    ``pairs`` must come from the split named ``split``, a validation split. It is refused
    when it is one of ``reported_splits`` (the splits whose metrics the evaluation reports)
    or when its name says test: choosing on the test set (an upstream VOP bug) inflates it."""
    if split in reported_splits:
        raise ValueError(
            f"split {split!r} is also reported; choose the RANSAC threshold on a validation "
            "split whose metrics are not reported"
        )
    if _TEST_SPLIT.search(split):
        raise ValueError(f"split {split!r} is named as a test split; pass a validation split")
    if not candidates_px:
        raise ValueError("no candidate thresholds; give at least one, in pixels")
    if not pairs:
        raise ValueError(f"split {split!r} has no pairs to choose a threshold on")
    means = {}
    for candidate in candidates_px:
        aucs = evaluate_poses(pairs, candidate, thresholds, jobs, on_done)
        means[float(candidate)] = float(np.mean([aucs[f"auc@{t:g}"] for t in thresholds]))
    best = max(sorted(means), key=lambda c: means[c])
    return best, means
