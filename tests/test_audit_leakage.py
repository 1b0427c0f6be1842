"""The leakage audit: perceptual hashes, faiss against brute force, held-out scenes leaked into
croco-crops pairs, near-duplicates in image shards, and the command's exit codes."""

from __future__ import annotations

import io
import json
from pathlib import Path

import imagehash
import numpy as np
import pytest
import skimage.data
from PIL import Image
from typer.testing import CliRunner

from stages.croco_crops import main as croco_crops
from tests.test_croco_crops import crops_text, make_world
from vcat.audit import near
from vcat.audit.held_out import image_files
from vcat.cli.audit import app
from vcat.images import ImageFailure, ImageProblem
from vcat.phash import hamming, hash_bytes, hash_image, hash_pixels, to_hex
from vcat.shards import ShardWriter

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "camera", "hubble_deep_field")
ENTRY = "tiny-megadepth"
ENTRY_YAML = """\
title: Tiny MegaDepth
description: Two scenes of photos in MegaDepth's layout; demo04 is held out.
licence:
  name: CC0-1.0
  redistribution: allowed
access:
  kind: manual
  instructions: Made by the test.
splits:
  - name: train
    scenes: [demo01]
  - name: test
    scenes: [demo04]
    held_out: true
"""
runner = CliRunner()


