"""The overlap ground truth: readers of the source formats, the matrix on scenes whose overlap
is known from their geometry, the per-pixel reference, and the ``overlap`` stage."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import stages.overlap as stage
from vcat.cli import app
from vcat.demo import scenes as demo
from vcat.geometry import matterport, megadepth
from vcat.geometry.overlap import (
    DepthRange,
    GeometryError,
    Tolerance,
    View,
    grid_views,
    nearest_exact,
    overlap_counts,
    overlap_matrix,
    read_overlap,
    scale_intrinsics,
)
from vcat.geometry.reference import reference_counts
from vcat.parts import ShardSpec

W, H = 40, 32
FOCAL = 20.0
GL = np.diag([1.0, -1.0, -1.0, 1.0])

# --- scenes built from planes -------------------------------------------------------------


def _translated(name: str, x: float, size: tuple[int, int] = (W, H), focal: float = FOCAL):
    """A camera looking along +z from (x, 0, 0), centred principal point."""
    w, h = size
    K = np.array([[focal, 0, w / 2], [0, focal, h / 2], [0, 0, 1.0]])
    pose = np.eye(4)
    pose[0, 3] = -x
    return View(name, K, pose, w, h)


def _wall_and_occluder(view: View, x: float, back: float = 4.0, front: float = 2.0):
    """Depth of a wall at z=back with an occluder at z=front over world x < 0, seen from
    ``view`` (at (x, 0, 0), looking along +z)."""
    cols = np.arange(view.width) + 0.5
    xn = (cols - view.K[0, 2]) / view.K[0, 0]
    on_occluder = x + xn * front < 0
    row = np.where(on_occluder, front, back)
    return np.repeat(row[None, :], view.height, axis=0).astype(np.float32)


def test_a_sideways_step_of_whole_pixels_gives_the_exact_overlap() -> None:
    """A wall 4 m away, cameras 0.4 m apart (2 grid pixels at f=20): (40 - 2) / 40 both ways."""
    views = [_translated("a", 0.0), _translated("b", 0.4)]
    depths = [np.full((H, W), 4.0, np.float32)] * 2
    for neighbourhood in (True, False):
        matrix = overlap_matrix(views, depths, tolerance=Tolerance(0.01, 0, neighbourhood))
        np.testing.assert_array_equal(matrix, [[1.0, 38 / 40], [38 / 40, 1.0]])


def test_an_occluder_hides_what_lies_behind_it() -> None:
    """Wall at 4 m, occluder at 2 m over x < 0, cameras at x=0 (a) and x=0.4 (b), f=20: the
    occluder moves 4 grid columns between them and the wall 2. a's 20 occluder columns lose 4
    off b's edge; its 20 wall columns all land on wall in b: 36 of 40. b's 16 occluder columns
    all land in a; of its 24 wall columns 2 fall off a's edge and 2 land behind a's occluder:
    36 of 40, and 38 without the depth test."""
    views = [_translated("a", 0.0), _translated("b", 0.4)]
    depths = [_wall_and_occluder(views[0], 0.0), _wall_and_occluder(views[1], 0.4)]
    for neighbourhood in (True, False):
        matrix = overlap_matrix(views, depths, tolerance=Tolerance(0.01, 0, neighbourhood))
        np.testing.assert_array_equal(matrix, [[1.0, 36 / 40], [36 / 40, 1.0]])
    no_test = overlap_matrix(views, depths, tolerance=Tolerance(10.0, 0))
    np.testing.assert_array_equal(no_test, [[1.0, 36 / 40], [38 / 40, 1.0]])


def test_a_camera_looking_away_sees_nothing_and_a_view_without_depth_has_a_zero_row() -> None:
    ahead = _translated("ahead", 0.0)
    behind_pose = np.diag([-1.0, 1.0, -1.0, 1.0])  # turned 180 degrees about y
    behind = View("behind", ahead.K.copy(), behind_pose, W, H)
    empty = _translated("empty", 0.1)
    depths = [np.full((H, W), 4.0, np.float32)] * 2 + [np.zeros((H, W), np.float32)]
    matrix = overlap_matrix([ahead, behind, empty], depths)
    np.testing.assert_array_equal(matrix[0], [1.0, 0.0, 0.0])  # empty has no valid depth
    np.testing.assert_array_equal(matrix[1], [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(matrix[2], [0.0, 0.0, 1.0])


def test_depth_is_reduced_at_pixel_centres_and_intrinsics_scale_without_a_shift() -> None:
    depth = np.arange(8 * 12, dtype=np.float32).reshape(8, 12)
    small = nearest_exact(depth, (4, 2))  # 3x4 source pixels per grid pixel
    np.testing.assert_array_equal(small, depth[[2, 6]][:, [1, 4, 7, 10]])
    K = np.array([[100.0, 0, 60.5], [0, 90.0, 40.25], [0, 0, 1]])
    before = K.copy()
    scaled = scale_intrinsics(K, (1280, 1024), (40, 32))
    np.testing.assert_array_equal(K, before)  # the input is not touched
    np.testing.assert_allclose(scaled, [[3.125, 0, 60.5 / 32], [0, 2.8125, 40.25 / 32], [0, 0, 1]])


def test_a_full_resolution_depth_gives_the_same_matrix_as_its_grid() -> None:
    """Depth at 10x the grid reduces to the grid with the intrinsics scaled alongside: the
    sideways step is again exactly 2 grid pixels."""
    views = [_translated(n, x, (400, 320), 200.0) for n, x in (("a", 0.0), ("b", 0.4))]
    depths = [np.full((320, 400), 4.0, np.float32)] * 2
    matrix = overlap_matrix(views, depths)
    np.testing.assert_allclose(matrix, [[1.0, 38 / 40], [38 / 40, 1.0]], atol=1e-12)


def _demo_views(count: int) -> tuple[list[View], list[np.ndarray], list[demo.Camera]]:
    scene = demo.get_scene(demo.SCENE_IDS[0])
    cameras = list(scene.cameras[:count])
    depths = [demo.render(scene, camera)[1] for camera in cameras]
    views = [View(c.name, c.K.copy(), c.world_to_camera(), c.width, c.height) for c in cameras]
    return views, depths, cameras


@pytest.fixture(scope="module")
def demo_views() -> tuple[list[View], list[np.ndarray], list[demo.Camera]]:
    return _demo_views(6)


@pytest.mark.parametrize("neighbourhood", [True, False])
def test_the_vectorised_counts_equal_the_per_pixel_reference(demo_views, neighbourhood) -> None:
    views, depths, _ = demo_views
    grid_depths, grid_K = grid_views(views, depths, (W, H))
    poses = np.stack([view.world_to_camera for view in views])
    tolerance = Tolerance(0.01, 0.005, neighbourhood)
    depth_range = DepthRange(0.5, 30.0)
    fast = overlap_counts(grid_depths, grid_K, poses, depth_range, tolerance)
    slow = reference_counts(grid_depths, grid_K, poses, depth_range, tolerance)
    np.testing.assert_array_equal(fast[0], slow[0])
    np.testing.assert_array_equal(fast[1], slow[1])


OVERLAP_TOLERANCE = 0.1  # 40x32 against the exact overlap, per entry; measured up to 0.075


def test_the_demo_scene_overlaps_match_their_exact_geometry(demo_views) -> None:
    """Against the demo's full-resolution overlap (every 2nd pixel, exact depth, 2% depth
    test): every entry of the 40x32 matrix within OVERLAP_TOLERANCE, the mean within 0.02."""
    views, depths, cameras = demo_views
    exact = np.array(
        [
            [
                1.0 if i == j else demo.overlap(a, da, b, db, stride=2)
                for j, (b, db) in enumerate(zip(cameras, depths, strict=True))
            ]
            for i, (a, da) in enumerate(zip(cameras, depths, strict=True))
        ]
    )
    matrix = overlap_matrix(views, depths)
    difference = np.abs(matrix - exact)
    assert difference.max() <= OVERLAP_TOLERANCE
    assert difference.mean() <= 0.02
    assert (exact > 0.05).sum() > len(views)  # the scene has real overlaps to compare


# --- Matterport3D camera files --------------------------------------------------------------


def _num(value: float) -> str:
    return repr(float(value))


def write_scan(
    root: Path,
    scan: str,
    cameras: Sequence[demo.Camera],
    quads: Sequence[demo.Quad],
    holes: dict[int, float] | None = None,
) -> list[np.ndarray]:
    """A Matterport3D scan of ``quads`` under ``root``: colour JPEGs, depth PNGs (0.25 mm)
    with the top ``holes[k]`` share of rows of image k reading 0, and the camera file (one
    intrinsics line per camera, ``cy`` from the bottom, OpenGL poses), in ``cameras`` order.
    Returns the depth in metres as written."""
    base = root / scan
    for folder in (matterport.COLOR_FOLDER, matterport.DEPTH_FOLDER, matterport.CAMERA_FOLDER):
        (base / folder).mkdir(parents=True, exist_ok=True)
    lines = ["dataset matterport", f"n_images {len(cameras)}"]
    written = []
    for k, camera in enumerate(cameras):
        rgb, depth = demo.render_quads(quads, camera, (120, 130, 140))
        units = np.floor(depth.astype(np.float64) * 4000 + 0.5)
        stored = np.where((depth > 0) & (units <= 65535), units, 0).astype(np.uint16)
        rows = round((holes or {}).get(k, 0.0) * camera.height)
        stored[:rows] = 0
        color, depth_name = f"{camera.name}_i1_0.jpg", f"{camera.name}_d1_0.png"
        Image.fromarray(rgb).save(base / matterport.COLOR_FOLDER / color, quality=90)
        Image.fromarray(stored).save(base / matterport.DEPTH_FOLDER / depth_name)
        written.append(stored.astype(np.float32) / np.float32(4000.0))
        K = camera.K
        lines.append(
            f"intrinsics_matrix {_num(K[0, 0])} 0 {_num(K[0, 2])} 0 {_num(K[1, 1])} "
            f"{_num(camera.height - K[1, 2])} 0 0 1"
        )
        matrix = camera.camera_to_world() @ GL
        lines.append(f"scan {depth_name} {color} " + " ".join(_num(v) for v in matrix.ravel()))
    (base / matterport.CAMERA_FOLDER / f"{scan}.conf").write_text("\n".join(lines) + "\n")
    return written


def room_cameras(prefix: str, count: int, width: int = 160, height: int = 128):
    """Cameras in a row looking at the demo room's wall, principal point off the centre."""
    cameras = []
    for k in range(count):
        base = demo.look_at(
            f"{prefix}{k}", (-0.6 + 0.4 * k, -1.0, 1.4), (0.2 * k, 3.0, 1.2), 120.0, width, height
        )
        K = base.K.copy()
        K[0, 2] += 3.5
        K[1, 2] -= 5.25
        cameras.append(demo.Camera(base.name, K, base.R.copy(), base.t.copy(), width, height))
    return cameras


