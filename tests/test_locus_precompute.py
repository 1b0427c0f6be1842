"""The ``locus-precompute`` stage: LoCUS's data root from Matterport3D scans, in shards."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import stages.locus_precompute as stage
from tests.test_overlap import room_cameras, room_quads, write_scan
from vcat.cli import app
from vcat.geometry import matterport
from vcat.parts import ShardSpec
from vcat.shards import ShardReader, unpack_shards

SMALL = {"width": 80, "height": 64, "overlap_width": 20, "overlap_height": 16}


def conf(**changes: object) -> dict[str, object]:
    return {**SMALL, "shard_max_count": 3, **changes}


@pytest.fixture(scope="module")
def scans(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two scans; in scanB the camera file lists c2, c0, c3, c1, image 1 (c0) has its top 30%
    without depth (dropped) and image 2 (c3) its top 10% (filled)."""
    root = tmp_path_factory.mktemp("matterport")
    write_scan(root, "scanA", room_cameras("a", 2), room_quads())
    cameras = room_cameras("c", 4)
    order = [cameras[k] for k in (2, 0, 3, 1)]
    write_scan(root, "scanB", order, room_quads(), holes={1: 0.3, 2: 0.1})
    return root


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def locus_dataset(root: Path, scan: str) -> list[str]:
    """The colour images LoCUS's MatterportDataset lists for ``scan``: the camera file's scan
    lines whose ``rgb/<stem>.npy`` exists, in file order (its own walk, restated)."""
    names = []
    conf_path = root / scan / "undistorted_camera_parameters" / f"{scan}.conf"
    for line in conf_path.read_text().splitlines():
        if line.startswith("scan"):
            color = line.split(" ")[2]
            if (root / scan / "rgb" / color.replace(".jpg", ".npy")).is_file():
                names.append(color)
    return names


def assert_filled_from_nearest(filled: np.ndarray, raw: np.ndarray) -> None:
    """Valid pixels unchanged; each invalid one holds the depth of a valid pixel at the
    smallest Euclidean distance (checked by brute force)."""
    valid = (raw >= 0.01) & (raw <= 20)
    np.testing.assert_array_equal(filled[valid], raw[valid])
    rows, cols = np.nonzero(valid)
    for r, c in zip(*np.nonzero(~valid), strict=True):
        distance = (rows - r) ** 2 + (cols - c) ** 2
        nearest = raw[rows[distance == distance.min()], cols[distance == distance.min()]]
        assert filled[r, c] in nearest


def invalid_pixels(root: Path) -> int:
    """Invalid depth pixels, at 80x64, of the images the stage keeps (under 20% invalid)."""
    total = 0
    for path in sorted(root.glob(f"*/{matterport.DEPTH_FOLDER}/*.png")):
        depth = matterport.read_depth_png(path)[1::2, 1::2]
        invalid = int(np.count_nonzero((depth < 0.01) | (depth > 20)))
        total += invalid if invalid < 0.2 * depth.size else 0
    return total


