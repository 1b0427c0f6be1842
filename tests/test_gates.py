"""The data-quality gates on copies of the real demo artifacts.

Each clean copy passes; each corrupted copy fails, naming the check that caught it and the
item (file, key or path) at fault, in the summary and in ``bad-items.tsv``. Shards are
corrupted by re-packing them with ``ShardWriter`` (a consistent index, as a faulty producer
would write it), except where the case is about the shard itself. The demo artifacts come
from the ``demo_root`` fixture (this checkout after ``dvc repro``, or a copy built once).
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner, Result

from vcat.cli import app
from vcat.shards import INDEX_NAME, ShardReader, ShardWriter

REPO = Path(__file__).resolve().parents[1]
FLICKR = "data/prepared/flickr-images/demo-flickr/0.5k"
CROPS = "data/prepared/croco-crops/demo-megadepth"
MEMMAP = "data/prepared/flickr-memmap/demo-flickr/flickr-0.1k.memmap"
FRAME_PATHS = "data/prepared/path-list/demo-video-frame-paths"
FRAMES = "data/prepared/video-frames/demo-video"

runner = CliRunner()

Change = Callable[[str, dict[str, bytes]], dict[str, bytes] | None]


@pytest.fixture(scope="module")
def root(demo_root: Path) -> Path:
    return demo_root


def repack(source: Path, destination: Path, change: Change) -> Path:
    """A copy of the shard folder ``source`` with each sample passed through ``change``
    (None drops it); the folder's other files are copied as they are."""
    destination.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("shard-") and path.name != INDEX_NAME:
            shutil.copy2(path, destination / path.name)
    with ShardReader(source) as reader:
        limits = {"max_count": reader.index.max_count, "max_bytes": reader.index.max_bytes}
        with ShardWriter(destination, **limits) as writer:
            for key, original in reader:
                sample = change(key, original)
                if sample is not None:
                    writer.add(key, sample)
    return destination


def first_key(folder: Path) -> str:
    with ShardReader(folder) as reader:
        return reader.keys()[0]


def jpeg(colour: int | tuple[int, int, int], size: tuple[int, int] = (256, 256)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def replace_first(folder: Path, ext: str, make: Callable[[bytes], bytes]) -> Change:
    key = first_key(folder)

    def change(sample_key: str, sample: dict[str, bytes]) -> dict[str, bytes]:
        if sample_key == key:
            sample = {**sample, ext: make(sample[ext])}
        return sample

    return change


def check(artifact: Path, out: Path, *args: str) -> Result:
    return runner.invoke(app, ["check", str(artifact), "--out", str(out), *args])


def gate_params(tmp_path: Path, **gates: dict[str, object]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"gates": gates}, sort_keys=False))
    return path


def bad_items(out: Path) -> list[list[str]]:
    lines = (out / "bad-items.tsv").read_text().splitlines()
    assert lines[0] == "table\titem\tchecks"
    return [line.split("\t") for line in lines[1:]]


def assert_fails(result: Result, check_name: str, item: str, out: Path) -> None:
    assert result.exit_code == 1, result.output
    assert f"failed {check_name}:" in result.stdout, result.stdout
    assert item in result.stdout, result.stdout
    listed = {(row[1], check) for row in bad_items(out) for check in row[2].split(",")}
    if (item, check_name) not in listed:
        document = json.loads((out / "result.json").read_text())
        failed = [c for c in document["checks"] if c["check"] == check_name]
        assert failed and not failed[0]["success"], document["checks"]


# --- images ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def flickr(root: Path) -> Path:
    return root / FLICKR


def test_a_clean_image_artifact_passes(flickr: Path, tmp_path: Path) -> None:
    result = check(flickr, tmp_path / "gate")
    assert result.exit_code == 0, result.output
    assert "passed" in result.stdout.splitlines()[0]
    assert bad_items(tmp_path / "gate") == []
    document = json.loads((tmp_path / "gate" / "result.json").read_text())
    assert document["format"] == "vcat.gate/1" and document["rows"]["images"] == 500
    assert (tmp_path / "gate" / "docs" / "index.html").is_file()