def room_quads() -> tuple[demo.Quad, ...]:
    return (
        demo.board("chelsea", (0.0, 3.0, 1.5), 6.0),
        demo.floor("coffee", (0.0, 1.0, 0.0), 8.0),
        demo.board("astronaut", (0.3, 1.2, 1.2), 0.8, yaw=20.0),
    )


def test_the_camera_file_reader_gives_the_cameras_written(tmp_path: Path) -> None:
    cameras = room_cameras("p", 3)
    write_scan(tmp_path, "scanA", cameras, room_quads())
    images = matterport.read_camera_file(matterport.camera_file(tmp_path / "scanA"))
    assert [image.color_name for image in images] == [f"p{k}_i1_0.jpg" for k in range(3)]
    for image, camera in zip(images, cameras, strict=True):
        view = image.view(camera.width, camera.height)
        np.testing.assert_allclose(view.K, camera.K, atol=1e-12)
        np.testing.assert_allclose(view.world_to_camera, camera.world_to_camera(), atol=1e-12)
    # each image owns its intrinsics: changing one view's K changes no other image
    first = images[0].view(160, 128)
    first.K[0, 0] = 1.0
    assert images[0].intrinsics[0, 0] == cameras[0].K[0, 0]


def test_two_scan_lines_under_one_intrinsics_line_get_separate_arrays(tmp_path: Path) -> None:
    path = tmp_path / "s.conf"
    pose = " ".join(str(v) for v in np.eye(4).ravel())
    path.write_text(
        f"intrinsics_matrix 10 0 5 0 10 4 0 0 1\nscan a.png a.jpg {pose}\nscan b.png b.jpg {pose}\n"
    )
    first, second = matterport.read_camera_file(path)
    assert first.intrinsics is not second.intrinsics
    first.view(10, 8).K[:] = 0
    assert second.view(10, 8).K[1, 2] == 8 - 4


