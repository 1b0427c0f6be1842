"""Dataset statistics computed from real files: images, a video, subset lists."""

from __future__ import annotations

import errno
import gzip
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tests.bad_images import broken_images, jpeg
from tests.no_hang import no_hang
from vcat.catalog.schema import DatasetEntry
from vcat.stats import StatsError, count_list_items, dataset_stats

ENTRY = DatasetEntry.model_validate(
    {
        "title": "t",
        "description": "d",
        "licence": {"name": "CC0-1.0", "redistribution": "allowed"},
        "access": {"kind": "public"},
        "sources": [
            {
                "name": "list",
                "url": "file:upstream/l.tsv.gz",
                "filename": "l.tsv.gz",
                "checksum": "unpublished",
                "unpack_to": "lists",
            },
            {
                "name": "meta",
                "url": "file:upstream/m.zip",
                "filename": "m.zip",
                "checksum": "unpublished",
                "archive": "zip",
                "unpack_to": "meta",
            },
        ],
        "subsets": [
            {
                "name": "small",
                "count": {"unit": "images", "released": 3},
                "list_file": {"source": "list", "format": "flickr-tsv-gz"},
            },
            {
                "name": "pairs",
                "list_file": {
                    "source": "meta",
                    "member": "MegaDepth/crops_release.txt",
                    "format": "croco-crops",
                },
            },
        ],
    }
)

ENTRY_WITHOUT_SUBSETS = ENTRY.model_copy(update={"subsets": []})


def write_video(path: Path, frames: int) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            pixels = np.full((48, 64, 3), index * 10, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    for i, (w, h) in enumerate([(40, 30), (80, 60), (120, 90)]):
        Image.new("RGB", (w, h), (i, 0, 0)).save(root / "images" / f"{i}.jpg")
    (root / "lists").mkdir()
    rows = "".join(f"{i}\tfile:x/{i}.jpg\timages/{i}.jpg\n" for i in range(3))
    (root / "lists" / "l.tsv.gz").write_bytes(gzip.compress(rows.encode()))
    (root / "meta" / "MegaDepth").mkdir(parents=True)
    (root / "meta" / "MegaDepth" / "crops_release.txt").write_text(
        "# comment\na.jpg, b.jpg, 0\n1, 2, 3, 4, 5, 6, 7, 8\n1, 2, 3, 4, 5, 6, 7, 9\n"
        "c.jpg, d.jpg, 90\n0, 1, 0, 1, 0, 1, 0, 1\n"
    )
    (root / "videos").mkdir()
    write_video(root / "videos" / "v.mp4", frames=20)
    return root


def test_stats_count_files_images_videos_and_subsets(tree: Path) -> None:
    metrics = dataset_stats(ENTRY, tree)
    assert metrics["files"] == 6
    assert metrics["by_kind"] == {"images": 3, "lists": 2, "videos": 1}
    assert metrics["image_width"] == {"min": 40, "mean": 80.0, "max": 120}
    assert metrics["image_height"]["max"] == 90
    assert metrics["video_frames"] == 20
    assert metrics["video_seconds"] == pytest.approx(2.0, abs=0.11)
    assert metrics["subsets"] == {"small": {"listed": 3, "expected": 3}, "pairs": {"listed": 3}}
    assert metrics["bytes"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert metrics["failures"] == {"count": 0, "by_class": {}}


def test_missing_subset_list_names_the_file(tree: Path) -> None:
    (tree / "lists" / "l.tsv.gz").unlink()
    with pytest.raises(StatsError, match=r"l\.tsv\.gz: the list of subset 'small' is missing"):
        dataset_stats(ENTRY, tree)


def test_an_unreadable_image_is_a_failure_not_an_image(tree: Path) -> None:
    (tree / "images" / "1.jpg").write_bytes(b"<html>not an image</html>")
    metrics = dataset_stats(ENTRY, tree)
    assert metrics["by_kind"] == {"failed": 1, "images": 2, "lists": 2, "videos": 1}
    assert metrics["failures"] == {
        "count": 1,
        "by_class": {"html_instead_of_file": 1},
        "files": {"images/1.jpg": "html_instead_of_file"},
    }
    assert metrics["image_width"] == {"min": 40, "mean": 80.0, "max": 120}


def test_memmap_list_length_comes_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "l.memmap"
    path.write_bytes(b"\0" * 360)
    assert count_list_items(path, "memmap-s120") == 3
    path.write_bytes(b"\0" * 361)
    with pytest.raises(StatsError, match="not a whole number"):
        count_list_items(path, "memmap-s120")


VCAT = str(Path(sys.executable).with_name("vcat"))
TINY_ENTRY = """\
title: Tiny
description: A tree of a few images.
licence: {name: CC0-1.0, redistribution: allowed}
access: {kind: public}
sources:
  - {name: list, url: "file:upstream/l.tsv.gz", filename: l.tsv.gz, checksum: unpublished}
subsets:
  - name: all
    list_file: {source: list, format: flickr-tsv-gz}
"""


def run_stage(tmp_path: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """`vcat stage dataset-stats tiny ROOT OUT` in a subprocess (a hang fails the test)."""
    catalog = tmp_path / "catalog"
    (catalog / "datasets").mkdir(parents=True, exist_ok=True)
    (catalog / "datasets" / "tiny.yaml").write_text(TINY_ENTRY)
    output = tmp_path / "metrics" / "tiny.json"
    args = [VCAT, "stage", "dataset-stats", "tiny", str(root), str(output), "--catalog"]
    return subprocess.run(
        [*args, str(catalog), *extra], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )


@pytest.fixture
def bad_tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "images").mkdir(parents=True)
    (root / "images" / "good.jpg").write_bytes(jpeg(0, (40, 30)))
    for name, (data, _) in broken_images().items():
        (root / "images" / name).write_bytes(data)
    os.mkfifo(root / "images" / "pipe.jpg")
    (root / "images" / "zero.jpg").symlink_to("/dev/zero")
    (root / "l.tsv.gz").write_bytes(gzip.compress(b"1\tfile:x/good.jpg\timages/good.jpg\n"))
    return root


def test_the_stage_records_every_broken_file_by_class_and_fails_once(
    tmp_path: Path, bad_tree: Path
) -> None:
    done = run_stage(tmp_path, bad_tree)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert f"{bad_tree}/images/bomb.png (decompression_bomb)" in lines[0]
    assert "12 of 14 files failed, more than the 0" in lines[0]

    metrics = json.loads((tmp_path / "metrics" / "tiny.json").read_text())
    expected = {f"images/{name}": failure for name, (_, failure) in broken_images().items()}
    expected |= {"images/pipe.jpg": "not_a_regular_file", "images/zero.jpg": "not_a_regular_file"}
    assert metrics["failures"]["files"] == dict(sorted(expected.items()))
    assert metrics["failures"]["count"] == 12
    assert metrics["by_kind"] == {"failed": 10, "images": 1, "lists": 1}
    assert metrics["image_width"] == {"min": 40, "mean": 40.0, "max": 40}
    assert metrics["subsets"] == {"all": {"listed": 1}}


def test_a_tolerated_fraction_of_failures_passes(tmp_path: Path, bad_tree: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("dataset-stats:\n  max_failed_fraction: 1.0\n")
    done = run_stage(tmp_path, bad_tree, "--params", str(params))
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "metrics" / "tiny.json").read_text())["failures"]["count"] == 12


@pytest.mark.slow
def test_a_list_that_is_a_fifo_or_broken_is_one_line(tmp_path: Path, bad_tree: Path) -> None:
    for name in [*broken_images(), "pipe.jpg", "zero.jpg"]:
        (bad_tree / "images" / name).unlink()
    (bad_tree / "l.tsv.gz").unlink()
    os.mkfifo(bad_tree / "l.tsv.gz")
    done = run_stage(tmp_path, bad_tree)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip() == f"error: {bad_tree}/l.tsv.gz: a FIFO (named pipe), not a " + (
        "regular file; put a regular file there or remove it"
    )
    (bad_tree / "l.tsv.gz").unlink()
    (bad_tree / "l.tsv.gz").write_bytes(gzip.compress(b"1\tx\timages/good.jpg\n")[:-6])
    done = run_stage(tmp_path, bad_tree)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"error: {bad_tree}/l.tsv.gz: not a readable gzip file")
    (bad_tree / "l.tsv.gz").write_bytes(gzip.compress(b"ok\n\xff\xfe\n"))
    done = run_stage(tmp_path, bad_tree)
    assert done.returncode == 2 and "not UTF-8 text" in done.stderr


