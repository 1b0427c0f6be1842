"""demo-matterport: Matterport3D's undistorted layout and camera file as LoCUS reads them, with
what real scans have: three rig cameras at six yaws, principal points off the centre, a
camera file whose order is not the sorted file names, and depth with holes and bad readings."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_demo_geometry import agrees, carry
from vcat.demo import matterport
from vcat.demo.matterport import build_matterport
from vcat.demo.scenes import render

WIDTH, HEIGHT = 1280, 1024
NAME = re.compile(r"([0-9a-f]{32})_d([0-2])_([0-5])\.png")


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("matterport")
    build_matterport(root)
    return root / matterport.SCAN


def read_camera_file(path: Path) -> list[tuple[np.ndarray, str, str, np.ndarray]]:
    """(K as written, depth name, colour name, camera-to-world) per scan line, in file order,
    as LoCUS parses it (each scan line takes the last intrinsics line before it)."""
    scans, current = [], None
    for line in path.read_text().splitlines():
        fields = [field for field in line.strip().split(" ") if field]
        if fields[0] == "intrinsics_matrix":
            current = np.array([float(x) for x in fields[1:]]).reshape(3, 3)
        elif fields[0] == "scan":
            assert current is not None
            pose = np.array([float(x) for x in fields[3:]]).reshape(4, 4)
            scans.append((current.copy(), fields[1], fields[2], pose))
    return scans


def locus_intrinsics(K: np.ndarray) -> np.ndarray:
    """LoCUS's reading: the file's cy is measured from the bottom row."""
    flipped = K.copy()
    flipped[1, 2] = HEIGHT - K[1, 2]
    return flipped


def locus_world_to_camera(pose: np.ndarray) -> np.ndarray:
    """LoCUS's reading: flip the camera's y and z (OpenGL to x right, y down, z forward)."""
    return np.linalg.inv(pose @ np.diag([1.0, -1.0, -1.0, 1.0]))


def load_depth(scan: Path, name: str) -> np.ndarray:
    with Image.open(scan / "undistorted_depth_images" / name) as png:
        assert png.mode == "I;16"
        return np.asarray(png)


def conf_path(scan: Path) -> Path:
    return scan / "undistorted_camera_parameters" / f"{matterport.SCAN}.conf"


def test_layout_rig_cameras_and_yaws(scan: Path) -> None:
    header = conf_path(scan).read_text().splitlines()[:4]
    assert header == [
        "dataset matterport",
        "n_images 36",
        "depth_directory undistorted_depth_images",
        "color_directory undistorted_color_images",
    ]
    scans = read_camera_file(conf_path(scan))
    assert len(scans) == 36
    seen = set()
    for _, depth_name, color_name, pose in scans:
        match = NAME.fullmatch(depth_name)
        assert match, depth_name
        seen.add((match[1], match[2], match[3]))
        assert color_name == depth_name.replace("_d", "_i", 1).replace(".png", ".jpg")
        with Image.open(scan / "undistorted_color_images" / color_name) as color:
            assert color.size == (WIDTH, HEIGHT) and color.mode == "RGB"
        np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
        # the OpenGL camera's y (up) points up in the z-up world, less so when tilted
        up = pose[2, 1]
        assert abs(up - {"0": 0.866, "1": 1.0, "2": 0.866}[match[2]]) < 1e-3
        tilt = -pose[2, 2]  # the optical axis (-z) along world z: + up, - down
        assert abs(tilt - {"0": 0.5, "1": 0.0, "2": -0.5}[match[2]]) < 1e-3
    panoramas = {pano for pano, _, _ in seen}
    assert len(panoramas) == 2
    assert seen == {(p, c, y) for p in panoramas for c in "012" for y in "012345"}
    assert sorted(p.name for p in (scan / "undistorted_depth_images").iterdir()) == sorted(
        s[1] for s in scans
    )


def test_camera_file_order_is_not_the_sorted_file_names(scan: Path) -> None:
    in_file = [depth_name for _, depth_name, _, _ in read_camera_file(conf_path(scan))]
    listed = sorted(p.name for p in (scan / "undistorted_depth_images").iterdir())
    assert in_file != listed and sorted(in_file) == listed
    # pairing the sorted listing with the camera file by position gives the wrong pose
    assert sum(a != b for a, b in zip(in_file, listed, strict=True)) == 36


def test_intrinsics_are_per_camera_and_off_centre(scan: Path) -> None:
    text = conf_path(scan).read_text().splitlines()
    intrinsics = [line for line in text if line.startswith("intrinsics_matrix")]
    assert len(intrinsics) == 6  # one per panorama and rig camera
    by_camera: dict[str, set[tuple[float, ...]]] = {}
    for K, depth_name, _, _ in read_camera_file(conf_path(scan)):
        camera = NAME.fullmatch(depth_name)[2]
        by_camera.setdefault(camera, set()).add(tuple(K.ravel()))
        fx, cx, fy, cy = K[0, 0], K[0, 2], K[1, 1], K[1, 2]
        assert fx != fy and K[0, 1] == 0 and K[1, 0] == 0
        assert abs(cx - WIDTH / 2) > 5 and abs(cy - HEIGHT / 2) > 5
        assert abs((HEIGHT - cy) - HEIGHT / 2) > 5  # off centre from either origin
    assert len(by_camera) == 3 and all(len(values) == 1 for values in by_camera.values())
    assert len({next(iter(values)) for values in by_camera.values()}) == 3


def test_depth_is_uint16_quarter_millimetres_with_real_scan_defects(scan: Path) -> None:
    room = matterport.scene()
    invalid_shares = []
    for index, image in enumerate(matterport.scan_images()):
        stored = load_depth(scan, image.depth_name)
        assert stored.dtype == np.uint16 and stored.shape == (HEIGHT, WIDTH)
        good = stored >= 40  # 1 cm: below is invalid for LoCUS
        if index % 5 == 0:  # against the exact render, on a few views (rendering is slow)
            depth = render(room, image.camera)[1].astype(np.float64)
            assert np.abs(stored[good] / 4000.0 - depth[good]).max() <= 0.125e-3 + 1e-9
            assert (depth[~good] > 0).all(), "every hole hides a surface: glass or a dropout"
        metres = stored.astype(np.float32) / 4000.0
        # LoCUS's bad_depth_values: < 0.01 m, > 20 m, NaN or inf
        bad = (metres < 0.01) | (metres > 20) | np.isnan(metres) | np.isinf(metres)
        invalid_shares.append(float(bad.mean()))
        assert (stored == 0).any() and ((stored > 0) & (stored < 40)).any()
    shares = np.array(invalid_shares)
    # one up-tilted view sees so much skylight that LoCUS drops it (>= 20% invalid); the others
    # have holes it fills; every image has a few dropouts
    assert (shares >= 0.2).sum() == 1 and (shares > 0.02).sum() >= 8
    assert shares.min() > 0.003 and np.sort(shares)[-2] < 0.18


def test_cameras_read_as_locus_reads_them_carry_depth_between_views(scan: Path) -> None:
    """With LoCUS's flips (camera y and z, cy from the bottom), depth carries between views of
    two tripod positions and between the rig's cameras; with cy from the top it does not."""
    scans = read_camera_file(conf_path(scan))
    names = [s[1] for s in scans]
    first_pano, second_pano = names[0][:32], names[-1][:32]
    rows, cols = np.mgrid[4:HEIGHT:8, 4:WIDTH:8].reshape(2, -1)

    def agreement(first: str, second: str, intrinsics, tolerance: float) -> float:
        i, j = names.index(first), names.index(second)
        depth_i, depth_j = (load_depth(scan, names[k]).astype(np.float64) / 4000 for k in (i, j))
        keep = depth_i[rows, cols] >= 0.01
        K1, K2 = intrinsics(scans[i][0]), intrinsics(scans[j][0])
        T1, T2 = locus_world_to_camera(scans[i][3]), locus_world_to_camera(scans[j][3])
        x, y, z = carry(depth_i, K1, T1, K2, T2, rows[keep], cols[keep])
        return float(agrees(depth_j, x, y, z, tolerance).mean())

    # level camera 1: yaw 3 of the first position and yaw 0 of the second both face 195 degrees
    assert (
        agreement(f"{first_pano}_d1_3.png", f"{second_pano}_d1_0.png", locus_intrinsics, 0.01) > 0.9
    )
    level, down = f"{first_pano}_d1_3.png", f"{first_pano}_d2_3.png"
    assert agreement(level, down, locus_intrinsics, 0.002) > 0.3
    assert agreement(level, down, lambda K: K, 0.002) < 0.05


def test_the_file_intrinsics_are_the_rendering_cameras_read_from_the_bottom(scan: Path) -> None:
    cameras = {image.depth_name: image.camera for image in matterport.scan_images()}
    for K, depth_name, _, pose in read_camera_file(conf_path(scan)):
        np.testing.assert_array_equal(locus_intrinsics(K), cameras[depth_name].K)
        expected = cameras[depth_name].world_to_camera()
        np.testing.assert_allclose(locus_world_to_camera(pose), expected, atol=1e-8)