POSE = " ".join(str(v) for v in np.eye(4).ravel())
K_LINE = "intrinsics_matrix 10 0 5 0 10 4 0 0 1"


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (f"scan a.png a.jpg {POSE}\n", 1, "scan line before any intrinsics_matrix"),
        ("intrinsics_matrix 10 0 5 0 10 4 0 0\n", 1, "needs 9 numbers"),
        ("intrinsics_matrix 10 0 5 0 ten 4 0 0 1\n", 1, "not a number"),
        ("intrinsics_matrix 10 0 5 1 10 4 0 0 1\n", 1, "must read fx 0 cx 0 fy cy 0 0 1"),
        (f"{K_LINE}\nscan a.png a.jpg 1 0 0\n", 2, "needs a depth file, a colour file and 16"),
        (f"{K_LINE}\nscan a.png a.jpg {POSE.replace('1.0', '2.0', 1)}\n", 2, "not a rotation"),
        (f"{K_LINE}\nscan a.png a.jpg {POSE}\nscan a.png b.jpg {POSE}\n", 3, "earlier line"),
        (f"{K_LINE}\nscan ../a.png a.jpg {POSE}\n", 2, "not a plain file name"),
        (f"n_images 2\n{K_LINE}\nscan a.png a.jpg {POSE}\n", 1, "n_images says 2"),
        (f"{K_LINE}\ncamera 3\n", 2, "unknown line 'camera'"),
    ],
)
def test_a_malformed_camera_file_names_its_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.conf"
    path.write_text(text)
    with pytest.raises(GeometryError) as caught:
        matterport.read_camera_file(path)
    assert str(caught.value).startswith(f"{path}:{line}: ")
    assert message in str(caught.value)