def test_a_folder_too_deep_to_list_is_a_failure(tmp_path: Path, bad_tree: Path) -> None:
    """Paths longer than PATH_MAX (built with relative mkdirs) cannot be listed by path."""
    name = "d" * 250
    descriptor = os.open(bad_tree / "images", os.O_RDONLY)
    try:
        for _ in range(18):
            os.mkdir(name, dir_fd=descriptor)
            deeper = os.open(name, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = deeper
    finally:
        os.close(descriptor)
    failures = dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree)["failures"]["files"]
    deep = [path for path, failure in failures.items() if path.startswith("images/ddd")]
    assert len(deep) == 1 and failures[deep[0]] == "unreadable"
    assert len(str(bad_tree / deep[0]).encode()) > 4000


def test_the_result_does_not_depend_on_the_number_of_threads(bad_tree: Path) -> None:
    for index in range(12):
        (bad_tree / "images" / f"more-{index}.jpg").write_bytes(jpeg(index, (40 + index, 30)))
    one = dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree, jobs=1)
    assert one == dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree, jobs=4)
    assert one["by_kind"]["images"] == 13 and one["failures"]["count"] == 12
    assert json.dumps(one, sort_keys=True) == json.dumps(
        dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree, jobs=3), sort_keys=True
    )


def test_running_out_of_file_descriptors_stops_the_walk(bad_tree: Path) -> None:
    """EMFILE is the process's limit, not a bad file: no file is recorded as unreadable."""
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no new descriptor
    try:
        with pytest.raises(OSError) as raised:
            dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree, jobs=2)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert raised.value.errno == errno.EMFILE


def test_links_to_folders_are_followed_and_loops_are_failures(
    tmp_path: Path, bad_tree: Path
) -> None:
    for name in [*broken_images(), "pipe.jpg", "zero.jpg"]:
        (bad_tree / "images" / name).unlink()
    outside = tmp_path / "nas"
    outside.mkdir()
    (outside / "far.jpg").write_bytes(jpeg(3, (50, 30)))
    (bad_tree / "images" / "mounted").symlink_to(outside)
    (bad_tree / "images" / "again").symlink_to(bad_tree / "images")
    (outside / "back").symlink_to(outside)
    with no_hang():
        metrics = dataset_stats(ENTRY_WITHOUT_SUBSETS, bad_tree)
    assert metrics["by_kind"] == {"images": 2, "lists": 1}
    assert metrics["image_width"]["max"] == 50
    assert metrics["failures"]["files"] == {
        "images/again": "symlink_loop",
        "images/mounted/back": "symlink_loop",
    }
