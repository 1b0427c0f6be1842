"""The evaluate-overlap stage and its parts: SIFT matches, scene poses, rankings, splits; on
the demo, the trained head against the untrained head and CLS on the held-out scene."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from stages import evaluate_overlap
from vcat.evaluation.matching import (
    LocalFeatures,
    MatchingError,
    mutual_ratio_matches,
    read_gray,
    sift_features,
)
from vcat.evaluation.scene_poses import overlapping_pairs, relative_pose, retrieved_pairs
from vcat.geometry.megadepth import SceneImage
from vcat.training.overlap_eval import cls_rankings, vop_rankings

REPO = Path(__file__).resolve().parents[1]


def textured(seed: int, size: tuple[int, int] = (240, 320)) -> np.ndarray:
    """A grey image with blobs at every scale, which SIFT finds plenty of keypoints in."""
    rng = np.random.default_rng(seed)
    noise = rng.random(size).astype(np.float32)
    image = sum(cv2.GaussianBlur(noise, (0, 0), sigma) * sigma for sigma in (1.5, 3, 6))
    image = (image - image.min()) / (image.max() - image.min()) * 255
    return image.astype(np.uint8)


def test_matches_follow_a_known_shift() -> None:
    image = textured(0)
    shift = np.float32([[1, 0, 7], [0, 1, 3]])
    moved = cv2.warpAffine(image, shift, (image.shape[1], image.shape[0]))
    first, second = sift_features(image, 500), sift_features(moved, 500)
    points1, points2 = mutual_ratio_matches(first, second, 0.8)
    assert len(points1) >= 50
    inside = (points1[:, 0] < image.shape[1] - 12) & (points1[:, 1] < image.shape[0] - 8)
    offsets = (points2 - points1)[inside]
    assert np.allclose(np.median(offsets, axis=0), [7, 3], atol=0.05)
    assert np.mean(np.linalg.norm(offsets - [7, 3], axis=1) < 1.0) > 0.95


def test_matches_are_mutual_nearest_neighbours() -> None:
    # descriptors 0 and 1 of the first image both have descriptor 0 of the second nearest;
    # only the mutual pair (0, 0) survives, and the ratio test drops an ambiguous one
    first = LocalFeatures(
        np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]),
        np.array([[0, 0], [0.1, 0], [5, 5.1]], dtype=np.float32),
    )
    second = LocalFeatures(
        np.array([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]]),
        np.array([[0, 0], [9, 9], [5, 5]], dtype=np.float32),
    )
    points1, points2 = mutual_ratio_matches(first, second, 0.8)
    assert points1.tolist() == [[1.0, 1.0], [3.0, 3.0]]
    assert points2.tolist() == [[10.0, 10.0], [30.0, 30.0]]
    strict1, _ = mutual_ratio_matches(first, second, 0.01)
    assert strict1.tolist() == [[1.0, 1.0]]  # distance 0 passes any ratio


def test_flat_image_has_no_keypoints_and_no_matches() -> None:
    flat = sift_features(np.full((64, 64), 128, np.uint8), 100)
    assert flat.keypoints.shape == (0, 2)
    points1, points2 = mutual_ratio_matches(flat, sift_features(textured(1), 100), 0.8)
    assert points1.shape == points2.shape == (0, 2)
    with pytest.raises(ValueError, match="ratio"):
        mutual_ratio_matches(flat, flat, 1.5)


def test_unreadable_image_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(MatchingError, match=r"broken\.jpg: not a decodable image"):
        read_gray(broken)
    with pytest.raises(MatchingError, match=r"missing\.jpg: cannot be read"):
        read_gray(tmp_path / "missing.jpg")


def camera(world_to_camera: np.ndarray) -> SceneImage:
    return SceneImage("a.jpg", Path("a.h5"), np.eye(3), world_to_camera)


def test_relative_pose_by_hand() -> None:
    # camera 1 at the origin looking down z; camera 2 turned 90 degrees about y and moved
    first = camera(np.eye(4))
    turn = np.array([[0.0, 0, 1], [0, 1, 0], [-1, 0, 0]])
    second_pose = np.eye(4)
    second_pose[:3, :3] = turn
    second_pose[:3, 3] = [1.0, 2.0, 3.0]
    R, t = relative_pose(first, camera(second_pose))
    assert np.allclose(R, turn) and np.allclose(t, [1, 2, 3])
    # a world point seen by both: X2 = R X1 + t with both cameras' own transforms
    point = np.array([0.5, -1.0, 4.0, 1.0])
    third_pose = np.eye(4)
    third_pose[:3, 3] = [0.0, 0.0, -2.0]
    R, t = relative_pose(camera(third_pose), camera(second_pose))
    in_first, in_second = (third_pose @ point)[:3], (second_pose @ point)[:3]
    assert np.allclose(R @ in_first + t, in_second)


def test_retrieved_and_overlapping_pairs() -> None:
    assert retrieved_pairs([[2, 1], [0, 2], [1]], 1) == [(0, 2), (1, 0), (2, 1)]
    assert retrieved_pairs([[2, 1], [0, 2], [1]], 5) == [(0, 2), (0, 1), (1, 0), (1, 2), (2, 1)]
    with pytest.raises(ValueError, match="top_k"):
        retrieved_pairs([[1]], 0)
    overlap = np.array(
        [[-1, 0.3, 0.1, 0.9], [0.2, -1, 0.5, 0], [0.1, 0.6, -1, 0.25], [0, 0, 0, -1]]
    )
    rng = np.random.default_rng(0)
    assert overlapping_pairs(overlap, 0.25, 10, rng) == [(0, 1), (0, 3), (1, 2), (2, 3)]
    drawn = overlapping_pairs(overlap, 0.25, 2, np.random.default_rng(3))
    assert len(drawn) == 2 and drawn == sorted(drawn)
    assert drawn == overlapping_pairs(overlap, 0.25, 2, np.random.default_rng(3))


def test_rankings_leave_the_query_out_and_respect_the_shortlist() -> None:
    # dot products (not normalised, as VOP's shortlist): image 0 is nearest 1 (0.9), then
    # 2 (0.6), then 3 (0); image 2 is nearer image 0 (0.6) than to itself (0.52)
    global_descriptors = np.array([[1.0, 0], [0.9, 0.1], [0.6, 0.4], [0, 1.0]])
    assert cls_rankings(global_descriptors) == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [2, 1, 0]]
    patches = np.repeat(global_descriptors[:, None, :], 4, axis=1)
    full = vop_rankings(patches, global_descriptors, radius=0.5)
    assert all(query not in ranking for query, ranking in enumerate(full))
    assert [len(ranking) for ranking in full] == [3, 3, 3, 3]
    short = vop_rankings(patches, global_descriptors, pre_filter=1, radius=0.5)
    assert short == [[1], [0], [0], [2]]  # one CLS neighbour each, never the query itself
    with pytest.raises(ValueError, match="pre_filter"):
        vop_rankings(patches, global_descriptors, pre_filter=0, radius=0.5)


@pytest.fixture
def demo_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A catalog holding a copy of demo-megadepth's entry, named by VCAT_CATALOG."""
    catalog = tmp_path / "catalog"
    (catalog / "datasets").mkdir(parents=True)
    shutil.copy(REPO / "catalog/datasets/demo-megadepth.yaml", catalog / "datasets")
    monkeypatch.setenv("VCAT_CATALOG", str(catalog))
    return catalog