# --- MegaDepth scene_info -----------------------------------------------------------------


def write_megadepth_scene(root: Path, scene: str, views: Sequence[View], depths) -> list[str]:
    """A glue-factory MegaDepth tree for one scene: scene_info with fixed-width paths and an
    image without depth (None-like empty path) that readers skip; depth as HDF5."""
    paths = [f"Undistorted_SfM/{scene}/images/{view.name}.jpg" for view in views]
    for path, depth in zip(paths, depths, strict=True):
        target = root / "depth_undistorted" / scene / f"{Path(path).stem}.h5"
        target.parent.mkdir(parents=True, exist_ok=True)
        with h5py.File(target, "w") as h5:
            h5.create_dataset("depth", data=depth)
    info = root / "scene_info" / f"{scene}.npz"
    info.parent.mkdir(parents=True, exist_ok=True)
    np.savez(
        info,
        image_paths=np.array([*paths, ""]),
        depth_paths=np.array([f"d/{k}.h5" for k in range(len(paths))] + [""]),
        intrinsics=np.stack([view.K for view in views] + [np.eye(3)]),
        poses=np.stack([view.world_to_camera for view in views] + [np.eye(4)]),
    )
    return paths


def test_scene_info_rows_without_paths_are_skipped_and_pickled_files_refused(
    tmp_path: Path,
) -> None:
    views = [_translated("a", 0.0), _translated("b", 0.4)]
    paths = write_megadepth_scene(tmp_path, "s1", views, [np.full((H, W), 4.0, np.float32)] * 2)
    images = megadepth.read_scene_info(tmp_path / "scene_info" / "s1.npz", tmp_path)
    assert [image.image_path for image in images] == paths
    assert images[1].depth_file == tmp_path / "depth_undistorted" / "s1" / "b.h5"
    pickled = tmp_path / "scene_info" / "s2.npz"
    np.savez(
        pickled,
        image_paths=np.array([paths[0], None], dtype=object),
        depth_paths=np.array(["x", None], dtype=object),
        intrinsics=np.array([np.eye(3), None], dtype=object),  # as D2-Net writes them
        poses=np.array([np.eye(4), None], dtype=object),
    )
    with pytest.raises(GeometryError, match=r"need pickle to load; set overlap\.allow_pickle"):
        megadepth.read_scene_info(pickled, tmp_path)
    trusted = megadepth.read_scene_info(pickled, tmp_path, allow_pickle=True)
    assert [image.image_path for image in trusted] == [paths[0]]
    np.testing.assert_array_equal(trusted[0].K, np.eye(3))
    broken = tmp_path / "scene_info" / "s3.npz"
    np.savez(
        broken,
        image_paths=np.array(paths),
        depth_paths=np.array(paths),
        intrinsics=np.stack([np.eye(3), np.full((3, 3), np.nan)]),
        poses=np.stack([np.eye(4)] * 2),
    )
    with pytest.raises(GeometryError, match=r"intrinsics\[1\] is not a finite 3x3 matrix"):
        megadepth.read_scene_info(broken, tmp_path)