def encoded(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def bits(code: np.ndarray) -> int:
    return int(hamming(code[None], np.zeros((1, 8), np.uint8))[0, 0])


def distance(left: np.ndarray, right: np.ndarray) -> int:
    return int(hamming(left[None], right[None])[0, 0])


# --- the hash ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PHOTOS)
def test_the_hash_is_imagehash_phash_bit_for_bit(name: str) -> None:
    image = Image.fromarray(getattr(skimage.data, name)())
    reference = imagehash.phash(image)
    ours = hash_image(image)
    assert to_hex(ours) == str(reference)
    assert np.array_equal(np.unpackbits(ours).reshape(8, 8).astype(bool), reference.hash)
    # a JPEG decoded drafted (greyscale, reduced) hashes within a bit or two of the full decode
    data = encoded(image.resize((1600, 1200)))
    full = np.packbits(imagehash.phash(Image.open(io.BytesIO(data))).hash.flatten())
    assert distance(hash_bytes(data, "jpg"), full) <= 2


def test_a_resized_re_encoded_copy_is_close_and_another_photo_is_far() -> None:
    astronaut = Image.fromarray(skimage.data.astronaut())
    original = hash_bytes(encoded(astronaut))
    copy = hash_bytes(encoded(astronaut.resize((300, 300)), quality=40))
    other = hash_bytes(encoded(Image.fromarray(skimage.data.coffee())))
    assert distance(original, copy) <= 4
    assert distance(original, other) > 16
    batch = hash_pixels(np.zeros((3, 32, 32)))  # a batch; a flat image sets no bit
    assert batch.shape == (3, 8) and bits(batch[0]) == 0


def test_an_unusable_image_is_a_classified_problem() -> None:
    data = encoded(Image.fromarray(skimage.data.coffee()))
    with pytest.raises(ImageProblem) as cut:
        hash_bytes(data[: len(data) // 2], "jpg")
    assert cut.value.failure == ImageFailure.TRUNCATED
    with pytest.raises(ImageProblem) as empty:
        hash_bytes(b"", "jpg")
    assert empty.value.failure == ImageFailure.EMPTY


# --- faiss against brute force ----------------------------------------------------------------


@pytest.mark.parametrize("flat", [True, False])
def test_faiss_finds_exactly_what_brute_force_finds(
    flat: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    database = rng.integers(0, 256, (5000, 8), dtype=np.uint8)
    queries = rng.integers(0, 256, (3000, 8), dtype=np.uint8)
    for row in range(200):  # planted neighbours at 0..12 bits
        queries[row] = database[17 * row]
        for bit in rng.choice(64, size=row % 13, replace=False):
            queries[row, bit // 8] ^= 1 << (7 - bit % 8)
    if not flat:
        monkeypatch.setattr(near, "FLAT_LIMIT", 0)  # the multi-hash index where it pays
    assert near.multi_hash_pieces(3) == 4 and near.multi_hash_pieces(8) is None
    for radius in (0, 3, 8):
        found = list(near.within(database, queries, radius))
        assert found == near.within_brute_force(database, queries, radius)
        assert len(found) >= sum(row % 13 <= radius for row in range(200))
    assert list(near.within(database[:0], queries, 8)) == []


# --- a tiny world: a held-out scene leaked into croco-crops -------------------------------------


@pytest.fixture
def world(project: Path) -> Path:
    """The project with a tiny MegaDepth entry (demo04 held out) and its images."""
    (project / "catalog" / "datasets" / f"{ENTRY}.yaml").write_text(ENTRY_YAML)
    images = project / "data" / "sources" / ENTRY / "Undistorted_SfM"
    make_world(images, scenes=("demo01", "demo04"), per_scene=3)
    (project / "crops_release.txt").write_text(crops_text(("demo01", "demo04"), per_scene=3))
    return project


def crops(world: Path, exclude: list[str]) -> Path:
    images = world / "data" / "sources" / ENTRY / "Undistorted_SfM"
    settings = {"imsize": 32, "jobs": 1, "exclude_scenes": exclude}
    return croco_crops(settings, world / "crops_release.txt", images, world / "pairs")


def write_params(world: Path, training: dict[str, dict[str, object]], **settings: object) -> Path:
    params = world / "params.yaml"
    params.write_text(json.dumps({"audit": {**settings, "jobs": 1, "training": training}}))
    return params


PAIRS = {"kind": "croco-crops", "path": "pairs", "entry": ENTRY, "under": "Undistorted_SfM"}


def test_a_leaked_held_out_scene_is_reported_with_both_paths(world: Path) -> None:
    output = crops(world, exclude=[])
    write_params(world, {"pairs": PAIRS})
    report_path = world / "gates" / "leakage.json"
    metrics = world / "metrics.json"
    result = runner.invoke(
        app,
        ["leakage", "--out", str(report_path), "--metrics", str(metrics)],
        env={"COLUMNS": "300"},
    )
    assert result.exit_code == 1, result.output
    report = json.loads(report_path.read_text())
    provenance = (output / "provenance.tsv").read_text().splitlines()[1:]
    leaked = [
        (stem, member, source)
        for stem, *sources in (line.split("\t") for line in provenance)
        for member, source in zip("12", sources, strict=True)
        if source.startswith("demo04/")
    ]
    assert leaked and len(report["hits"]) == len(leaked)
    root = world / "data" / "sources" / ENTRY
    for hit, (stem, member, source) in zip(report["hits"], leaked, strict=True):
        assert hit["kind"] == "scene" and hit["held_item"] == "demo04"
        assert (hit["entry"], hit["split"], hit["artifact"]) == (ENTRY, "test", "pairs")
        assert hit["item"] == f"{stem} (image {member})"
        assert hit["item_path"] == source
        # the report names paths inside the project relative to it: the same in any checkout
        held = root / "Undistorted_SfM" / source
        assert hit["held_path"] == held.relative_to(world).as_posix()
        assert (world / hit["held_path"]).is_file()
    assert json.loads(metrics.read_text())["hits_scene"] == len(leaked)
    assert "demo04/images/0.jpg" in result.output and "LEAK" in result.output
    as_json = runner.invoke(app, ["leakage", "pairs", "--json"])
    assert as_json.exit_code == 1 and json.loads(as_json.output) == report
    before = report_path.read_bytes()
    runner.invoke(app, ["leakage", "--out", str(report_path)])  # again: the same bytes
    assert report_path.read_bytes() == before


def test_the_default_exclusions_leave_nothing_to_report(world: Path) -> None:
    crops(world, exclude=["0015", "0022", "demo04"])
    write_params(world, {"pairs": PAIRS})
    result = runner.invoke(app, ["leakage", "--metrics", str(world / "metrics.json")])
    assert result.exit_code == 0, result.output
    counts = json.loads((world / "metrics.json").read_text())
    assert counts["hits"] == 0 and counts["training_sources_checked"] > 0


def test_a_declared_held_out_image_is_found_by_path(world: Path) -> None:
    entry = world / "catalog" / "datasets" / f"{ENTRY}.yaml"
    entry.write_text(
        ENTRY_YAML.replace("scenes: [demo04]", "images: [Undistorted_SfM/demo01/images/2.jpg]")
    )
    crops(world, exclude=[])
    write_params(world, {"pairs": PAIRS})
    result = runner.invoke(app, ["leakage", "--json"])
    assert result.exit_code == 1, result.output
    hits = json.loads(result.output)["hits"]
    assert hits and {hit["kind"] for hit in hits} == {"image"}
    assert {hit["held_item"] for hit in hits} == {"Undistorted_SfM/demo01/images/2.jpg"}


# --- near-duplicates in image shards -----------------------------------------------------------


def image_shards(folder: Path, images: dict[str, bytes]) -> Path:
    with ShardWriter(folder, max_count=2) as writer:
        for key, data in images.items():
            writer.add(key, {"jpg": data, "json": b"{}"})
    return folder


def test_a_resized_re_encoded_held_out_image_is_a_near_duplicate(world: Path) -> None:
    held = world / "data" / "sources" / ENTRY / "Undistorted_SfM" / "demo04" / "images" / "0.jpg"
    copy = encoded(Image.open(held).resize((150, 112)), quality=50)
    unrelated = encoded(Image.fromarray(skimage.data.camera()))
    shards = image_shards(world / "web", {"a/unrelated": unrelated, "b/copy": copy})
    write_params(world, {"web": {"kind": "images", "path": "web"}})
    result = runner.invoke(app, ["leakage", "--json"])
    assert result.exit_code == 1, result.output
    (hit,) = json.loads(result.output)["hits"]
    expected = distance(hash_bytes(held.read_bytes()), hash_bytes(copy))
    assert hit["kind"] == "near-duplicate" and hit["distance"] == expected <= 8
    assert hit["item"] == "b/copy.jpg"
    assert hit["item_path"] == f"{(shards / 'shard-000000.tar').relative_to(world)}:b/copy.jpg"
    assert hit["held_item"] == "Undistorted_SfM/demo04/images/0.jpg"
    assert hit["held_path"] == held.relative_to(world).as_posix()
    # imagehash, an independent reader, agrees that they are near
    reference = imagehash.phash(Image.open(held)) - imagehash.phash(Image.open(io.BytesIO(copy)))
    assert reference <= 8
    strict = runner.invoke(app, ["leakage", "--max-distance", str(expected - 1), "--json"])
    assert strict.exit_code == (0 if expected else 1)


def test_images_of_held_out_scenes_are_found_wherever_the_scene_folder_lies(tmp_path: Path) -> None:
    for name in ("Undistorted_SfM/0015/images/a.jpg", "phoenix/x/0015/dense0/imgs/b.JPG",
                 "Undistorted_SfM/0016/images/c.jpg", "Undistorted_SfM/0015/notes.txt",
                 "loose/d.png"):  # fmt: skip
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    found = image_files(tmp_path, ["0015"], ["loose/d.png", "loose/missing.png"])
    assert found == (
        "Undistorted_SfM/0015/images/a.jpg",
        "loose/d.png",
        "phoenix/x/0015/dense0/imgs/b.JPG",
    )


def test_an_empty_artifact_has_nothing_to_leak(world: Path) -> None:
    image_shards(world / "empty", {})
    result = runner.invoke(app, ["leakage", str(world / "empty")])
    assert result.exit_code == 0, result.output
    assert "0 images hashed" in result.output


# --- what stops the audit: exit 2, one line ----------------------------------------------------


def one_line_error(result: object) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_a_missing_artifact_stops_the_audit(world: Path) -> None:
    write_params(world, {"pairs": PAIRS})
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert f"{world / 'pairs' / 'provenance.tsv'}: not found" in line
    line = one_line_error(runner.invoke(app, ["leakage", "nowhere"], env={"COLUMNS": "400"}))
    assert "nowhere: no such folder" in line and "(those are: pairs)" in line


def test_a_catalog_without_held_out_splits_stops_the_audit(world: Path) -> None:
    entry = world / "catalog" / "datasets" / f"{ENTRY}.yaml"
    entry.write_text(ENTRY_YAML.replace("    held_out: true\n", ""))
    crops(world, exclude=[])
    write_params(world, {"pairs": PAIRS})
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert "declares no held-out split with scenes or images" in line


def test_an_unreadable_image_stops_the_audit_naming_it(world: Path) -> None:
    held = world / "data" / "sources" / ENTRY / "Undistorted_SfM" / "demo04" / "images" / "1.jpg"
    held.write_bytes(held.read_bytes()[:300])
    image_shards(world / "web", {"a": encoded(Image.fromarray(skimage.data.camera()))})
    line = one_line_error(runner.invoke(app, ["leakage", "web"], env={"COLUMNS": "400"}))
    assert f"{held}: truncated_image" in line or f"{held}: corrupt_image" in line


def test_a_damaged_provenance_and_bad_settings_stop_the_audit(world: Path) -> None:
    output = crops(world, exclude=[])
    (output / "provenance.tsv").write_text("stem\tsource_1\tsource_2\n0\tonly-one\n")
    write_params(world, {"pairs": PAIRS})
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert "provenance.tsv:2: expected 'stem<TAB>source_1<TAB>source_2'" in line
    write_params(world, {"pairs": {**PAIRS, "kinds": "x"}})
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert "params.yaml:1: audit.training.pairs.kinds is not a setting" in line
    write_params(world, {"pairs": {**PAIRS, "kind": "videos"}})
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert "kind is 'videos'; it must be one of croco-crops, images" in line


def test_a_broken_settings_file_stops_the_audit_naming_its_line(world: Path) -> None:
    crops(world, exclude=[])
    write_params(world, {"pairs": PAIRS})
    (world / ".vcat").mkdir()
    (world / ".vcat" / "settings.yaml").write_text("roots:\n  tiny-megadepth: relative/path\n")
    line = one_line_error(runner.invoke(app, ["leakage"], env={"COLUMNS": "400"}))
    assert "settings.yaml:2" in line
    # a root given on the command line is used instead of the settings
    root = world / "data" / "sources" / ENTRY
    given = runner.invoke(app, ["leakage", "--root", f"{ENTRY}={root}", "--json"])
    assert given.exit_code == 1 and json.loads(given.output)["hits"]
