"""The demo world's geometric datasets: reproducible bytes, the formats their readers expect,
and geometry that holds when checked independently of the code that made it."""

from __future__ import annotations

import hashlib
import math
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from PIL import Image

from vcat.demo import matterport
from vcat.demo import scenes as scenes_module
from vcat.demo.croco import CROPS_PATH, build_croco_metadata
from vcat.demo.matterport import build_matterport
from vcat.demo.megadepth import build_megadepth
from vcat.demo.scenes import (
    SCENE_IDS,
    TEST_SCENES,
    TRAIN_SCENES,
    Quad,
    Scene,
    board,
    get_scene,
    look_at,
    render,
    sin_cos_degrees,
)
from vcat.demo.video import build_video

PROJECT = Path(__file__).resolve().parents[1]


def tree_md5(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


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


@pytest.fixture(scope="module")
def matterport_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matterport")
    build_matterport(root)
    return root


@pytest.fixture(scope="module")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "demo-flythrough.mp4"
    build_video(path)
    return path


# --- independent geometry (numpy and BLAS, not the renderer's helpers) ---------------------


def carry(
    depth: np.ndarray, K1: np.ndarray, T1: np.ndarray, K2: np.ndarray, T2: np.ndarray, rows, cols
):
    """Pixels (rows, cols) of image 1 with their depth, as image coordinates and depth in 2
    (world-to-camera 4x4 poses; pixel centres at +0.5)."""
    z = depth[rows, cols].astype(np.float64)
    pixels = np.stack([cols + 0.5, rows + 0.5, np.ones(rows.size)])
    points = np.linalg.inv(K1) @ pixels * z
    relative = T2 @ np.linalg.inv(T1)
    moved = relative[:3, :3] @ points + relative[:3, 3:]
    projected = K2 @ moved
    return projected[0] / projected[2], projected[1] / projected[2], moved[2]


def agrees(depth2: np.ndarray, x, y, z, tolerance: float = 0.01) -> np.ndarray:
    """Points that land inside image 2, in front, where image 2's depth agrees with theirs."""
    height, width = depth2.shape
    inside = (z > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    col = np.clip(np.floor(np.where(inside, x, 0)), 0, width - 1).astype(int)
    row = np.clip(np.floor(np.where(inside, y, 0)), 0, height - 1).astype(int)
    seen = depth2[row, col]
    return inside & (seen > 0) & (np.abs(seen - z) <= tolerance * seen)


def read_depth(root: Path, scene: str, image_path: str) -> np.ndarray:
    # glue-factory: root / depth_subpath / scene / (Path(image).stem + ".h5"), dataset "/depth"
    path = root / "depth_undistorted" / scene / (Path(image_path).stem + ".h5")
    with h5py.File(str(path), "r") as h5:
        return h5["/depth"].__array__().astype(np.float32, copy=False)


# --- scenes and renderer --------------------------------------------------------------------


def test_sin_cos_degrees_agrees_with_the_c_library() -> None:
    for degrees in np.linspace(-400.0, 400.0, 1601):
        s, c = sin_cos_degrees(float(degrees))
        assert abs(s - math.sin(math.radians(degrees))) < 1e-15
        assert abs(c - math.cos(math.radians(degrees))) < 1e-15


def test_a_board_facing_the_camera_renders_at_its_exact_distance() -> None:
    quad = board("astronaut", (0.0, 3.0, 1.5), 2.0)  # upright, 3 m ahead of the camera
    camera = look_at("front", (0.0, 0.0, 1.5), (0.0, 1.0, 1.5), 400.0, 160, 120)
    rgb, depth = render(Scene("t", (quad,), (camera,), background=(1, 2, 3)), camera)
    hit = depth > 0
    # the board spans 2 m at 3 m: 2 / 3 * 400 = 267 px, wider than the image; its height too
    assert hit.all()
    assert np.abs(depth - 3.0).max() < 1e-6
    assert rgb.shape == (120, 160, 3) and rgb.dtype == np.uint8
    camera_above = look_at("up", (0.0, 0.0, 9.0), (0.0, 1.0, 9.0), 400.0, 160, 120)
    rgb, depth = render(Scene("t", (quad,), (camera_above,), background=(1, 2, 3)), camera_above)
    assert not (depth > 0).any() and (rgb == (1, 2, 3)).all()


def test_rendering_in_bands_of_any_size_gives_the_same_pixels(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scene = get_scene("0002")
    camera = scene.cameras[5]
    rgb, depth = render(scene, camera)
    monkeypatch.setattr(scenes_module, "BAND_PIXELS", 480 * 7)
    other_rgb, other_depth = render(scene, camera)
    assert rgb.tobytes() == other_rgb.tobytes() and depth.tobytes() == other_depth.tobytes()


def test_a_skewed_quad_and_an_unknown_scene_are_refused() -> None:
    with pytest.raises(ValueError, match="'chelsea'"):
        Quad("chelsea", (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0))
    with pytest.raises(KeyError, match="9999"):
        get_scene("9999")


def test_scenes_have_eight_views_and_a_held_out_scene() -> None:
    assert set(TRAIN_SCENES) | set(TEST_SCENES) == set(SCENE_IDS)
    assert not set(TRAIN_SCENES) & set(TEST_SCENES)
    for scene_id in SCENE_IDS:
        scene = get_scene(scene_id)
        assert len(scene.cameras) == 8
        assert {(c.width, c.height) for c in scene.cameras} == {(480, 360)}


# --- MegaDepth ------------------------------------------------------------------------------


def test_megadepth_reads_the_way_glue_factory_reads_it(megadepth_root: Path) -> None:
    for scene in SCENE_IDS:
        info = np.load(str(megadepth_root / "scene_info" / f"{scene}.npz"), allow_pickle=True)
        images, depths = info["image_paths"], info["depth_paths"]
        valid = (images != None) & (depths != None)  # noqa: E711 - glue-factory's own test
        assert valid.all() and len(images) == 8
        assert info["intrinsics"].shape == (8, 3, 3) and info["poses"].shape == (8, 4, 4)
        for index, image in enumerate(images):
            assert image.startswith(f"Undistorted_SfM/{scene}/images/")
            assert depths[index] == f"depth_undistorted/{scene}/{Path(image).stem}.h5"
            depth = read_depth(megadepth_root, scene, image)
            with Image.open(megadepth_root / image) as photo:
                assert photo.mode == "RGB" and photo.size == (depth.shape[1], depth.shape[0])
            assert depth.dtype == np.float32 and (depth >= 0).all() and (depth > 0).mean() > 0.5
            pose = info["poses"][index]
            np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
            np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)


def test_megadepth_overlap_matrix_marks_pairs_not_self_pairs(megadepth_root: Path) -> None:
    for scene in SCENE_IDS:
        info = np.load(str(megadepth_root / "scene_info" / f"{scene}.npz"))
        overlap = info["overlap_matrix"]
        off = ~np.eye(8, dtype=bool)
        assert (np.diag(overlap) == -1).all()
        assert ((overlap[off] >= 0) & (overlap[off] <= 1)).all()
        # glue-factory's pair selection with its default min_overlap 0.3, max_overlap 1.0
        pairs = np.stack(np.where((overlap > 0.3) & (overlap <= 1.0)), -1)
        assert len(pairs) > 8 and (pairs[:, 0] != pairs[:, 1]).all()
        ratio, angles = info["scale_ratio_matrix"], info["angles"]
        np.testing.assert_array_equal(ratio, ratio.T)
        assert ((ratio[off] >= 1) | (ratio[off] == -1)).all()
        np.testing.assert_array_equal(angles, angles.T)
        assert (np.diag(angles) == 0).all() and (angles[off] > 0).all()


def test_megadepth_depth_and_poses_agree_between_views(megadepth_root: Path) -> None:
    for scene in SCENE_IDS:
        info = np.load(str(megadepth_root / "scene_info" / f"{scene}.npz"))
        K, T, overlap = info["intrinsics"], info["poses"], info["overlap_matrix"]
        depths = [read_depth(megadepth_root, scene, p) for p in info["image_paths"]]
        for i in range(8):
            rows, cols = np.mgrid[2:360:4, 2:480:4].reshape(2, -1)
            keep = depths[i][rows, cols] > 0
            rows, cols = rows[keep], cols[keep]
            for j in range(8):
                if i == j:
                    continue
                x, y, z = carry(depths[i], K[i], T[i], K[j], T[j], rows, cols)
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


def test_crops_list_training_scenes_only_with_boxes_inside_images(
    croco_root: Path, megadepth_root: Path
) -> None:
    pairs = read_crops(croco_root / CROPS_PATH)
    assert len(pairs) > 30 and sum(len(p[3]) for p in pairs) > 60
    scenes_seen = {p[0].split("/")[1] for p in pairs} | {p[1].split("/")[1] for p in pairs}
    assert scenes_seen == set(TRAIN_SCENES)
    assert not any(f"/{held_out}/" in p[0] + p[1] for p in pairs for held_out in TEST_SCENES)
    assert any(abs(p[2]) > 60 for p in pairs), "no pair exercises CroCo's rotation"
    for img1, img2, _, crops in pairs:
        assert img1.split("/")[1] == img2.split("/")[1]
        assert crops
        sizes = []
        for name in (img1, img2):
            with Image.open(megadepth_root / name) as image:
                sizes.append(image.size)
        for box1, box2 in crops:
            for (left, top, right, bottom), (width, height) in zip(
                (box1, box2), sizes, strict=True
            ):
                assert 0 <= left < right <= width and 0 <= top < bottom <= height


def test_crop_boxes_overlap_in_3d(croco_root: Path, megadepth_root: Path) -> None:
    infos = {s: np.load(str(megadepth_root / "scene_info" / f"{s}.npz")) for s in TRAIN_SCENES}
    for img1, img2, _, crops in read_crops(croco_root / CROPS_PATH):
        scene = img1.split("/")[1]
        info = infos[scene]
        names = list(info["image_paths"])
        i, j = names.index(img1), names.index(img2)
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

    def prepare(path: str, box: tuple[int, ...], turn: int) -> np.ndarray:
        with Image.open(megadepth_root / path) as image:
            crop = image.convert("RGB").crop(box).resize((256, 256), Image.Resampling.BICUBIC)
        if transposes[turn] is not None:
            crop = crop.transpose(transposes[turn])
        return np.asarray(crop, dtype=np.float64)

    rotated = [p for p in read_crops(croco_root / CROPS_PATH) if abs(p[2]) > 60]
    for img1, img2, rotation, crops in rotated:
        chosen = (round(rotation / 90) % 4) * 90
        box1, box2 = crops[0]
        first = prepare(img1, box1, 0)
        errors = {turn: np.abs(prepare(img2, box2, turn) - first).mean() for turn in transposes}
        assert min(errors, key=errors.__getitem__) == chosen, (img1, img2, errors)


# --- Matterport -----------------------------------------------------------------------------


def read_camera_file(path: Path) -> list[tuple[np.ndarray, str, str, np.ndarray]]:
    """(K, depth name, colour name, camera-to-world) per scan line, as LoCUS parses it."""
    scans, current = [], None
    for line in path.read_text().splitlines():
        fields = line.split(" ")
        if fields[0] == "intrinsics_matrix":
            current = np.array([float(x) for x in fields[1:]]).reshape(3, 3)
        elif fields[0] == "scan":
            assert current is not None
            pose = np.array([float(x) for x in fields[3:]]).reshape(4, 4)
            scans.append((current.copy(), fields[1], fields[2], pose))
    return scans


def test_matterport_layout_and_camera_file(matterport_root: Path) -> None:
    scan = matterport_root / matterport.SCAN
    conf = scan / "undistorted_camera_parameters" / f"{matterport.SCAN}.conf"
    header = conf.read_text().splitlines()[:4]
    assert header[0] == "dataset matterport" and header[1] == "n_images 8"
    scans = read_camera_file(conf)
    assert len(scans) == 8
    for K, depth_name, color_name, pose in scans:
        assert re.fullmatch(r"[0-9a-f]{32}_d[0-2]_[0-5]\.png", depth_name)
        assert color_name == depth_name.replace("_d", "_i", 1).replace(".png", ".jpg")
        with Image.open(scan / "undistorted_color_images" / color_name) as color:
            assert color.size == (1280, 1024)
        assert K[1, 2] == 1024 - K[1, 2], "bottom-left and top-left origins must agree"
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
        assert abs(pose[2, 1] - 1) < 1e-6, "level cameras have +y (up) along world +z"
    assert sorted(p.name for p in (scan / "undistorted_depth_images").iterdir()) == sorted(
        s[1] for s in scans
    )


def test_matterport_depth_is_uint16_quarter_millimetres(matterport_root: Path) -> None:
    scan = matterport_root / matterport.SCAN
    room = matterport.scene()
    for image in matterport.scan_images():
        with Image.open(scan / "undistorted_depth_images" / image.depth_name) as png:
            assert png.mode == "I;16"
            stored = np.asarray(png)
        assert stored.dtype == np.uint16 and stored.shape == (1024, 1280)
        depth = render(room, image.camera)[1].astype(np.float64)
        assert ((stored == 0) == (depth == 0)).all()
        assert np.abs(stored / 4000.0 - depth).max() <= 0.125e-3 + 1e-9


def test_matterport_cameras_follow_the_opengl_convention(matterport_root: Path) -> None:
    """Read as LoCUS reads it (flip y and z of the camera), depth carries between views."""
    scan = matterport_root / matterport.SCAN
    scans = read_camera_file(scan / "undistorted_camera_parameters" / f"{matterport.SCAN}.conf")
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    depths = []
    for _, depth_name, _, _ in scans:
        with Image.open(scan / "undistorted_depth_images" / depth_name) as png:
            depths.append(np.asarray(png).astype(np.float64) / 4000.0)
    world_to_camera = [np.linalg.inv(pose @ flip) for _, _, _, pose in scans]
    rows, cols = np.mgrid[4:1024:8, 4:1280:8].reshape(2, -1)
    # the two tripod positions look the same way at yaw steps 3 and 0 (headings 195 degrees)
    first, second = 3, 4
    K1, K2 = scans[first][0], scans[second][0]
    x, y, z = carry(
        depths[first], K1, world_to_camera[first], K2, world_to_camera[second], rows, cols
    )
    assert agrees(depths[second], x, y, z).mean() > 0.5


# --- video ----------------------------------------------------------------------------------


def test_video_decodes_to_six_seconds_at_30_fps(video_path: Path) -> None:
    with av.open(str(video_path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.codec_context.pix_fmt == "yuv420p"
        assert stream.average_rate == 30
        sizes = {(frame.width, frame.height) for frame in container.decode(stream)}
        assert stream.frames == 180
    assert sizes == {(640, 480)}
    data = video_path.read_bytes()
    header = data.index(b"mvhd") + 4  # version (1 byte), flags (3), creation time (4)
    assert data[header] == 0 and data[header + 4 : header + 12] == bytes(8), "no timestamps"
    assert b"Lavf" not in data


# --- reproducibility ------------------------------------------------------------------------


@pytest.mark.slow
def test_a_second_build_in_a_fresh_process_gives_the_same_bytes(
    tmp_path: Path,
    megadepth_root: Path,
    croco_root: Path,
    matterport_root: Path,
    video_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from vcat.demo.croco import build_croco_metadata
        from vcat.demo.matterport import build_matterport
        from vcat.demo.megadepth import build_megadepth
        from vcat.demo.video import build_video
        out = Path({str(tmp_path)!r})
        build_megadepth(out / "megadepth")
        build_croco_metadata(out / "croco")
        build_matterport(out / "matterport")
        build_video(out / "video" / "demo-flythrough.mp4")
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT, check=True, timeout=120)
    for first, second in (
        (megadepth_root, tmp_path / "megadepth"),
        (croco_root, tmp_path / "croco"),
        (matterport_root, tmp_path / "matterport"),
        (video_path.parent, tmp_path / "video"),
    ):
        expected = tree_md5(first)
        assert expected and tree_md5(second) == expected
        assert not [name for name in expected if ".partial" in name]