def run_with(tmp_path: Path, **conf: object) -> dict:
    missing = tmp_path / "unused"
    return evaluate_overlap.main(conf, missing, missing, missing, missing, tmp_path / "out")


def test_validation_split_must_differ_from_the_reported_one(
    demo_catalog: Path, tmp_path: Path
) -> None:
    with pytest.raises(evaluate_overlap.EvaluateOverlapError, match="demo04 of demo-megadepth"):
        run_with(tmp_path, validation_split="test")
    with pytest.raises(evaluate_overlap.EvaluateOverlapError, match=r"no split 'dev'.*train, val"):
        run_with(tmp_path, validation_split="dev")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ({"min_overlap": 0.0}, "min_overlap"),
        ({"ks": []}, "ks"),
        ({"pre_filter": 0}, "pre_filter"),
        ({"pose": {"ransac_px": [1.0, -2.0]}}, "ransac_px"),
    ],
)
def test_bad_settings_are_refused(
    demo_catalog: Path, tmp_path: Path, conf: dict, message: str
) -> None:
    with pytest.raises(evaluate_overlap.EvaluateOverlapError, match=message):
        run_with(tmp_path, **conf)


@pytest.mark.slow
def test_trained_head_beats_untrained_head_and_cls_on_held_out_scene(
    demo_trained_root: Path,
) -> None:
    """The chain as `vcat run` left it: the head trained on demo01-02 ranks the held-out
    demo04's overlapping images higher than its own initial weights and than CLS, and the
    pairs it retrieves give better relative poses (margins about half of those measured)."""
    metrics = json.loads(
        (demo_trained_root / "metrics/eval/overlap/vop-overlap-head-demo.json").read_text()
    )
    assert metrics["scenes"] == ["demo04"] and metrics["ransac"]["validation_scenes"] == ["demo03"]
    retrieval, pose = metrics["retrieval"], metrics["pose"]
    for baseline in ("untrained", "cls"):
        assert retrieval["vop"]["mAP"] >= retrieval[baseline]["mAP"] + 0.06
        assert retrieval["vop"]["recall@1"] >= retrieval[baseline]["recall@1"] + 0.1
        assert pose["vop"]["auc@10"] >= pose[baseline]["auc@10"] + 0.05
    assert retrieval["vop"]["queries"] == 48 and pose["vop"]["pairs"] == 48 * 5
    assert all(math.isfinite(value) for value in pose["vop"].values())
    pairs = (demo_trained_root / "data/eval/overlap/vop-overlap-head-demo/vop.txt").read_text()
    lines = pairs.splitlines()
    assert len(lines) == 48 * 10
    assert all(line.count("Undistorted_SfM/demo04/images/") == 2 for line in lines)


def test_a_pair_gets_the_same_matches_whichever_way_it_is_asked_first(tmp_path: Path) -> None:
    from vcat.evaluation.scene_poses import SceneMatcher

    base = textured(4)
    names = []
    for k, shift in enumerate(((0, 0), (9, 4), (-6, 7))):
        moved = cv2.warpAffine(base, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (320, 240))
        cv2.imwrite(str(tmp_path / f"{k}.png"), moved)
        names.append(f"{k}.png")
    cameras = [SceneImage(name, tmp_path / "d.h5", np.eye(3), np.eye(4)) for name in names]
    forward, backward = (SceneMatcher(tmp_path, cameras, 300, 0.8) for _ in range(2))
    one = forward.matches(0, 2)
    other = backward.matches(2, 0)[::-1]  # asked the other way first, then swapped back
    assert len(one[0]) > 20
    assert all(np.array_equal(a, b) for a, b in zip(one, other, strict=True))
    assert all(
        np.array_equal(a, b) for a, b in zip(forward.matches(2, 0), other[::-1], strict=True)
    )
