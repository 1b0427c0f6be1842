"""Dataset statistics computed from real files: images, a video, subset lists."""

from __future__ import annotations

import gzip
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

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
