"""The demo Flickr-CC lists and copy-detection set: formats, nesting, reproducible bytes."""

from __future__ import annotations

import csv
import gzip
import re
from pathlib import Path

import pytest
from PIL import Image

from vcat.demo.copydetect import COPY_COUNT, DISTRACTOR_COUNT, build_copydetect, reference_count
from vcat.demo.flickr import IMAGE_COUNT, SUBSETS, bucket_of, build_flickr, list_name

PREFIX = "file:.vcat/demo-world/flickr/"
PATH_PATTERN = re.compile(
    r"images/(\d)/(\d)/(\d)/(?P<bucket>\d{4})/(?P<id>\d+)_(?P<secret>[0-9a-f]{10})\.jpg"
)


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def flickr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("flickr")
    build_flickr(out, PREFIX)
    return out


@pytest.fixture(scope="module")
def copydetect(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("copydetect")
    build_copydetect(out)
    return out


def read_list(flickr: Path, subset: str) -> list[str]:
    with gzip.open(flickr / "lists" / list_name(subset), "rt", encoding="utf-8") as stream:
        return stream.read().splitlines()


def test_flickr_build_is_byte_reproducible(flickr: Path, tmp_path: Path) -> None:
    build_flickr(tmp_path, PREFIX)
    first, second = tree_bytes(flickr), tree_bytes(tmp_path)
    assert len(first) == IMAGE_COUNT + len(SUBSETS)
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def test_flickr_lines_have_id_url_and_bucketed_path(flickr: Path) -> None:
    lines = read_list(flickr, "0.5k")
    assert len(lines) == IMAGE_COUNT
    for number, line in enumerate(lines, start=1):
        flickr_id, url, path = line.split("\t")
        match = PATH_PATTERN.fullmatch(path)
        assert match, f"line {number}: {path}"
        bucket = match["bucket"]
        assert match.group(1, 2, 3) == (bucket[0], bucket[1], bucket[2])
        assert bucket == bucket_of(int(flickr_id))
        assert match["id"] == flickr_id
        assert 10 <= len(flickr_id) <= 11
        assert url == PREFIX + path
    ids = [line.split("\t")[0] for line in lines]
    assert len(set(ids)) == IMAGE_COUNT
    # the shuffle leaves no trace of the order the images were made in
    assert ids != sorted(ids)


def test_flickr_subsets_are_nested_prefixes(flickr: Path) -> None:
    lists = {subset: read_list(flickr, subset) for subset in SUBSETS}
    assert {subset: len(lines) for subset, lines in lists.items()} == SUBSETS
    full = lists["0.5k"]
    for subset, count in SUBSETS.items():
        assert lists[subset] == full[:count]


def test_every_listed_flickr_image_exists_and_decodes(flickr: Path) -> None:
    long_sides = []
    for line in read_list(flickr, "0.5k"):
        path = flickr / line.split("\t")[2]
        with Image.open(path) as image:
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            long_sides.append(max(image.size))
    assert min(long_sides) >= 160
    assert max(long_sides) <= 400
    assert max(long_sides) - min(long_sides) > 150


def test_copydetect_build_is_byte_reproducible(copydetect: Path, tmp_path: Path) -> None:
    build_copydetect(tmp_path)
    first, second = tree_bytes(copydetect), tree_bytes(tmp_path)
    assert len(first) == reference_count() + COPY_COUNT + DISTRACTOR_COUNT + 1
    assert first.keys() == second.keys()
    assert [name for name in first if first[name] != second[name]] == []


def read_ground_truth(path: Path) -> list[tuple[str, str]]:
    """The matches as isc2021's ``read_ground_truth`` reads them: header and empty rows skipped."""
    pairs = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line == "query_id,reference_id":
            continue
        query, reference = line.split(",")
        if reference:
            pairs.append((query, reference))
    return pairs


def test_copydetect_ground_truth_has_a_row_per_query_as_disc21(copydetect: Path) -> None:
    data = (copydetect / "ground_truth.csv").read_bytes()
    assert b"\r" not in data and data.endswith(b"\n")
    with (copydetect / "ground_truth.csv").open(newline="") as stream:
        reader = csv.DictReader(stream)
        assert reader.fieldnames == ["query_id", "reference_id"]
        rows = list(reader)
    queries = sorted(path.stem for path in (copydetect / "queries").glob("*.jpg"))
    assert len(queries) == COPY_COUNT + DISTRACTOR_COUNT
    # one row per query, in query-id order, the reference empty for a distractor
    assert [row["query_id"] for row in rows] == queries
    distractors = [row for row in rows if row["reference_id"] == ""]
    assert len(distractors) == DISTRACTOR_COUNT
    assert data.count(b",\n") == DISTRACTOR_COUNT
    matches = read_ground_truth(copydetect / "ground_truth.csv")
    assert len(matches) == COPY_COUNT
    for query, reference in matches:
        assert re.fullmatch(r"Q\d{5}", query)
        assert re.fullmatch(r"R\d{6}", reference)
        assert (copydetect / "queries" / f"{query}.jpg").is_file()
        assert (copydetect / "references" / f"{reference}.jpg").is_file()