# --- the stage ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def megadepth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four small MegaDepth scenes (named so that their sorted order is not creation order)."""
    root = tmp_path_factory.mktemp("megadepth")
    for k, scene in enumerate(("0203", "0101", "0302", "0110")):
        views = [_translated(f"v{k}{j}", 2.0 * j) for j in range(4 + k)]
        depths = [_wall_and_occluder(view, 2.0 * j) for j, view in enumerate(views)]
        write_megadepth_scene(root, scene, views, depths)
    return root


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_stage_writes_each_scene_with_its_order(megadepth_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    stage.main(None, megadepth_root, output, metrics=tmp_path / "m.json")
    assert sorted(p.name for p in output.glob("*.npz")) == [
        "0101.npz",
        "0110.npz",
        "0203.npz",
        "0302.npz",
    ]
    with np.load(output / "0203.npz", allow_pickle=False) as data:  # numpy alone reads it
        names = list(data["names"])
        matrix = data["overlap"]
    expected = [f"Undistorted_SfM/0203/images/v0{j}.jpg" for j in range(4)]
    assert names == expected  # the scene file's order
    assert matrix.dtype == np.float64 and matrix.shape == (4, 4)
    assert (np.diag(matrix) == 1).all() and (matrix >= 0).all() and (matrix <= 1).all()
    assert read_overlap(output / "0203.npz")[0] == expected
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["scenes"] == 4 and metrics["images"] == 4 + 5 + 6 + 7
    assert metrics["pairs"] == sum(n * (n - 1) for n in (4, 5, 6, 7))
    assert metrics["pairs_zero_overlap"] > 0 and metrics["pairs_in_bins"] > 0
    assert (output / "failures.tsv").read_text() == "scene\tfailure\treason\n"


def test_a_second_run_changes_no_byte(megadepth_root: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    stage.main(None, megadepth_root, output)
    before = _tree(output)
    mtimes = {p: p.stat().st_mtime_ns for p in output.glob("*.npz")}
    stage.main(None, megadepth_root, output)
    assert _tree(output) == before
    assert {p: p.stat().st_mtime_ns for p in output.glob("*.npz")} == mtimes  # not redone


def test_an_interrupted_run_resumes_to_the_same_bytes(
    megadepth_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = tmp_path / "single"
    stage.main(None, megadepth_root, single)
    computed = []
    real = stage._compute

    def stop_after_two(scene, settings, step):
        if len(computed) == 2:
            raise KeyboardInterrupt
        computed.append(scene.name)
        return real(scene, settings, step)

    monkeypatch.setattr(stage, "_compute", stop_after_two)
    output = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        stage.main(None, megadepth_root, output)
    assert sorted(p.name for p in output.glob("*.npz")) == ["0101.npz", "0110.npz"]
    assert not list(output.glob(".*.partial"))
    monkeypatch.setattr(stage, "_compute", real)
    stage.main(None, megadepth_root, output)
    assert _tree(output) == _tree(single)


@pytest.mark.parametrize("count", [1, 2, 3, 6])
def test_merged_parts_equal_the_single_run(
    megadepth_root: Path, tmp_path: Path, count: int
) -> None:
    single = tmp_path / "single"
    stage.main(None, megadepth_root, single, metrics=tmp_path / "single.json")
    merged = tmp_path / "merged"
    for index in range(count):
        stage.main(None, megadepth_root, merged, shard=ShardSpec(index, count))
    stage.main(None, megadepth_root, merged, merge=count, metrics=tmp_path / "merged.json")
    assert _tree(merged) == _tree(single)
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "single.json").read_bytes()
    assert not (tmp_path / "merged.parts").exists()


def run_cli(*args: str):
    return CliRunner().invoke(app, ["stage", "overlap", *args])


def test_no_scenes_and_one_scene(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "scene_info").mkdir(parents=True)
    result = run_cli(str(empty), str(tmp_path / "out0"), "--metrics", str(tmp_path / "m0.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "m0.json").read_text())["scenes"] == 0
    one = tmp_path / "one"
    write_megadepth_scene(one, "7", [_translated("a", 0.0)], [np.full((H, W), 4.0, np.float32)])
    result = run_cli(str(one), str(tmp_path / "out1"))
    assert result.exit_code == 0, result.output
    names, matrix = read_overlap(tmp_path / "out1" / "7.npz")
    assert names == ["Undistorted_SfM/7/images/a.jpg"] and matrix.tolist() == [[1.0]]


def test_a_broken_scene_is_listed_and_fails_the_stage(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_scan(root, "good", room_cameras("g", 2), room_quads())
    write_scan(root, "bad", room_cameras("b", 2), room_quads())
    conf = matterport.camera_file(root / "bad")
    conf.write_text(conf.read_text().replace("intrinsics_matrix", "intrinsics_matrix 1", 1))
    result = run_cli(str(root), str(tmp_path / "out"))
    assert result.exit_code == 1
    assert f"{conf}:3: intrinsics_matrix needs 9 numbers" in " ".join(result.output.split())
    failures = (tmp_path / "out" / "failures.tsv").read_text().splitlines()
    assert failures[1].startswith("bad\tunreadable_scene\t")
    assert (tmp_path / "out" / "good.npz").is_file()
    params = tmp_path / "params.yaml"
    params.write_text("overlap:\n  entries: [mp]\n  max_failed_fraction: 0.5\n")
    result = run_cli(str(root), str(tmp_path / "out"), "--params", str(params))
    assert result.exit_code == 0, result.output


def test_a_folder_of_neither_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "in").mkdir()
    result = run_cli(str(tmp_path / "in"), str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "neither a MegaDepth root" in result.output
    result = run_cli(str(tmp_path / "in"), str(tmp_path / "out"), "--shard", "3/2")
    assert result.exit_code == 2


def test_matterport_scans_follow_the_camera_file_order(tmp_path: Path) -> None:
    """Cameras written in an order their file names do not sort in: the rows follow the
    camera file, and the matrix agrees with the one computed from the cameras directly."""
    cameras = room_cameras("c", 4)
    order = [cameras[k] for k in (2, 0, 3, 1)]
    depths = write_scan(tmp_path / "mp", "scanB", order, room_quads(), holes={1: 0.3})
    stage.main(None, tmp_path / "mp", tmp_path / "out")
    names, matrix = read_overlap(tmp_path / "out" / "scanB.npz")
    assert names == [f"c{k}_i1_0.jpg" for k in (2, 0, 3, 1)]
    views = [View(c.name, c.K.copy(), c.world_to_camera(), c.width, c.height) for c in order]
    direct = overlap_matrix(views, depths, depth_range=DepthRange(0.01))
    np.testing.assert_array_equal(matrix, direct)
    assert 0.2 < matrix[0, 1] < 1.0


@pytest.mark.slow
def test_the_stage_on_the_demo_megadepth_matches_its_exact_overlaps(tmp_path: Path) -> None:
    """The whole demo-megadepth tree (built here from the demo's generator): every scene's
    rows in scene_info order, every entry within OVERLAP_TOLERANCE of the demo's own exact
    overlap_matrix (full resolution, every 4th pixel), the mean difference under 0.01."""
    from vcat.demo.megadepth import build_megadepth

    root = tmp_path / "demo-megadepth"
    build_megadepth(root)
    stage.main(None, root, tmp_path / "out")
    for info_path in sorted((root / "scene_info").glob("*.npz")):
        names, matrix = read_overlap(tmp_path / "out" / f"{info_path.stem}.npz")
        with np.load(info_path) as info:
            assert names == [str(path) for path in info["image_paths"]]
            exact = np.array(info["overlap_matrix"])
        np.fill_diagonal(exact, 1.0)
        difference = np.abs(matrix - exact)
        assert difference.max() <= OVERLAP_TOLERANCE
        assert difference.mean() <= 0.01