def test_the_output_unpacks_to_locus_data_root(scans: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    stage.main(conf(), scans, output, metrics=tmp_path / "m.json")
    tree = tmp_path / "tree"
    unpack_shards(output, tree)
    order = (tree / "scanB" / "img_overlaps.order.txt").read_text().split()
    assert order == ["c2_i1_0.jpg", "c3_i1_0.jpg", "c1_i1_0.jpg"]  # c0 dropped
    assert locus_dataset(tree, "scanB") == order  # the loader's order is the matrix's
    overlaps = np.load(tree / "scanB" / "img_overlaps.npy")
    assert overlaps.dtype == np.float32 and overlaps.shape == (3, 3)
    assert (np.diag(overlaps) == 1).all() and 0 < overlaps[0, 1] < 1
    conf_file = tree / "scanB" / "undistorted_camera_parameters" / "scanB.conf"
    assert conf_file.read_bytes() == matterport.camera_file(scans / "scanB").read_bytes()
    rgb = np.load(tree / "scanB" / "rgb" / "c3_i1_0.npy")
    source = cv2.cvtColor(
        cv2.imread(str(scans / "scanB" / matterport.COLOR_FOLDER / "c3_i1_0.jpg")),
        cv2.COLOR_BGR2RGB,
    )
    np.testing.assert_array_equal(rgb, cv2.resize(source, (80, 64)))  # LoCUS's resize
    depth = np.load(tree / "scanB" / "depth" / "c3_d1_0.npy")
    assert depth.dtype == np.float32 and depth.shape == (64, 80)
    assert ((depth >= 0.01) & (depth <= 20)).all()
    raw = matterport.read_depth_png(scans / "scanB" / matterport.DEPTH_FOLDER / "c3_d1_0.png")
    # nearest-exact halving keeps source rows and columns 1, 3, 5, ...
    assert_filled_from_nearest(depth, raw[1::2, 1::2])
    np.testing.assert_array_equal(depth[:6, :40], np.repeat(depth[6:7, :40], 6, axis=0))
    assert not (tree / "scanB" / "rgb" / "c0_i1_0.npy").exists()
    dropped = (output / "dropped.tsv").read_text().splitlines()
    assert dropped[0] == "scan\tcolor\tdepth\tinvalid_fraction\treason"
    assert dropped[1].startswith("scanB\tc0_i1_0.jpg\tc0_d1_0.png\t0.29")
    assert "at least 20%" in dropped[1]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics == {
        "images": 6,
        "images_dropped": 1,
        "images_kept": 5,
        "images_unreadable": 0,
        "pixels_filled": invalid_pixels(scans),
        "scans": 2,
        "scans_failed": 0,
    }


def test_a_second_run_changes_no_byte(scans: Path, tmp_path: Path) -> None:
    output = tmp_path / "out"
    stage.main(conf(), scans, output)
    before = _tree(output)
    stage.main(conf(), scans, output)
    assert _tree(output) == before


def test_a_killed_run_resumes_without_decoding_sealed_images_again(
    scans: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    single = tmp_path / "single"
    stage.main(conf(), scans, single)
    decoded: list[str] = []
    real = stage._rgb_sample

    def counting(path: Path, size: tuple[int, int]) -> dict[str, bytes]:
        if len(decoded) == 3:
            raise KeyboardInterrupt
        decoded.append(path.name)
        return real(path, size)

    monkeypatch.setattr(stage, "_rgb_sample", counting)
    output = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        stage.main(conf(), scans, output)
    first = list(decoded)
    decoded.clear()
    monkeypatch.setattr(stage, "_rgb_sample", lambda p, s: (decoded.append(p.name), real(p, s))[1])
    stage.main(conf(), scans, output)
    assert _tree(output) == _tree(single)
    # three samples a shard: a0, a1 and c2 went into sealed shards, c3 was being decoded
    assert first == ["a0_i1_0.jpg", "a1_i1_0.jpg", "c2_i1_0.jpg"]
    assert decoded == ["c3_i1_0.jpg", "c1_i1_0.jpg"]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_merged_parts_equal_the_single_run(scans: Path, tmp_path: Path, count: int) -> None:
    single = tmp_path / "single"
    stage.main(conf(), scans, single, metrics=tmp_path / "single.json")
    merged = tmp_path / "merged"
    for index in range(count):
        stage.main(conf(), scans, merged, shard=ShardSpec(index, count))
    stage.main(conf(), scans, merged, merge=count, metrics=tmp_path / "merged.json")
    assert _tree(merged) == _tree(single)
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "single.json").read_bytes()


def run_cli(*args: str):
    return CliRunner().invoke(app, ["stage", "locus-precompute", *args])


def test_no_scan_and_the_cli(tmp_path: Path, scans: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli(str(tmp_path / "empty"), str(tmp_path / "out0"))
    assert result.exit_code == 0, result.output
    with ShardReader(tmp_path / "out0") as reader:
        assert list(reader.index.samples) == []
    params = tmp_path / "params.yaml"
    params.write_text("locus-precompute:\n  width: 80\n  height: 64\n  max_invalid_fraction: 0.5\n")
    result = run_cli(str(scans), str(tmp_path / "out"), "--params", str(params))
    assert result.exit_code == 0, result.output
    with ShardReader(tmp_path / "out") as reader:
        assert "scanB/rgb/c0_i1_0" in reader.index.samples  # 30% invalid is under 50%


def test_an_unreadable_scan_is_listed_and_fails_the_stage(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_scan(root, "good", room_cameras("g", 2), room_quads())
    write_scan(root, "bad", room_cameras("b", 2), room_quads())
    (root / "good" / matterport.DEPTH_FOLDER / "g1_d1_0.png").write_bytes(b"not a png")
    conf_path = matterport.camera_file(root / "bad")
    conf_path.write_text(conf_path.read_text().replace("scan ", "scan x ", 1))
    params = tmp_path / "params.yaml"
    params.write_text("locus-precompute:\n  entries: [mp]\n  width: 80\n  height: 64\n")
    result = run_cli(str(root), str(tmp_path / "out"), "--params", str(params))
    assert result.exit_code == 1
    failures = (tmp_path / "out" / "failures.tsv").read_text().splitlines()
    assert failures[1].startswith(f"bad\t\tunreadable_scan\t{conf_path}:4: a scan line needs")
    assert failures[2].startswith("good\tg1_i1_0.jpg\tunreadable\t")
    assert "not a readable PNG" in failures[2]


def test_a_fifo_in_place_of_a_depth_image_is_listed_not_waited_on(tmp_path: Path) -> None:
    root = tmp_path / "mp"
    write_scan(root, "scan", room_cameras("f", 2), room_quads())
    depth = root / "scan" / matterport.DEPTH_FOLDER / "f1_d1_0.png"
    depth.unlink()
    os.mkfifo(depth)
    params = tmp_path / "params.yaml"
    params.write_text("locus-precompute:\n  width: 80\n  height: 64\n")
    result = run_cli(str(root), str(tmp_path / "out"), "--params", str(params))
    assert result.exit_code == 1, result.output
    failures = (tmp_path / "out" / "failures.tsv").read_text().splitlines()
    assert failures[1].startswith("scan\tf1_i1_0.jpg\tunreadable\t")
    assert str(depth) in failures[1] and "FIFO" in failures[1]
