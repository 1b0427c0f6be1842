"""Local features and matches for relative pose: OpenCV SIFT, Lowe's ratio test, mutual check.

The pose benchmark needs a matcher that does not depend on the model under test, so that a
better pose AUC comes only from retrieving better pairs. SIFT (in OpenCV's main module since
4.4) is that fixed matcher here. A match ``i -> j`` is kept when the nearest descriptor of
``j`` is closer than ``ratio`` times the second nearest (Lowe) and ``i`` is in turn the
nearest descriptor of the first image to it (mutual). Keypoints are pixel coordinates
``(x, y)`` of the image as read, float64.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from vcat.regular import require_regular


@dataclass(frozen=True)
class LocalFeatures:
    """An image's keypoints (N x 2, pixels) and their descriptors (N x 128, float32)."""

    keypoints: np.ndarray
    descriptors: np.ndarray


class MatchingError(ValueError):
    """An image cannot be read for matching."""


def read_gray(path: Path) -> np.ndarray:
    """The image at ``path`` as 8-bit grey; MatchingError naming the file when unreadable."""
    try:
        require_regular(path)  # a FIFO would block the read
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise MatchingError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise MatchingError(f"{path}: not a decodable image; fetch or verify the dataset again")
    return image


def sift_features(gray: np.ndarray, max_keypoints: int) -> LocalFeatures:
    """At most ``max_keypoints`` SIFT keypoints (the strongest) of a grey image."""
    if max_keypoints < 1:
        raise ValueError(f"max_keypoints must be at least 1, got {max_keypoints}")
    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    points, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None:
        return LocalFeatures(np.zeros((0, 2)), np.zeros((0, 128), dtype=np.float32))
    keypoints = np.array([p.pt for p in points], dtype=np.float64).reshape(-1, 2)
    return LocalFeatures(keypoints, descriptors.astype(np.float32))


def mutual_ratio_matches(
    first: LocalFeatures, second: LocalFeatures, ratio: float
) -> tuple[np.ndarray, np.ndarray]:
    """Matched keypoints (M x 2 each, row i matches row i) by the ratio test and mutual check."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"the ratio test's ratio is in (0, 1], got {ratio}")
    empty = (np.zeros((0, 2)), np.zeros((0, 2)))
    if len(first.descriptors) < 2 or len(second.descriptors) < 2:
        return empty
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    forward = matcher.knnMatch(first.descriptors, second.descriptors, k=2)
    backward = matcher.match(second.descriptors, first.descriptors)
    nearest_back = {m.queryIdx: m.trainIdx for m in backward}
    kept = [
        (best.queryIdx, best.trainIdx)
        for best, runner_up in (pair for pair in forward if len(pair) == 2)
        if best.distance < ratio * runner_up.distance
        and nearest_back.get(best.trainIdx) == best.queryIdx
    ]
    if not kept:
        return empty
    rows = np.array(kept, dtype=np.int64)
    return first.keypoints[rows[:, 0]], second.keypoints[rows[:, 1]]
