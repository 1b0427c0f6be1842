"""Relative-pose pairs of a MegaDepth scene: cameras from ``scene_info``, matches from SIFT.

The images are named as the overlap files and the features name them: their ``image_paths``
in the scene file, relative to the dataset root. Poses are world to camera (COLMAP), so the
pose from image i to image j is ``T_j @ inv(T_i)`` (``X_j = R @ X_i + t``). Local features
are computed once per image and matches once per unordered pair, however many rankings ask
for the pair (:class:`SceneMatcher`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from vcat.evaluation.matching import LocalFeatures, mutual_ratio_matches, read_gray, sift_features
from vcat.evaluation.pose import PosePair
from vcat.geometry.megadepth import SceneImage, read_scene_info


class SceneError(ValueError):
    """A scene's cameras do not cover the images evaluated."""


def scene_cameras(
    scene_info: Path, root: Path, names: Sequence[str], *, allow_pickle: bool = False
) -> list[SceneImage]:
    """The camera of each of ``names`` (in that order) from the scene file ``scene_info``."""
    images = {
        image.image_path: image
        for image in read_scene_info(scene_info, root, allow_pickle=allow_pickle)
    }
    missing = [name for name in names if name not in images]
    if missing:
        raise SceneError(
            f"{scene_info}: no camera for {len(missing)} image(s) the overlap file lists, e.g. "
            f"{missing[0]}; the overlap files and scene_info must come from the same release"
        )
    return [images[name] for name in names]


def relative_pose(first: SceneImage, second: SceneImage) -> tuple[np.ndarray, np.ndarray]:
    """R (3x3) and t (3,) taking camera ``first``'s coordinates to camera ``second``'s."""
    pose = second.world_to_camera @ np.linalg.inv(first.world_to_camera)
    return pose[:3, :3], pose[:3, 3]


class SceneMatcher:
    """Pose pairs between the images of one scene, with SIFT features read lazily."""

    def __init__(
        self, root: Path, cameras: Sequence[SceneImage], max_keypoints: int, ratio: float
    ) -> None:
        self.root = root
        self.cameras = list(cameras)
        self.max_keypoints = max_keypoints
        self.ratio = ratio
        self._features: dict[int, LocalFeatures] = {}
        self._matches: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}

    def features(self, index: int) -> LocalFeatures:
        if index not in self._features:
            gray = read_gray(self.root / self.cameras[index].image_path)
            self._features[index] = sift_features(gray, self.max_keypoints)
        return self._features[index]

    def matches(self, i: int, j: int) -> tuple[np.ndarray, np.ndarray]:
        """Matched keypoints of image i and image j (row k of one matches row k of the other).

        The ratio test is not symmetric, so a pair is always matched from its lower index:
        (i, j) and (j, i) get the same matches, whichever is asked first."""
        low, high = min(i, j), max(i, j)
        if (low, high) not in self._matches:
            self._matches[(low, high)] = mutual_ratio_matches(
                self.features(low), self.features(high), self.ratio
            )
        first, second = self._matches[(low, high)]
        return (first, second) if i == low else (second, first)

    def pose_pair(self, i: int, j: int) -> PosePair:
        first, second = self.cameras[i], self.cameras[j]
        keypoints1, keypoints2 = self.matches(i, j)
        R, t = relative_pose(first, second)
        return PosePair(keypoints1, keypoints2, first.K, second.K, R, t)


def retrieved_pairs(rankings: Sequence[Sequence[int]], top_k: int) -> list[tuple[int, int]]:
    """(query, retrieved) for the first ``top_k`` of each query's ranking, in query order."""
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    return [(query, found) for query, ranking in enumerate(rankings) for found in ranking[:top_k]]


def overlapping_pairs(
    overlap: np.ndarray, min_overlap: float, limit: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """Up to ``limit`` pairs i < j with ``overlap[i, j] >= min_overlap``, drawn without
    replacement by ``rng`` and returned sorted."""
    rows, cols = np.nonzero(np.triu(np.asarray(overlap) >= min_overlap, k=1))
    pairs = list(zip(rows.tolist(), cols.tolist(), strict=True))
    if len(pairs) > limit:
        chosen = rng.choice(len(pairs), size=limit, replace=False)
        pairs = [pairs[k] for k in sorted(chosen.tolist())]
    return pairs
