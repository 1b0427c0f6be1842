"""demo-megadepth and its CroCo crop list: the layouts their source projects read, scene ids no
real MegaDepth scene has, enough pairs of every overlap for the shipped pair samplers, and
geometry that holds when checked independently of the code that made it."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_demo_geometry import agrees, carry, read_depth
from vcat.demo.croco import CROPS_PATH, build_croco_metadata
from vcat.demo.megadepth import build_megadepth
from vcat.demo.scenes import SCENE_IDS, TEST_SCENES, TRAIN_SCENES

VIEWS = 48
WIDTH, HEIGHT = 320, 240
# glue-factory's shipped MegaDepth training settings and VOP's (train_configs/best.yaml)
MIN_OVERLAP, MAX_OVERLAP, BINS = 0.1, 0.7, 3
GLUE_FACTORY_PAIRS = 300
VOP_PAIRS, VOP_NEGATIVES = 200, 200


@pytest.fixture(scope="module")
def megadepth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("megadepth")
    build_megadepth(root)
    return root


@pytest.fixture(scope="module")
def croco_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("croco")
    build_croco_metadata(root)
    return root


def load_info(root: Path, scene: str):
    return np.load(str(root / "scene_info" / f"{scene}.npz"), allow_pickle=True)


# --- scene ids ------------------------------------------------------------------------------


def test_scene_ids_can_never_be_real_megadepth_ids(megadepth_root: Path) -> None:
    # real ids are four decimal digits ("0015", "0022", ...): a demo id has letters
    for scene in SCENE_IDS:
        assert re.fullmatch(r"demo\d{2}", scene)
        assert not re.fullmatch(r"\d+", scene)
    scene_infos = sorted(path.stem for path in (megadepth_root / "scene_info").glob("*.npz"))
    assert scene_infos == sorted(SCENE_IDS)
    for folder in ("Undistorted_SfM", "depth_undistorted"):
        assert sorted(p.name for p in (megadepth_root / folder).iterdir()) == sorted(SCENE_IDS)


# --- the layout glue-factory and VOP read ---------------------------------------------------


def test_megadepth_reads_the_way_glue_factory_reads_it(megadepth_root: Path) -> None:
    for scene in SCENE_IDS:
        info = load_info(megadepth_root, scene)
        images, depths = info["image_paths"], info["depth_paths"]
        valid = (images != None) & (depths != None)  # noqa: E711 - glue-factory's own test
        assert valid.all() and len(images) == VIEWS and len(set(images)) == VIEWS
        assert info["intrinsics"].shape == (VIEWS, 3, 3)
        assert info["poses"].shape == (VIEWS, 4, 4)
        for index, image in enumerate(images):
            assert image.startswith(f"Undistorted_SfM/{scene}/images/")
            # glue-factory builds the depth path from the stem, VOP reads depth_paths
            assert depths[index] == f"depth_undistorted/{scene}/{Path(image).stem}.h5"
            depth = read_depth(megadepth_root, scene, image)
            with Image.open(megadepth_root / image) as photo:
                assert photo.mode == "RGB" and photo.size == (WIDTH, HEIGHT)
            assert depth.shape == (HEIGHT, WIDTH)
            assert depth.dtype == np.float32 and (depth >= 0).all() and (depth > 0).mean() > 0.3
            pose = info["poses"][index]
            np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)


def test_published_depth_is_on_a_1024th_of_a_metre(megadepth_root: Path) -> None:
    info = load_info(megadepth_root, "demo01")
    depth = read_depth(megadepth_root, "demo01", info["image_paths"][0]).astype(np.float64)
    steps = depth * 1024
    assert (steps == np.round(steps)).all()


def test_overlap_matrix_marks_pairs_not_self_pairs(megadepth_root: Path) -> None:
    off = ~np.eye(VIEWS, dtype=bool)
    for scene in SCENE_IDS:
        info = load_info(megadepth_root, scene)
        overlap = info["overlap_matrix"]
        assert (np.diag(overlap) == -1).all()
        assert ((overlap[off] >= 0) & (overlap[off] <= 1)).all()
        ratio, angles = info["scale_ratio_matrix"], info["angles"]
        np.testing.assert_array_equal(ratio, ratio.T)
        assert ((ratio[off] >= 1) | (ratio[off] == -1)).all()
        assert ((ratio == -1) == ((overlap <= 0) & (overlap.T <= 0))).all()
        np.testing.assert_array_equal(angles, angles.T)
        assert (np.diag(angles) == 0).all() and (angles[off] > 0).all()


def binned_pairs(overlap: np.ndarray) -> list[np.ndarray]:
    """Ordered pairs (i, j) per overlap bin, selected as glue-factory and VOP select them."""
    width = (MAX_OVERLAP - MIN_OVERLAP) / BINS
    pairs = []
    for k in range(BINS):
        low = MIN_OVERLAP + k * width
        chosen = (overlap > low) & (overlap <= low + width)
        pairs.append(np.stack(np.where(chosen), -1))
    return pairs


def sample(pairs: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """glue-factory's ``sample_n``: without replacement when there are more than ``count``."""
    if len(pairs) > count:
        return pairs[np.random.RandomState(seed).choice(len(pairs), count, replace=False)]
    return pairs


