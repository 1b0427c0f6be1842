"""The demo world's scenes and renderer, the fly-through video, and reproducible bytes; the
geometry helpers here are independent of the code that made the scenes (numpy and BLAS, not
the renderer's helpers) and are shared by the MegaDepth and Matterport tests."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import av
import h5py
import numpy as np
import pytest

from vcat.demo import scenes as scenes_module
from vcat.demo.croco import build_croco_metadata
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
    scene = get_scene("demo02")
    camera = scene.cameras[5]
    rgb, depth = render(scene, camera)
    monkeypatch.setattr(scenes_module, "BAND_PIXELS", 320 * 7)
    other_rgb, other_depth = render(scene, camera)
    assert rgb.tobytes() == other_rgb.tobytes() and depth.tobytes() == other_depth.tobytes()


def test_a_skewed_quad_and_an_unknown_scene_are_refused() -> None:
    with pytest.raises(ValueError, match="'chelsea'"):
        Quad("chelsea", (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (1.0, 1.0, 0.0))
    with pytest.raises(KeyError, match="0015"):
        get_scene("0015")


def test_scenes_have_48_views_and_a_held_out_scene() -> None:
    assert set(TRAIN_SCENES) | set(TEST_SCENES) == set(SCENE_IDS)
    assert not set(TRAIN_SCENES) & set(TEST_SCENES)
    for scene_id in SCENE_IDS:
        scene = get_scene(scene_id)
        assert len(scene.cameras) == 48
        assert len({camera.name for camera in scene.cameras}) == 48
        assert {(c.width, c.height) for c in scene.cameras} == {(320, 240)}


# --- video ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def video_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "demo-flythrough.mp4"
    build_video(path)
    return path


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

BUILDERS = """
from pathlib import Path
from vcat.demo.croco import build_croco_metadata
from vcat.demo.matterport import build_matterport
from vcat.demo.megadepth import build_megadepth
from vcat.demo.video import build_video
out = Path({out!r})
build_megadepth(out / "megadepth")
build_croco_metadata(out / "croco")
build_matterport(out / "matterport")
build_video(out / "video" / "demo-flythrough.mp4")
"""


@pytest.mark.slow
def test_a_second_build_in_a_fresh_process_gives_the_same_bytes(
    tmp_path: Path, video_path: Path
) -> None:
    here = tmp_path / "here"
    build_megadepth(here / "megadepth")
    build_croco_metadata(here / "croco")
    build_matterport(here / "matterport")
    script = textwrap.dedent(BUILDERS.format(out=str(tmp_path / "fresh")))
    subprocess.run([sys.executable, "-c", script], cwd=PROJECT, check=True, timeout=300)
    fresh = tmp_path / "fresh"
    for first, second in (
        (here / "megadepth", fresh / "megadepth"),
        (here / "croco", fresh / "croco"),
        (here / "matterport", fresh / "matterport"),
        (video_path.parent, fresh / "video"),
    ):
        expected = tree_md5(first)
        assert expected and tree_md5(second) == expected
        assert not [name for name in expected if ".partial" in name]