@pytest.mark.parametrize(
    ("case", "make", "check_name"),
    [
        ("truncated jpeg", lambda data: data[: len(data) // 2], "decodable"),
        ("empty file", lambda data: b"", "decodable"),
        ("text instead of an image", lambda data: b"<html>quota exceeded</html>", "decodable"),
        ("black frame", lambda data: jpeg((0, 0, 0)), "not_black"),
        ("flat grey frame", lambda data: jpeg((128, 128, 128)), "not_blank"),
    ],
)
def test_a_corrupt_image_fails_the_right_check_naming_it(
    flickr: Path, tmp_path: Path, case: str, make: Callable[[bytes], bytes], check_name: str
) -> None:
    copy = repack(flickr, tmp_path / "copy", replace_first(flickr, "jpg", make))
    result = check(copy, tmp_path / "gate")
    assert_fails(result, check_name, f"{first_key(flickr)}.jpg", tmp_path / "gate")


def test_an_image_with_two_channels_fails_channels(flickr: Path, tmp_path: Path) -> None:
    key = first_key(flickr)

    def grey_alpha(sample_key: str, sample: dict[str, bytes]) -> dict[str, bytes]:
        if sample_key != key:
            return sample
        buffer = io.BytesIO()
        image = Image.open(io.BytesIO(sample["jpg"])).convert("LA")
        image.save(buffer, "PNG")
        return {"png": buffer.getvalue()}

    copy = repack(flickr, tmp_path / "copy", grey_alpha)
    assert_fails(check(copy, tmp_path / "gate"), "channels", f"{key}.png", tmp_path / "gate")


def test_a_declared_minimum_width_fails_the_narrower_images(flickr: Path, tmp_path: Path) -> None:
    params = gate_params(
        tmp_path, wide={"artifact": str(flickr), "checks": {"width": {"min_width": 300}}}
    )
    result = check(flickr, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 1, result.output
    assert "failed width: width between 300 and None pixels" in result.stdout
    narrow = [row for row in bad_items(tmp_path / "gate") if "width" in row[2]]
    assert narrow and all(row[0] == "images" for row in narrow)


def test_a_shard_changed_after_it_was_written_fails_shards_intact(
    flickr: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(flickr, copy)
    shard = copy / "shard-000001.tar"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0xFF
    shard.write_bytes(bytes(data))
    result = check(copy, tmp_path / "gate")
    assert_fails(result, "shards_intact", "shard-000001.tar", tmp_path / "gate")


def test_the_subset_count_comes_from_the_catalog(flickr: Path, tmp_path: Path) -> None:
    dropped = first_key(flickr)
    copy = repack(flickr, tmp_path / "copy", lambda k, s: None if k == dropped else s)
    params = gate_params(
        tmp_path,
        counted={"artifact": str(copy), "kind": "images", "entry": "demo-flickr", "subset": "0.5k"},
    )
    result = check(copy, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 1, result.output
    assert "failed count:" in result.stdout and "observed: 499" in result.stdout


def _black_frames(folder: Path, count: int) -> Change:
    with ShardReader(folder) as reader:
        keys = set(reader.keys()[:count])
    return lambda key, sample: {**sample, "jpg": jpeg((0, 0, 0))} if key in keys else sample


def test_a_declared_fraction_lets_a_few_bad_images_through_and_lists_them(
    flickr: Path, tmp_path: Path
) -> None:
    copy = repack(flickr, tmp_path / "copy", _black_frames(flickr, 2))
    allowed = {"max_bad_fraction": 0.01}
    params = gate_params(
        tmp_path,
        lenient={"artifact": str(copy), "checks": {"not_black": allowed, "not_blank": allowed}},
    )
    result = check(copy, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 0, result.output
    assert "allowed not_black: 2 item(s)" in result.stdout
    # a black frame is also one flat colour
    assert [row[2] for row in bad_items(tmp_path / "gate")] == ["not_black,not_blank"] * 2


def test_more_bad_images_than_the_fraction_allows_fail(flickr: Path, tmp_path: Path) -> None:
    copy = repack(flickr, tmp_path / "copy", _black_frames(flickr, 10))
    params = gate_params(
        tmp_path,
        strict={"artifact": str(copy), "checks": {"not_black": {"max_bad_fraction": 0.01}}},
    )
    result = check(copy, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 1, result.output
    assert "mean: 10 row(s) fail it (2.00% of the images)" in result.stdout
    assert sum("not_black" in row[2] for row in bad_items(tmp_path / "gate")) == 10


# --- pairs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def crops(root: Path) -> Path:
    return root / CROPS


def test_clean_crops_pass_their_declared_gate(crops: Path, tmp_path: Path) -> None:
    result = check(crops, tmp_path / "gate", "--suite", "croco-crops-demo-megadepth")
    assert result.exit_code == 0, result.output
    assert "(pairs, images: 472, shards: 3, pairs: 236): passed" in result.stdout


def test_a_pair_missing_its_second_half_fails_complete(crops: Path, tmp_path: Path) -> None:
    key = first_key(crops)
    copy = repack(crops, tmp_path / "copy", lambda k, s: {"1.jpg": s["1.jpg"]} if k == key else s)
    result = check(copy, tmp_path / "gate", "--suite", "croco-crops-demo-megadepth")
    assert_fails(result, "complete", key, tmp_path / "gate")


def test_a_half_of_the_wrong_size_fails_imsize(crops: Path, tmp_path: Path) -> None:
    key = first_key(crops)
    copy = repack(
        crops, tmp_path / "copy", replace_first(crops, "2.jpg", lambda d: jpeg(90, (200, 200)))
    )
    result = check(copy, tmp_path / "gate", "--suite", "croco-crops-demo-megadepth")
    assert_fails(result, "imsize", key, tmp_path / "gate")
    assert "min_side:" in result.stdout


def test_crops_against_the_default_imsize_fail_every_pair(crops: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"  # the project's gate for the demo crops declares imsize 256
    shutil.copytree(crops, copy)
    result = check(copy, tmp_path / "gate", "--kind", "pairs")
    assert result.exit_code == 1, result.output
    assert "failed imsize: both halves of every pair are 224x224" in result.stdout
    assert "236 row(s) fail it (100.00% of the pairs)" in result.stdout


# --- path lists -----------------------------------------------------------------------------


def memmap_copy(tmp_path: Path, paths: list[bytes], width: int = 120) -> Path:
    target = tmp_path / "list.memmap"
    np.array(paths, dtype=f"S{width}").tofile(target)
    return target


@pytest.fixture(scope="module")
def flickr_paths(root: Path) -> list[bytes]:
    return np.fromfile(root / MEMMAP, dtype="S120").tolist()


def counted_list(tmp_path: Path, artifact: Path) -> list[str]:
    params = gate_params(
        tmp_path,
        listed={"artifact": str(artifact), "kind": "path-list", "entry": "demo-flickr",
                "subset": "0.1k"},
    )  # fmt: skip
    return ["--params", str(params)]


def test_the_clean_memmap_list_passes_with_the_catalog_count(
    flickr_paths: list[bytes], tmp_path: Path
) -> None:
    artifact = memmap_copy(tmp_path, flickr_paths)
    result = check(artifact, tmp_path / "gate", *counted_list(tmp_path, artifact))
    assert result.exit_code == 0, result.output
    assert "(path-list, entries: 100): passed" in result.stdout


def test_a_short_list_fails_the_catalog_count(flickr_paths: list[bytes], tmp_path: Path) -> None:
    artifact = memmap_copy(tmp_path, flickr_paths[:-3])
    result = check(artifact, tmp_path / "gate", *counted_list(tmp_path, artifact))
    assert result.exit_code == 1, result.output
    assert "failed count:" in result.stdout and "observed: 97" in result.stdout


def test_a_duplicate_path_fails_unique(flickr_paths: list[bytes], tmp_path: Path) -> None:
    twice = flickr_paths[7]
    artifact = memmap_copy(tmp_path, [*flickr_paths[:-1], twice])
    result = check(artifact, tmp_path / "gate")
    assert_fails(result, "unique", twice.decode(), tmp_path / "gate")


def test_an_empty_entry_fails_not_empty(flickr_paths: list[bytes], tmp_path: Path) -> None:
    artifact = memmap_copy(tmp_path, [*flickr_paths[:50], b"", *flickr_paths[51:]])
    result = check(artifact, tmp_path / "gate")
    assert result.exit_code == 1, result.output
    assert "failed not_empty:" in result.stdout
    document = json.loads((tmp_path / "gate" / "result.json").read_text())
    (failed,) = [c for c in document["checks"] if c["check"] == "not_empty"]
    assert failed["unexpected_count"] == 1


def test_a_path_that_fills_its_field_fails_not_cut(
    flickr_paths: list[bytes], tmp_path: Path
) -> None:
    full = b"f/" + b"x" * 114 + b".jpg"
    assert len(full) == 120
    artifact = memmap_copy(tmp_path, [*flickr_paths[:-1], full])
    assert_fails(check(artifact, tmp_path / "gate"), "not_cut", full.decode(), tmp_path / "gate")


def test_an_overlong_line_of_a_text_list_fails_max_length(tmp_path: Path) -> None:
    long_path = "a/" + "b" * 5000 + ".jpg"
    artifact = tmp_path / "frames.txt"
    artifact.write_text(f"v/00001.jpg\n{long_path}\nv/00002.jpg\n")
    result = check(artifact, tmp_path / "gate")
    assert_fails(result, "max_length", long_path[:40], tmp_path / "gate")


def test_a_listed_frame_missing_from_the_shards_fails_present(root: Path, tmp_path: Path) -> None:
    source = root / FRAME_PATHS
    copy = tmp_path / "frame-paths"
    shutil.copytree(source, copy)
    paths = np.fromfile(copy / "paths.memmap", dtype="S120")
    paths[3] = b"demo-flythrough/99999.jpg"
    paths.tofile(copy / "paths.memmap")
    params = gate_params(
        tmp_path,
        frames={"artifact": str(copy), "checks": {"present": {"root": str(root / FRAMES)}}},
    )
    result = check(copy, tmp_path / "gate", "--params", str(params))
    assert_fails(result, "present", "demo-flythrough/99999.jpg", tmp_path / "gate")


# --- cannot run: exit 2, one line, nothing written -----------------------------------------


def test_a_missing_artifact_exits_2(tmp_path: Path) -> None:
    result = check(tmp_path / "nothing", tmp_path / "gate")
    assert result.exit_code == 2, result.output
    assert "nothing: no such file or folder" in result.stderr
    assert not (tmp_path / "gate").exists()


def test_a_shard_folder_without_its_index_exits_2(flickr: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(flickr, copy)
    (copy / INDEX_NAME).unlink()
    result = check(copy, tmp_path / "gate", "--kind", "images")
    assert result.exit_code == 2, result.output
    assert "no index.json" in result.stderr and "Traceback" not in result.output


def test_an_unknown_kind_exits_2_naming_the_kinds(flickr: Path, tmp_path: Path) -> None:
    result = check(flickr, tmp_path / "gate", "--kind", "imagez")
    assert result.exit_code == 2, result.output
    assert "no artifact kind 'imagez'; the kinds are:" in result.stderr


def test_an_unknown_check_in_params_names_the_file_and_line(flickr: Path, tmp_path: Path) -> None:
    params = gate_params(
        tmp_path, typo={"artifact": str(flickr), "checks": {"not_blak": {"min_mean": 3}}}
    )
    result = check(flickr, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 2, result.output
    assert f"{params}:5: gates.typo.checks.not_blak is not a setting" in result.stderr


def test_a_parameter_of_the_wrong_type_names_it(flickr: Path, tmp_path: Path) -> None:
    params = gate_params(
        tmp_path, typed={"artifact": str(flickr), "checks": {"not_black": {"min_mean": "dark"}}}
    )
    result = check(flickr, tmp_path / "gate", "--params", str(params))
    assert result.exit_code == 2, result.output
    assert "gates.typed.checks.not_black.min_mean is 'dark' but must be a number" in result.stderr


def test_an_unknown_check_in_the_catalog_names_the_entry_file_and_line(
    flickr: Path, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog"
    shutil.copytree(REPO / "catalog", catalog)
    entry = catalog / "datasets" / "demo-flickr.yaml"
    entry.write_text(entry.read_text() + "quality:\n  images:\n    too_dark: {min_mean: 3}\n")
    lines = entry.read_text().splitlines()
    params = gate_params(tmp_path, cat={"artifact": str(flickr), "entry": "demo-flickr"})
    result = check(flickr, tmp_path / "gate", "--params", str(params), "--catalog", str(catalog))
    assert result.exit_code == 2, result.output
    assert f"demo-flickr.yaml:{len(lines)}: quality.images.too_dark is not a setting" in (
        result.stderr
    )


def test_an_unknown_suite_names_the_known_gates(flickr: Path, tmp_path: Path) -> None:
    params = gate_params(tmp_path, one={"artifact": str(flickr)})
    result = check(flickr, tmp_path / "gate", "--params", str(params), "--suite", "two")
    assert result.exit_code == 2, result.output
    assert "no gate 'two' under 'gates' (known: one)" in result.stderr


def test_the_kinds_and_their_checks_are_listed() -> None:
    result = runner.invoke(app, ["check", "--list"])
    assert result.exit_code == 0, result.output
    for line in ("images:", "pairs:", "path-list:", "  not_black: max_bad_fraction=0.0"):
        assert line in result.stdout


def test_the_summary_gives_each_gates_last_result_in_one_line(flickr: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(flickr, copy)
    params = gate_params(
        tmp_path, ok={"artifact": str(copy)}, never={"artifact": str(tmp_path / "other")}
    )
    assert check(copy, copy.with_name("copy.gate"), "--params", str(params)).exit_code == 0
    result = runner.invoke(app, ["check", "--summary", "--params", str(params)])
    assert result.exit_code == 1, result.output
    assert result.stdout.strip() == "gates: 1 passed, 1 not run (never)"