@pytest.mark.parametrize("scene", SCENE_IDS)
def test_shipped_pair_samplers_fill_every_bin(megadepth_root: Path, scene: str) -> None:
    overlap = load_info(megadepth_root, scene)["overlap_matrix"]
    bins = binned_pairs(overlap)
    for total in (GLUE_FACTORY_PAIRS, VOP_PAIRS):
        per_bin = total // BINS
        # a bin is used only when it holds twice its share; then it gives per_bin pairs
        assert [len(pairs) >= 2 * per_bin for pairs in bins] == [True] * BINS, (
            scene,
            [len(pairs) for pairs in bins],
        )
        drawn = np.concatenate([sample(pairs, per_bin) for pairs in bins])
        assert len(drawn) == total - total % BINS
        assert len({(int(i), int(j)) for i, j in drawn}) == len(drawn)
        assert (drawn[:, 0] != drawn[:, 1]).all()
    # VOP's negatives: overlap exactly 0 (the diagonal is -1, so never an image with itself)
    negatives = np.stack(np.where(overlap == 0.0), -1)
    assert len(negatives) >= VOP_NEGATIVES and (negatives[:, 0] != negatives[:, 1]).all()
    assert len(sample(negatives, VOP_NEGATIVES)) == VOP_NEGATIVES


def test_depth_and_poses_agree_between_views(megadepth_root: Path) -> None:
    rng = np.random.default_rng(11)
    rows, cols = np.mgrid[2:HEIGHT:4, 2:WIDTH:4].reshape(2, -1)
    for scene in SCENE_IDS:
        info = load_info(megadepth_root, scene)
        K, T, overlap = info["intrinsics"], info["poses"], info["overlap_matrix"]
        paths = info["image_paths"]
        depths = {}
        for flat in rng.choice(VIEWS * VIEWS, 60, replace=False):
            i, j = divmod(int(flat), VIEWS)
            if i == j:
                continue
            for k in (i, j):
                if k not in depths:
                    depths[k] = read_depth(megadepth_root, scene, paths[k])
            keep = depths[i][rows, cols] > 0
            x, y, z = carry(depths[i], K[i], T[i], K[j], T[j], rows[keep], cols[keep])
            ok = agrees(depths[j], x, y, z, tolerance=0.02)
            # the published overlap is this measurement, made by the builder's own code
            assert abs(ok.mean() - overlap[i, j]) < 0.01, (scene, i, j)
            if overlap[i, j] > 0.3:
                col = np.floor(x[ok]).astype(int)
                row = np.floor(y[ok]).astype(int)
                error = np.abs(depths[j][row, col] - z[ok]) / z[ok]
                assert np.median(error) < 2e-3, (scene, i, j)


# --- CroCo crops ----------------------------------------------------------------------------


def read_crops(path: Path) -> list[tuple[str, str, int, list[tuple[tuple[int, ...], ...]]]]:
    """The file as CroCo's ``load_crop_file`` reads it."""
    pairs: list = []
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split(", ")
        if len(fields) < 8:
            img1, img2, rotation = fields
            pairs.append((img1, img2, int(rotation), []))
        else:
            l1, r1, t1, b1, l2, r2, t2, b2 = map(int, fields)
            pairs[-1][-1].append(((l1, t1, r1, b1), (l2, t2, r2, b2)))
    return pairs


