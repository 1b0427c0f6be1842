"""The croco-crops stage: CroCo's crop list and pixels, stems, failures, exclusions, shards."""

from __future__ import annotations

import io
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from stages.croco_crops import FAILURES_NAME, TooManyFailed, main
from tests.bad_images import HTML_PAGE, jpeg, png_bomb
from tests.process_tree import children, kill_worker_and_read_error
from vcat.cli import app
from vcat.croco.crops_file import CropsFormatError, read_headers, summarize
from vcat.croco.extract import effective_rotation
from vcat.croco.layout import StemLayout
from vcat.croco.provenance import read_provenance
from vcat.croco.tree import write_tree
from vcat.parts import ShardSpec, part_folder, parts_root
from vcat.shards import ShardReader
from vcat.stage import StageError

IMSIZE = 32
SIZE = (200, 150)
PHOTOS = ("coffee", "rocket", "chelsea", "astronaut", "immunohistochemistry")
ROTATIONS = (0, 45, -75, 90, 135, 180, -90, 200, 270, 300)


def photo(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    """A seeded crop of one of scikit-image's photos, resized to ``size``."""
    rng = np.random.default_rng(seed)
    pixels = getattr(skimage.data, PHOTOS[seed % len(PHOTOS)])()
    height, width = pixels.shape[:2]
    top, left = int(rng.integers(0, height // 4)), int(rng.integers(0, width // 4))
    part = Image.fromarray(pixels[top : top + 3 * height // 4, left : left + 3 * width // 4])
    return part.resize(size, Image.Resampling.BILINEAR)


def make_world(root: Path, scenes: tuple[str, ...] = ("0101", "0102"), per_scene: int = 4) -> None:
    """Photos at ``<scene>/images/<n>.jpg``; image 1 of the last scene is grey, image 2 a PNG
    named .jpg (CroCo reads both)."""
    for number, scene in enumerate(scenes):
        for index in range(per_scene):
            path = root / scene / "images" / f"{index}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            image = photo(100 * number + index)
            if number == len(scenes) - 1 and index == 1:
                image = image.convert("L")
            kind = "PNG" if number == len(scenes) - 1 and index == 2 else "JPEG"
            image.save(path, format=kind, quality=90)


def crop_lines(rng: np.random.Generator, count: int) -> list[str]:
    """``count`` crop lines inside SIZE; sides from 20 (BICUBIC) to 140 (LANCZOS at 32)."""
    lines = []
    for _ in range(count):
        values = []
        for _box in range(2):
            side = int(rng.integers(20, 141))
            left = int(rng.integers(0, SIZE[0] - side + 1))
            top = int(rng.integers(0, SIZE[1] - side + 1))
            values += [left, left + side, top, top + side]
        lines.append(", ".join(map(str, values)))
    return lines


def crops_text(
    scenes: tuple[str, ...] = ("0101", "0102"), per_scene: int = 4, seed: int = 0
) -> str:
    """Headers pairing each image with the next ones of its scene (consecutive headers share
    image 1, as real lists do), 1 to 3 crops each, the rotations of ROTATIONS in turn."""
    rng = np.random.default_rng(seed)
    lines = ["# CroCo crops for the test", "# img1, img2, rotation"]
    turn = 0
    for scene in scenes:
        for first in range(per_scene):
            for second in range(first + 1, per_scene):
                lines.append(
                    f"{scene}/images/{first}.jpg, {scene}/images/{second}.jpg, "
                    f"{ROTATIONS[turn % len(ROTATIONS)]}"
                )
                turn += 1
                lines += crop_lines(rng, int(rng.integers(1, 4)))
    return "\n".join(lines) + "\n"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """(crop list, dataset root)."""
    root = tmp_path / "root"
    make_world(root)
    crops = tmp_path / "crops_release.txt"
    crops.write_text(crops_text())
    return crops, root


def conf(**settings: object) -> dict[str, object]:
    return {"imsize": IMSIZE, "jobs": 1, "shard_max_count": 7, **settings}


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def croco_reference(crops: Path, root: Path, out: Path, imsize: int = IMSIZE) -> None:
    """CroCo's extraction, written again from its description: per pair header, open and
    convert both images, then per crop line: crop, resize (LANCZOS above 4x the target area,
    else BICUBIC), turn crop 2, save ``<stem>_1.jpg``/``<stem>_2.jpg``; listing in index order."""
    headers: list[tuple[str, str, int, list[list[int]]]] = []
    for line in crops.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split(", ")
        if len(fields) < 8:
            headers.append((fields[0], fields[1], int(fields[2]), []))
        else:
            headers[-1][3].append([int(value) for value in fields])
    total = sum(len(header[3]) for header in headers)
    levels = min(math.ceil(math.log(total, 500)), 5)
    per_dir = math.ceil(total ** (1 / levels))

    def stem(index: int) -> str:
        parts, rest = [], index
        for level in range(levels - 1, 0, -1):
            parts.append(rest // per_dir**level)
            rest %= per_dir**level
        return "/".join(f"{value:x}" for value in [*parts, index])

    turns = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180}
    turns[270] = Image.Transpose.ROTATE_270

    def cut(image: Image.Image, box: tuple[int, ...], turn: int) -> Image.Image:
        image = image.crop(box)
        big = image.size[0] * image.size[1] > 4 * imsize * imsize
        filter_ = Image.Resampling.LANCZOS if big else Image.Resampling.BICUBIC
        image = image.resize((imsize, imsize), resample=filter_)
        return image.transpose(turns[turn]) if turn else image

    index = 0
    stems = []
    for image1, image2, rotation, lines in headers:
        first = Image.open(root / image1).convert("RGB")
        second = Image.open(root / image2).convert("RGB")
        turn = 0 if -60 <= rotation <= 60 else (round(rotation / 90) % 4) * 90
        for l1, r1, t1, b1, l2, r2, t2, b2 in lines:
            path = out / stem(index)
            path.parent.mkdir(parents=True, exist_ok=True)
            cut(first, (l1, t1, r1, b1), 0).save(f"{path}_1.jpg")
            cut(second, (l2, t2, r2, b2), turn).save(f"{path}_2.jpg")
            stems.append(stem(index))
            index += 1
    (out / "listing.txt").write_text("".join(f"{line}\n" for line in ["# pair_path", *stems]))


# --- the crop list -------------------------------------------------------------------------


def test_the_list_is_read_with_global_indices_in_file_order(tmp_path: Path) -> None:
    crops = tmp_path / "crops_release.txt"
    crops.write_text(
        "# comment, with, commas, and, more, than, eight, fields, here\n"
        "a/images/1.jpg, a/images/2.jpg, -90\n"
        "1, 11, 2, 12, 3, 13, 4, 14\n"
        "5, 15, 6, 16, 7, 17, 8, 18\n"
        "a/images/1.jpg, a/images/3.jpg, 0\n"
        "b/images/1.jpg, b/images/2.jpg, +120\r\n"
        "0, 1, 0, 1, 0, 1, 0, 1\n"
    )
    headers = list(read_headers(crops))
    assert [(h.line, h.image1, h.image2, h.rotation) for h in headers] == [
        (2, "a/images/1.jpg", "a/images/2.jpg", -90),
        (5, "a/images/1.jpg", "a/images/3.jpg", 0),
        (6, "b/images/1.jpg", "b/images/2.jpg", 120),
    ]
    assert [(c.index, c.line, c.box1, c.box2) for h in headers for c in h.crops] == [
        (0, 3, (1, 2, 11, 12), (3, 4, 13, 14)),
        (1, 4, (5, 6, 15, 16), (7, 8, 17, 18)),
        (2, 7, (0, 0, 1, 1), (0, 0, 1, 1)),
    ]
    assert summarize(crops).crops == 3 and summarize(crops).headers == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1, 2, 3, 4, 5, 6, 7, 8\n", r":1: a crop line before any pair header"),
        ("a.jpg, b.jpg, 0\n1, 2, 3, 4, 5, 6, 7, x\n", r":2: a crop line must be 8 integers"),
        ("a.jpg, b.jpg, 0\n1, 2, 3, 4, 5, 6, 7, 8, 9\n", r":2: 9 fields; a crop line holds 8"),
        ("a.jpg, b.jpg, 0\n1, 2, 3, 4, 5, 6, 7,8\n", r":2: 7 field\(s\); a line holds either"),
        ("a.jpg, b.jpg\n", r":1: 2 field\(s\); a line holds either a pair header"),
        ("\n", r":1: 1 field\(s\)"),
        ("a.jpg, b.jpg, 1.5\n", r":1: the rotation '1\.5' is not an integer"),
        ("a.jpg, b.jpg, 0\n10, 10, 0, 5, 0, 5, 0, 5\n", r":2: box 1 .* is empty or outside"),
        ("a.jpg, b.jpg, 0\n0, 5, 0, 5, -1, 5, 0, 5\n", r":2: box 2 .* is empty or outside"),
        ("a.jpg, /etc/passwd, 0\n", r":1: image path '/etc/passwd' must be relative"),
        ("../a.jpg, b.jpg, 0\n", r":1: image path '\.\./a\.jpg' must be relative"),
        ("a.jpg, b.jpg, 0\n\xff\n", r":2: not UTF-8 text"),
    ],
)
def test_a_malformed_line_is_an_error_naming_file_and_line(
    tmp_path: Path, text: str, message: str
) -> None:
    crops = tmp_path / "bad.txt"
    crops.write_bytes(text.encode("latin-1"))
    with pytest.raises(CropsFormatError, match=f"^{tmp_path}/bad\\.txt{message}"):
        summarize(crops)


# --- stems -----------------------------------------------------------------------------------


def test_stems_follow_croco_on_the_worked_example_and_the_released_counts() -> None:
    layout = StemLayout.for_total(1_070_414)
    assert (layout.levels, layout.per_dir) == (3, 103)
    assert layout.stem(123456) == "b/41/1e240"
    for total in (1_070_414, 2_014_789, 144_228, 174, 501, 250_001):
        levels = min(math.ceil(math.log(total, 500)), 5)
        expected = (levels, math.ceil(total ** (1 / levels)))
        assert (StemLayout.for_total(total).levels, StemLayout.for_total(total).per_dir) == expected


@pytest.mark.parametrize(
    ("total", "ideal", "levels", "per_dir"),
    [
        (0, 500, 1, 1),
        (1, 500, 1, 1),
        (2, 500, 1, 2),
        (500, 500, 1, 500),
        (501, 500, 2, 23),
        (250_000, 500, 2, 500),
        (125_000_000, 500, 3, 500),  # math.log says 4 levels of 106
        (125_000_001, 500, 4, 106),
        (125, 5, 3, 5),  # math.log(125, 5) is 3.0000000000000004
        (3125, 5, 5, 5),  # 3125 ** 0.2 is 5.000000000000001
        (10**12, 10, 5, 252),  # past max levels
    ],
)
def test_stem_layout_uses_exact_integer_powers(
    total: int, ideal: int, levels: int, per_dir: int
) -> None:
    layout = StemLayout.for_total(total, 5, ideal)
    assert (layout.levels, layout.per_dir) == (levels, per_dir)
    assert layout.per_dir**layout.levels >= total
    assert (layout.per_dir - 1) ** layout.levels < max(total, 1) or layout.per_dir == 1


def test_every_stem_of_a_layout_is_distinct_and_folders_hold_about_per_dir() -> None:
    layout = StemLayout.for_total(3000, 5, 10)  # 4 levels of 8
    stems = [layout.stem(index) for index in range(3000)]
    assert len(set(stems)) == 3000
    assert stems[0] == "0/0/0/0" and stems[2999] == "5/6/6/bb7"
    assert max(pairs_per_folder(stems).values()) == layout.per_dir


def pairs_per_folder(stems: list[str]) -> dict[str, int]:
    folders: dict[str, int] = {}
    for stem in stems:
        folder = stem.rsplit("/", 1)[0]
        folders[folder] = folders.get(folder, 0) + 1
    return folders


TURNS = [(0, 0), (60, 0), (-60, 0), (61, 90), (-61, 270), (90, 90), (135, 180), (225, 180)]
TURNS += [(180, 180), (-90, 270), (270, 270), (300, 270), (315, 0), (359, 0), (-180, 180)]


@pytest.mark.parametrize(("rotation", "turn"), TURNS)
def test_crop_2_turns_as_croco_rounds_it(rotation: int, turn: int) -> None:
    assert effective_rotation(rotation) == turn


# --- pixels --------------------------------------------------------------------------------


def test_pairs_are_byte_identical_to_crocos_extraction(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    croco_reference(crops, root, tmp_path / "reference")
    output = main(conf(), crops, root, tmp_path / "out", tree=tmp_path / "tree")
    tree = folder_bytes(tmp_path / "tree")
    tree.pop(".vcat-tree.json")
    assert tree == folder_bytes(tmp_path / "reference")
    assert (output / "listing.txt").read_bytes() == (
        tmp_path / "reference/listing.txt"
    ).read_bytes()
    # the shards, read by webdataset itself: one sample per pair keyed by its stem
    samples = list(wds.WebDataset(sorted(map(str, output.glob("shard-*.tar"))), shardshuffle=False))
    listed = (output / "listing.txt").read_text().splitlines()[1:]
    assert [sample["__key__"] for sample in samples] == listed
    for sample in samples:
        assert (
            sample["1.jpg"] == (tmp_path / "reference" / f"{sample['__key__']}_1.jpg").read_bytes()
        )
        assert (
            sample["2.jpg"] == (tmp_path / "reference" / f"{sample['__key__']}_2.jpg").read_bytes()
        )


def test_processes_and_task_sizes_change_no_byte(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    one = main(conf(), crops, root, tmp_path / "one")
    two = main(conf(jobs=2, task_pairs=2, cache_images=1), crops, root, tmp_path / "two")
    assert folder_bytes(two) == folder_bytes(one)


def test_reduced_decode_is_an_option_that_changes_pixels_a_little(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "big").mkdir(parents=True)
    photo(3, (1600, 1200)).save(root / "big" / "a.jpg", quality=90)
    crops = tmp_path / "crops.txt"
    crops.write_text("big/a.jpg, big/a.jpg, 0\n100, 612, 50, 562, 0, 1600, 0, 1200\n")
    exact = main(conf(imsize=128), crops, root, tmp_path / "exact")
    fast = main(conf(imsize=128, reduced_decode=True), crops, root, tmp_path / "fast")
    for member in ("1.jpg", "2.jpg"):
        a = _pixels(exact, member)
        b = _pixels(fast, member)
        assert a.shape == b.shape == (128, 128, 3)
        assert 0 < np.abs(a.astype(int) - b.astype(int)).mean() < 4


def _pixels(folder: Path, member: str) -> np.ndarray:
    sample = next(iter(wds.WebDataset(str(folder / "shard-000000.tar"), shardshuffle=False)))
    return np.asarray(Image.open(io.BytesIO(sample[member])))


# --- failures and exclusions -----------------------------------------------------------------


def test_unreadable_images_fail_their_pairs_which_keep_their_indices(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    clean = main(conf(), crops, root, tmp_path / "clean")
    (root / "0101/images/3.jpg").write_bytes(HTML_PAGE)
    (root / "0102/images/2.jpg").write_bytes(jpeg(1, SIZE)[:2000])  # cut short
    (root / "0102/images/3.jpg").unlink()
    (root / "0101/images/2.jpg").write_bytes(png_bomb())
    text = (
        crops.read_text()
        + "0101/images/0.jpg, 0101/images/1.jpg, 0\n0, 10, 0, 10, 150, 210, 0, 60\n"
    )
    crops.write_text(text)  # box 2 reaches past the 200 x 150 image
    metrics = tmp_path / "metrics.json"
    with pytest.raises(TooManyFailed, match=r"pairs failed, more than the 0 that croco-crops"):
        main(conf(), crops, root, tmp_path / "strict")
    output = main(conf(max_failed_fraction=1.0), crops, root, tmp_path / "out", metrics=metrics)

    rows = [line.split("\t") for line in (output / FAILURES_NAME).read_text().splitlines()]
    assert rows[0] == ["index", "line", "image", "failure", "message"]
    failed = {int(row[0]): (row[2], row[3]) for row in rows[1:]}
    assert [int(row[0]) for row in rows[1:]] == sorted(failed)
    classes = {image: failure for image, failure in failed.values()}
    assert classes == {
        "0101/images/3.jpg": "not_an_image",
        "0102/images/2.jpg": "truncated_image",
        "0102/images/3.jpg": "unreadable",
        "0101/images/2.jpg": "decompression_bomb",
        "0101/images/1.jpg": "crop_outside_image",
    }
    images_of_line = {
        crop.line: (header.image1, header.image2)
        for header in read_headers(crops)
        for crop in header.crops
    }
    assert all(row[2] in images_of_line[int(row[1])] for row in rows[1:])
    # the pairs that did not fail have the names and bytes of the clean run
    total = summarize(crops).crops
    layout = StemLayout.for_total(total)
    stems = (output / "listing.txt").read_text().splitlines()[1:]
    assert stems == [layout.stem(i) for i in range(total) if i not in failed]
    with ShardReader(output) as made, ShardReader(clean) as before:
        assert made.keys() == stems
        assert all(made.read(stem) == before.read(stem) for stem in stems)
    counts = json.loads(metrics.read_text())
    assert counts["pairs_failed"] == len(failed) and counts["pairs_listed"] == total
    assert counts["pairs_written"] == total - len(failed)
    assert sum(counts["failures_by_class"].values()) == len(failed)


def test_excluded_scenes_are_counted_out_and_others_keep_their_stems(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    clean = main(conf(), crops, root, tmp_path / "clean")
    metrics = tmp_path / "metrics.json"
    settings = conf(exclude_scenes=["0102", "9999"])
    output = main(settings, crops, root, tmp_path / "out", metrics=metrics)
    in_0102 = [
        crop.index
        for header in read_headers(crops)
        for crop in header.crops
        if header.image1.startswith("0102/")
    ]
    counts = json.loads(metrics.read_text())
    assert counts["pairs_excluded"] == len(in_0102) > 0
    assert counts["excluded_by_scene"] == {"0102": len(in_0102), "9999": 0}
    stems = (output / "listing.txt").read_text().splitlines()[1:]
    clean_stems = (clean / "listing.txt").read_text().splitlines()[1:]
    layout = StemLayout.for_total(summarize(crops).crops)
    assert stems == [stem for stem in clean_stems if stem not in {layout.stem(i) for i in in_0102}]

    nested = tmp_path / "nested.txt"  # another dataset's layout: the scene is component 1
    nested.write_text(crops.read_text().replace("010", "Undistorted/010"))
    (tmp_path / "nested_root").mkdir()
    (tmp_path / "nested_root" / "Undistorted").symlink_to(root)
    moved = main(
        {**settings, "scene_path_component": 1}, nested, tmp_path / "nested_root", tmp_path / "n"
    )
    assert (moved / "listing.txt").read_text() == (output / "listing.txt").read_text()
    with pytest.raises(StageError, match=r"nested\.txt:3: image path .* has no component 7"):
        main({**settings, "scene_path_component": 7}, nested, root, tmp_path / "x")
    with pytest.raises(StageError, match=r"exclude_scenes holds 15: scene ids are strings"):
        main(conf(exclude_scenes=[15]), crops, root, tmp_path / "y")


def test_provenance_names_each_written_pair_and_its_two_sources_as_the_list_does(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    (root / "0102/images/3.jpg").unlink()  # its pairs fail: not written, not in the provenance
    settings = conf(max_failed_fraction=1.0, exclude_scenes=["0101"])
    output = main(settings, crops, root, tmp_path / "out")
    layout = StemLayout.for_total(summarize(crops).crops)
    expected = [
        f"{layout.stem(crop.index)}\t{header.image1}\t{header.image2}"
        for header in read_headers(crops)
        for crop in header.crops
        if header.image1.startswith("0102/") and "3.jpg" not in header.image1 + header.image2
    ]
    text = (output / "provenance.tsv").read_text()
    assert text == "stem\tsource_1\tsource_2\n" + "".join(f"{line}\n" for line in expected)
    assert [record.stem for record in read_provenance(output / "provenance.tsv")] == list(
        ShardReader(output).keys()
    )
    before = folder_bytes(output)
    main(settings, crops, root, output)  # again: the same bytes
    assert folder_bytes(output) == before
    (tmp_path / "empty.txt").write_text("")
    empty = main(conf(), tmp_path / "empty.txt", root, tmp_path / "none")
    assert (empty / "provenance.tsv").read_text() == "stem\tsource_1\tsource_2\n"


# --- edge cases --------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "# only a comment\n", "a.jpg, b.jpg, 0\n"])
def test_a_list_of_no_pairs_gives_an_empty_complete_output(tmp_path: Path, text: str) -> None:
    crops = tmp_path / "crops.txt"
    crops.write_text(text)
    (tmp_path / "root").mkdir()
    metrics = tmp_path / "metrics.json"
    output = main(
        conf(), crops, tmp_path / "root", tmp_path / "out", metrics=metrics, tree=tmp_path / "tree"
    )
    assert (output / "index.json").is_file()
    assert (output / "listing.txt").read_text() == "# pair_path\n"
    assert (tmp_path / "tree" / "listing.txt").read_text() == "# pair_path\n"
    assert json.loads(metrics.read_text())["pairs_written"] == 0


def test_a_list_of_one_pair_is_named_0(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    one = tmp_path / "one.txt"
    one.write_text("\n".join(crops.read_text().splitlines()[:4]) + "\n")
    assert summarize(one).crops == 1
    output = main(conf(), one, root, tmp_path / "out", tree=tmp_path / "tree")
    assert (output / "listing.txt").read_text() == "# pair_path\n0\n"
    assert sorted(path.name for path in (tmp_path / "tree").iterdir()) == [
        ".vcat-tree.json",
        "0_1.jpg",
        "0_2.jpg",
        "listing.txt",
    ]


# --- runs: idempotent, resumable, sharded -------------------------------------------------------


def test_a_second_run_changes_no_byte(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    output = main(conf(), crops, root, tmp_path / "out", tree=tmp_path / "tree")
    before = folder_bytes(output), folder_bytes(tmp_path / "tree")
    stamps = {path: path.stat().st_mtime_ns for path in output.rglob("*")}
    main(conf(), crops, root, output, tree=tmp_path / "tree")
    assert (folder_bytes(output), folder_bytes(tmp_path / "tree")) == before
    assert {path: path.stat().st_mtime_ns for path in output.rglob("*")} == stamps


def test_a_shard_lost_from_a_finished_output_is_made_again(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    (root / "0101/images/3.jpg").unlink()
    settings = conf(max_failed_fraction=1.0)
    clean = main(settings, crops, root, tmp_path / "clean")
    output = main(settings, crops, root, tmp_path / "out")
    (output / "shard-000001.tar").unlink()
    main(settings, crops, root, output)
    assert folder_bytes(output) == folder_bytes(clean)


def test_a_replaced_source_image_makes_the_output_again(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    output = main(conf(), crops, root, tmp_path / "out")
    before = folder_bytes(output)
    photo(77).save(root / "0101/images/1.jpg", quality=80)  # another photo, another size
    main(conf(), crops, root, output)
    assert folder_bytes(output) != before
    assert folder_bytes(output) == folder_bytes(main(conf(), crops, root, tmp_path / "clean"))


def test_a_folder_of_other_files_is_refused_not_emptied(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("keep me")
    with pytest.raises(StageError, match=r"mine holds files that no croco-crops run made \(thesis"):
        main(conf(), crops, root, tmp_path / "mine")
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "keep me"


@pytest.mark.parametrize("count", [1, 2, 3, 40])
def test_merged_parts_equal_a_single_run(
    world: tuple[Path, Path], tmp_path: Path, count: int
) -> None:
    crops, root = world
    (root / "0102/images/3.jpg").unlink()  # failures too are merged in order
    settings = conf(max_failed_fraction=1.0, exclude_scenes=["0101"])
    single = main(settings, crops, root, tmp_path / "single", tree=tmp_path / "single-tree")
    merged = tmp_path / "merged"
    for index in reversed(range(count)):  # any order
        main(settings, crops, root, merged, shard=ShardSpec(index, count))
    assert summarize(crops).crops < 40
    main(settings, crops, root, merged, merge=count, tree=tmp_path / "merged-tree")
    assert folder_bytes(merged) == folder_bytes(single)
    assert folder_bytes(tmp_path / "merged-tree") == folder_bytes(tmp_path / "single-tree")
    assert parts_root(merged).is_dir()
    main(settings, crops, root, merged, merge=count)  # again: nothing changes
    assert folder_bytes(merged) == folder_bytes(single)
    # the provenance is part of the bytes compared: it names the pairs written, no other
    provenance = (merged / "provenance.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in provenance[1:]] == list(ShardReader(merged).keys())


def test_a_merge_into_a_stopped_single_run_equals_the_single_run(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    (root / "0102/images/3.jpg").unlink()
    settings = conf(max_failed_fraction=1.0)
    single = main(settings, crops, root, tmp_path / "single")
    stopped = tmp_path / "stopped"
    main(settings, crops, root, stopped)
    records = (stopped / FAILURES_NAME).read_text().split("\n", 1)[1]
    (stopped / ".failures.journal").write_text(records)  # what a stopped run leaves
    for name in ("index.json", FAILURES_NAME, "listing.txt"):
        (stopped / name).unlink()
    for index in range(2):
        main(settings, crops, root, stopped, shard=ShardSpec(index, 2))
    main(settings, crops, root, stopped, merge=2)
    assert folder_bytes(stopped) == folder_bytes(single)


def test_a_merge_names_the_parts_to_run(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    main(conf(), crops, root, tmp_path / "out", shard=ShardSpec(0, 3))
    with pytest.raises(Exception, match=r"part\(s\) 1, 2 of 3 are not finished"):
        main(conf(), crops, root, tmp_path / "out", merge=3)
    main(conf(), crops, root, tmp_path / "out", shard=ShardSpec(1, 3))
    main(conf(imsize=16), crops, root, tmp_path / "out", shard=ShardSpec(2, 3))
    with pytest.raises(Exception, match=r"00002-of-00003 was made from another crop list or other"):
        main(conf(), crops, root, tmp_path / "out", merge=3)
    assert part_folder(tmp_path / "out", ShardSpec(2, 3)).is_dir()


VCAT = str(Path(sys.executable).with_name("vcat"))


def big_world(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "root"
    make_world(root, scenes=("0201", "0202", "0203"), per_scene=6)
    crops = tmp_path / "crops_release.txt"
    text = crops_text(("0201", "0202", "0203"), 6, seed=1)
    crops.write_text(text + text.split("\n", 2)[2])  # the same headers again: twice the pairs
    return crops, root


def test_a_run_killed_mid_way_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    crops, root = big_world(tmp_path)
    (root / "0202/images/5.jpg").unlink()  # failures recorded before and after the kill
    params = tmp_path / "params.yaml"
    params.write_text(
        "croco-crops:\n  imsize: 64\n  jobs: 1\n  shard_max_count: 5\n  max_failed_fraction: 1.0\n"
    )
    command = [VCAT, "stage", "croco-crops", str(crops), str(root), "--params", str(params)]
    clean = subprocess.run([*command, str(tmp_path / "clean")], capture_output=True, timeout=120)
    assert clean.returncode == 0, clean.stderr
    output = tmp_path / "out"
    process = subprocess.Popen([*command, str(output)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not (output / "shard-000004.tar").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "index.json").exists(), "the run ended before it was killed"
    assert (output / ".failures.journal").is_file()
    done = subprocess.run([*command, str(output)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert folder_bytes(output) == folder_bytes(tmp_path / "clean")


def test_a_worker_killed_mid_way_ends_the_run_in_one_line_and_it_resumes(tmp_path: Path) -> None:
    crops, root = big_world(tmp_path)
    settings = {"imsize": 64, "jobs": 2, "shard_max_count": 5}
    clean = main({**settings, "jobs": 1}, crops, root, tmp_path / "clean")
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"croco-crops": settings}))
    output = tmp_path / "out"
    command = [VCAT, "stage", "croco-crops", str(crops), str(root), str(output)]
    process = subprocess.Popen([*command, "--params", str(params)], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (output / "shard-000001.tar").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    # the stage's children are the resource tracker and the fork server; the workers are the
    # fork server's children
    workers = [pid for child in children(process.pid) for pid in children(child)]
    assert workers, "no worker process found"
    kill_worker_and_read_error(process, workers[0])
    assert not (output / "index.json").exists()
    done = subprocess.run([*command, "--params", str(params)], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert folder_bytes(output) == folder_bytes(clean)


def test_failures_journal_cut_by_a_kill_is_recovered(
    world: tuple[Path, Path], tmp_path: Path
) -> None:
    crops, root = world
    (root / "0101/images/3.jpg").unlink()
    settings = conf(max_failed_fraction=1.0)
    clean = main(settings, crops, root, tmp_path / "clean")
    output = main(settings, crops, root, tmp_path / "out")
    # a state a kill leaves: no index (shards kept), failures only in a journal, one cut short
    records = (output / FAILURES_NAME).read_text().splitlines()[1:]
    (output / "index.json").unlink()
    (output / FAILURES_NAME).unlink()
    (output / ".failures.journal").write_text("\n".join(records) + "\n" + records[-1][:4])
    main(settings, crops, root, output)
    assert folder_bytes(output) == folder_bytes(clean)
    (output / ".run.json").write_text('{"crops_md5": "0f')  # cut while it was written
    main(settings, crops, root, output)
    assert folder_bytes(output) == folder_bytes(clean)


# --- the command and CroCo's tree --------------------------------------------------------------


def test_the_command_exits_0_1_and_2(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    params = tmp_path / "params.yaml"
    params.write_text("croco-crops:\n  lists: {}\n  imsize: 32\n  jobs: 2\n")
    runner = CliRunner()
    stage = ["stage", "croco-crops", str(crops), str(root)]
    done = runner.invoke(app, [*stage, str(tmp_path / "out"), "--params", str(params)])
    assert done.exit_code == 0, done.output
    (root / "0101/images/0.jpg").unlink()
    done = runner.invoke(app, [*stage, str(tmp_path / "failing"), "--params", str(params)])
    assert done.exit_code == 1 and "pairs failed, more than the 0" in done.output
    empty = tmp_path / "empty"
    empty.mkdir()
    done = runner.invoke(app, ["stage", "croco-crops", str(crops), str(empty), str(tmp_path / "w")])
    assert done.exit_code == 1 and f"none was made: is {empty} the folder" in done.output
    bad = tmp_path / "bad.txt"
    bad.write_text("a.jpg, b.jpg, 0\n1, 2, 3, 4\n")
    done = runner.invoke(app, ["stage", "croco-crops", str(bad), str(root), str(tmp_path / "x")])
    assert done.exit_code == 2 and f"{bad}:2: 4 field(s)" in done.output
    params.write_text("croco-crops:\n  imsise: 32\n")
    done = runner.invoke(app, [*stage, str(tmp_path / "y"), "--params", str(params)])
    assert done.exit_code == 2 and f"{params}:2: croco-crops.imsise is not a setting" in done.output
    done = runner.invoke(app, [*stage, str(tmp_path / "z"), "--shard", "3/2"])
    assert done.exit_code == 2 and "shard 3/2 does not exist" in done.output


def test_the_tree_is_what_crocos_loader_reads(world: tuple[Path, Path], tmp_path: Path) -> None:
    crops, root = world
    output = main(conf(), crops, root, tmp_path / "out")
    tree = tmp_path / "MegaDepth_crops"
    assert write_tree(output, tree) == summarize(crops).crops
    # CroCo's load_pairs_from_list_file: strip, split lines, skip '#', add _1.jpg and _2.jpg
    lines = (tree / "listing.txt").read_text().strip().splitlines()
    pairs = [
        (tree / f"{line}_1.jpg", tree / f"{line}_2.jpg")
        for line in lines
        if not line.startswith("#")
    ]
    assert len(pairs) == summarize(crops).crops
    for first, second in pairs:
        assert Image.open(first).size == Image.open(second).size == (IMSIZE, IMSIZE)
    # an interrupted build resumes in its hidden folder; the tree appears whole at the end
    other = main(conf(imsize=16), crops, root, tmp_path / "other")
    with pytest.raises(Exception, match=r"MegaDepth_crops exists and was not made from"):
        write_tree(other, tree)
    staging = tree.with_name(".MegaDepth_crops.building")
    write_tree(other, tmp_path / "fresh")
    staging_of_fresh = folder_bytes(tmp_path / "fresh")
    staging.mkdir()
    (staging / ".vcat-tree.json").write_bytes(staging_of_fresh[".vcat-tree.json"])
    (staging / "0_1.jpg").write_bytes(staging_of_fresh["0_1.jpg"])
    write_tree(other, tree, overwrite=True)
    assert folder_bytes(tree) == staging_of_fresh
    assert not staging.exists()