def test_crop_paths_follow_the_megadepth_release_layout(
    croco_root: Path, megadepth_root: Path
) -> None:
    # CroCo's guide: <root>/<scene>/images/<name>.jpg; demo-megadepth's Undistorted_SfM/ is it
    release_root = megadepth_root / "Undistorted_SfM"
    for img1, img2, _, _ in read_crops(croco_root / CROPS_PATH):
        for name in (img1, img2):
            assert re.fullmatch(r"demo\d{2}/images/\d{10}_[0-9a-f]{10}_o\.jpg", name), name
            assert (release_root / name).is_file()


def test_crops_list_training_scenes_only_with_boxes_inside_images(
    croco_root: Path, megadepth_root: Path
) -> None:
    pairs = read_crops(croco_root / CROPS_PATH)
    assert 60 < len(pairs) < 200 and 120 < sum(len(p[3]) for p in pairs) < 400
    scenes_seen = {p[0].split("/")[0] for p in pairs} | {p[1].split("/")[0] for p in pairs}
    assert scenes_seen == set(TRAIN_SCENES)
    assert not any(p[0].startswith(f"{held_out}/") for p in pairs for held_out in TEST_SCENES)
    assert any(abs(p[2]) > 60 for p in pairs), "no pair exercises CroCo's rotation"
    for img1, img2, _, crops in pairs:
        assert img1.split("/")[0] == img2.split("/")[0]
        assert crops
        for box1, box2 in crops:
            for left, top, right, bottom in (box1, box2):
                assert 0 <= left < right <= WIDTH and 0 <= top < bottom <= HEIGHT


def test_crop_boxes_overlap_in_3d(croco_root: Path, megadepth_root: Path) -> None:
    infos = {s: load_info(megadepth_root, s) for s in TRAIN_SCENES}
    for img1, img2, _, crops in read_crops(croco_root / CROPS_PATH):
        scene = img1.split("/")[0]
        info = infos[scene]
        names = list(info["image_paths"])
        i, j = names.index(f"Undistorted_SfM/{img1}"), names.index(f"Undistorted_SfM/{img2}")
        depth1 = read_depth(megadepth_root, scene, img1)
        depth2 = read_depth(megadepth_root, scene, img2)
        for (l1, t1, r1, b1), (l2, t2, r2, b2) in crops:
            rows, cols = np.mgrid[t1:b1:3, l1:r1:3].reshape(2, -1)
            keep = depth1[rows, cols] > 0
            args = (info["intrinsics"][i], info["poses"][i], info["intrinsics"][j])
            x, y, z = carry(depth1, *args, info["poses"][j], rows[keep], cols[keep])
            inside = agrees(depth2, x, y, z, 0.02) & (x >= l2) & (x < r2) & (y >= t2) & (y < b2)
            assert inside.sum() >= 0.6 * keep.sum(), (img1, img2)


def test_rotation_turns_crop_two_onto_crop_one(croco_root: Path, megadepth_root: Path) -> None:
    """CroCo's own crop preparation, on a rotated pair: its rotation matches best."""
    transposes = {
        0: None,
        90: Image.Transpose.ROTATE_90,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_270,
    }
    release_root = megadepth_root / "Undistorted_SfM"

    def prepare(path: str, box: tuple[int, ...], turn: int) -> np.ndarray:
        with Image.open(release_root / path) as image:
            crop = image.convert("RGB").crop(box).resize((256, 256), Image.Resampling.BICUBIC)
        if transposes[turn] is not None:
            crop = crop.transpose(transposes[turn])
        return np.asarray(crop, dtype=np.float64)

    rotated = [p for p in read_crops(croco_root / CROPS_PATH) if abs(p[2]) > 60]
    assert rotated
    for img1, img2, rotation, crops in rotated:
        chosen = (round(rotation / 90) % 4) * 90
        box1, box2 = crops[0]
        first = prepare(img1, box1, 0)
        errors = {turn: np.abs(prepare(img2, box2, turn) - first).mean() for turn in transposes}
        assert min(errors, key=errors.__getitem__) == chosen, (img1, img2, errors)
