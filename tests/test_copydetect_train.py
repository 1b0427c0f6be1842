"""The copydetect-train stage on real photos: the samples and ground truth it writes, the
derived seeds, retried transforms, failed classes, killing and resuming, sharded runs and the
command line."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from stages.copydetect_train import default_conf, main
from vcat.cli import app
from vcat.copydetect import groundtruth, pool
from vcat.copydetect.generate import GenerateError, TooManyFailed
from vcat.copydetect.overlays import TEXT_CHARACTERS, AssetError, Face
from vcat.copydetect.seeds import copy_rng
from vcat.parts import PartsError, ShardSpec
from vcat.shards import ShardReader, unpack_shards

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")
FAST_POOL = ["hflip", "vflip", "grayscale", "pad_square", "blend", "stack", "text", "emoji"]


def write_sources(folder: Path, count: int) -> Path:
    """``count`` JPEGs T000000.jpg ... cut from scikit-image's photos, each a little different."""
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(5)
    for index in range(count):
        photo = Image.fromarray(np.asarray(getattr(data, PHOTOS[index % len(PHOTOS)])())[..., :3])
        size = (160 + 8 * index, 120 + 4 * (index % 3))
        pixels = np.asarray(photo.convert("RGB").resize(size), dtype=np.int16)
        noisy = np.clip(pixels + rng.integers(-4, 5, pixels.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"T{index:06d}.jpg", quality=90)
    return folder


def conf(**settings: object) -> dict[str, object]:
    """Small classes: every other image a class, the rest mixed in; 3 copies; 1 process."""
    base: dict[str, object] = {
        "select_every": 2,
        "mix_every": 2,
        "mix_offset": 1,
        "copies": 3,
        "jobs": 1,
        "shard_max_count": 5,
        "transforms": FAST_POOL,
        "k_min": 2,
        "k_max": 3,
    }
    return {**base, **settings}


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sources(tmp_path_factory.mktemp("sources") / "images", 8)


@pytest.fixture
def failing() -> Iterator[str]:
    """A transform that fails about half its attempts as AugLy's text rendering does."""

    def explode(image: np.ndarray, rng: np.random.Generator, context: pool.Context) -> np.ndarray:
        if rng.random() < 0.5:
            raise OSError("raster overflow")
        return image[::-1].copy()

    pool.register("explode")(explode)
    yield "explode"
    pool.unregister("explode")


@pytest.fixture
def always_failing() -> Iterator[str]:
    def broken(image: np.ndarray, rng: np.random.Generator, context: pool.Context) -> np.ndarray:
        raise OSError("raster overflow")

    pool.register("broken")(broken)
    yield "broken"
    pool.unregister("broken")


# --- the format ------------------------------------------------------------------------


def test_samples_ground_truth_and_the_guides_folder(sources: Path, tmp_path: Path) -> None:
    output = main(conf(), sources, tmp_path / "out", metrics=tmp_path / "metrics.json")
    # an independent reader: webdataset, in shard order
    shards = sorted(str(path) for path in output.glob("shard-*.tar"))
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    keys = [sample["__key__"] for sample in samples]
    assert keys == [f"{cls}_{copy}" for cls in range(4) for copy in range(4)]
    for sample in samples:
        image = Image.open(io.BytesIO(sample["jpg"]))
        assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (256, 256))
        record = json.loads(sample["json"])
        cls, copy = (int(part) for part in sample["__key__"].split("_"))
        assert (record["class"], record["copy"], record["reference"]) == (cls, copy, f"{cls}_0")
        assert record["source"] == f"T{2 * cls:06d}.jpg"  # every other image, from the first
        if copy:
            assert 2 <= len(record["transforms"]) <= 3
            assert len(set(record["transforms"])) == len(record["transforms"])
            assert set(record["transforms"]) <= set(FAST_POOL)
        else:
            assert record["transforms"] == []
    # the original is the source resized as the guide does it (bicubic), at quality 100
    with Image.open(sources / "T000002.jpg") as source:
        expected = np.asarray(source.convert("RGB").resize((256, 256), Image.Resampling.BICUBIC))
    original = np.asarray(Image.open(io.BytesIO(samples[4]["jpg"])), dtype=int)
    assert np.abs(original - expected).mean() < 1.5
    # DISC21's ground truth, read with the csv module: one row per copy
    with (output / "ground_truth.csv").open(newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == ["query_id", "reference_id"]
    assert rows[1:] == [[f"{c}_{j}", f"{c}_0"] for c in range(4) for j in range(1, 4)]
    assert groundtruth.read(output / "ground_truth.csv")[0] == ("0_1", "0_0")
    # unpacked, the guide's loader sees its flat folder: <cls>_<j>.jpg, class from the name
    unpack_shards(output, tmp_path / "flat")
    images = sorted((tmp_path / "flat").glob("*g"))
    assert len(images) == 16 and {int(path.name.split("_")[0]) for path in images} == set(range(4))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["classes"] == 4 and metrics["images"] == 16 and metrics["copies"] == 12
    assert metrics["retries"] == 0 and metrics["failed_classes"] == 0
    assert sum(metrics["transforms"].values()) == sum(
        len(json.loads(s["json"])["transforms"]) for s in samples
    )
    assert (output / "retries.tsv").read_text() == "image\tattempt\ttransform\terror\n"


def test_every_transform_of_the_guides_pool_makes_an_image(sources: Path) -> None:
    with Image.open(sources / "T000000.jpg") as source:
        image = np.asarray(source.convert("RGB"))
    other = image[::-1, ::-1].copy()
    context = pool.Context(256, lambda rng: other)
    assert len(pool.DEFAULT_POOL) == 24
    for name in pool.DEFAULT_POOL:
        for attempt in range(3):
            result = pool.apply(name, image, copy_rng(0, 1, 1, attempt), context)
            again = pool.apply(name, image, copy_rng(0, 1, 1, attempt), context)
            assert np.array_equal(result, again), name  # the generator decides everything
            assert result.dtype == np.uint8 and result.shape[2] == 3


def test_the_guides_pool_with_k_from_2_to_7(sources: Path, tmp_path: Path) -> None:
    settings = conf(transforms=default_conf["transforms"], k_min=2, k_max=7, copies=4)
    output = main(settings, sources, tmp_path / "out")
    with ShardReader(output) as reader:
        counts = {len(json.loads(sample["json"])["transforms"]) for _, sample in reader}
    assert counts <= {0, 2, 3, 4, 5, 6, 7} and len(counts) > 2


def test_grayscale_variant_and_a_fixed_k(sources: Path, tmp_path: Path) -> None:
    output = main(conf(grayscale=True, k_min=3, k_max=3), sources, tmp_path / "out")
    with ShardReader(output) as reader:
        for key, sample in reader:
            assert Image.open(io.BytesIO(sample["jpg"])).mode == "L"
            if not key.endswith("_0"):
                assert len(json.loads(sample["json"])["transforms"]) == 3


def test_font_and_emoji_folders(sources: Path, tmp_path: Path) -> None:
    import matplotlib

    fonts = tmp_path / "fonts"
    fonts.mkdir()
    shutil.copy(Path(matplotlib.get_data_path()) / "fonts/ttf/DejaVuSans.ttf", fonts)
    emoji = tmp_path / "emoji" / "smileys"
    emoji.mkdir(parents=True)
    Image.new("RGBA", (72, 72), (250, 200, 0, 255)).save(emoji / "sun.png")
    settings = conf(transforms=["text", "meme", "emoji"], k_min=3, k_max=3)
    with_assets = main(settings, sources, tmp_path / "a", fonts=fonts, emoji=emoji.parent)
    built_in = main(settings, sources, tmp_path / "b")
    assert digests(with_assets)["shard-000001.tar"] != digests(built_in)["shard-000001.tar"]
    # text is drawn only from the characters a font has glyphs for (AugLy's pickled lists
    # are not loaded; the glyphs are looked at)
    dejavu = Face(str(fonts / "DejaVuSans.ttf"))
    assert dejavu.characters() == TEXT_CHARACTERS
    symbols = Face(str(Path(matplotlib.get_data_path()) / "fonts/ttf/STIXSizFiveSymReg.ttf"))
    drawable = symbols.characters()
    assert 0 < len(drawable) < 10 and set(drawable) <= set(TEXT_CHARACTERS)
    assert symbols.characters("abc") == drawable  # no letters: what it has
    (tmp_path / "empty").mkdir()
    with pytest.raises(AssetError, match=r"empty: the font folder holds no \.ttf/\.otf file"):
        main(settings, sources, tmp_path / "c", fonts=tmp_path / "empty")


# --- determinism, retries and failures -------------------------------------------------------


def test_same_bytes_again_and_with_two_processes(sources: Path, tmp_path: Path) -> None:
    first = main(conf(), sources, tmp_path / "one")
    before = digests(first)
    main(conf(), sources, first)  # a finished folder: nothing changes
    assert digests(first) == before
    two = main(conf(jobs=2), sources, tmp_path / "two")
    assert digests(two) == before
    other_seed = main(conf(seed=1), sources, tmp_path / "seed")
    assert digests(other_seed)["shard-000001.tar"] != before["shard-000001.tar"]


def test_a_failing_transform_is_retried_with_the_next_attempts_seed(
    sources: Path, tmp_path: Path, failing: str
) -> None:
    settings = conf(transforms=[failing, "hflip", "grayscale"], k_min=2, k_max=2, copies=4)
    output = main(settings, sources, tmp_path / "out", metrics=tmp_path / "m.json")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["images"] == 4 * 5  # exactly the target count
    assert metrics["retries"] > 0 and metrics["retried_copies"] > 0
    lines = (output / "retries.tsv").read_text().splitlines()
    assert lines[0] == "image\tattempt\ttransform\terror"
    assert len(lines) - 1 == metrics["retries"]
    image, attempt, transform, error = lines[1].split("\t")
    assert transform == failing and error == "OSError: raster overflow"
    with ShardReader(output) as reader:
        record = json.loads(reader.read_member(image, "json"))
    assert record["attempt"] > int(attempt) and [int(attempt), failing, error] in record["retries"]
    # the retried copy is what its attempt's generator makes, as if the failure had not been
    rng = copy_rng(0, record["class"], record["copy"], record["attempt"])
    assert int(rng.integers(2, 3)) == 2


def test_a_copy_failing_every_attempt_fails_its_class(
    sources: Path, tmp_path: Path, always_failing: str
) -> None:
    settings = conf(transforms=[always_failing], k_min=1, k_max=1, max_attempts=3)
    with pytest.raises(TooManyFailed, match="1 classes failed, more than the 0 allowed"):
        main(settings, sources, tmp_path / "out")
    lines = (tmp_path / "out" / "failures.tsv").read_text().splitlines()
    assert lines == [
        "class\tsource\tfailure\treason",
        "0\tT000000.jpg\tattempts\tcopy 1: all 3 attempts failed; the last in broken: "
        "OSError: raster overflow",
    ]
    allowed = main({**settings, "max_failed_fraction": 1.0}, sources, tmp_path / "out")
    assert len(ShardReader(allowed)) == 0
    assert len((allowed / "failures.tsv").read_text().splitlines()) == 5


def test_an_unreadable_source_is_listed_and_the_other_classes_keep_their_numbers(
    sources: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(sources, folder)
    (folder / "T000002.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    with pytest.raises(TooManyFailed):
        main(conf(), folder, tmp_path / "out")
    output = main(conf(max_failed_fraction=0.25), folder, tmp_path / "out")
    failures = (output / "failures.tsv").read_text().splitlines()
    assert failures[1] == "1\tT000002.jpg\tunreadable\tOSError: Truncated File Read"
    assert [key for key in ShardReader(output).index.samples if key.endswith("_0")] == [
        "0_0",
        "2_0",
        "3_0",
    ]


def test_a_fifo_named_like_an_image_is_listed_not_skipped_or_waited_on(
    sources: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    shutil.copytree(sources, folder)
    (folder / "T000002.jpg").unlink()
    os.mkfifo(folder / "T000002.jpg")
    output = main(conf(max_failed_fraction=0.25), folder, tmp_path / "out")
    failures = (output / "failures.tsv").read_text().splitlines()
    assert failures[1].startswith("1\tT000002.jpg\tunreadable\t")
    assert "FIFO" in failures[1]


# --- kill and resume -------------------------------------------------------------------------


def explode_slowly(
    image: np.ndarray, rng: np.random.Generator, context: pool.Context
) -> np.ndarray:
    """Fails about half its attempts, and slowly enough that a run can be killed half-way."""
    time.sleep(0.02)
    if rng.random() < 0.5:
        raise OSError("raster overflow")
    return np.ascontiguousarray(image[:, ::-1])


RUNNER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv.pop(1))
    from tests.test_copydetect_train import explode_slowly
    from vcat.copydetect import pool
    pool.register("explode")(explode_slowly)
    from vcat.cli import app
    app(["stage", "copydetect-train", *sys.argv[1:]])
    """
)
KILL_SETTINGS = {
    "select_every": 2,
    "mix_every": 2,
    "mix_offset": 1,
    "copies": 4,
    "jobs": 2,
    "shard_max_count": 7,
    "transforms": ["explode", "hflip", "blend", "grayscale"],
    "k_min": 2,
    "k_max": 3,
}


@pytest.mark.slow  # a fresh interpreter imports albumentations (and torch) before it starts
def test_a_killed_run_with_failing_transforms_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    images = write_sources(tmp_path / "images", 16)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"copydetect-train": KILL_SETTINGS}))  # JSON is YAML
    root = Path(__file__).resolve().parents[1]
    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, str(runner), str(root), str(images), str(killed), "--params", str(params)]
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "shard-000002.tar").exists():
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (killed / "index.json").exists(), "not killed mid-run"
    pool.register("explode")(explode_slowly)
    try:
        main(KILL_SETTINGS, images, killed, metrics=tmp_path / "m.json")
        main({**KILL_SETTINGS, "jobs": 1}, images, tmp_path / "whole")
    finally:
        pool.unregister("explode")
    assert digests(killed) == digests(tmp_path / "whole")
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["images"] == 8 * 5 and metrics["retries"] > 0
    assert not (killed / ".shards-progress.jsonl").exists()


def test_files_cut_by_a_kill_are_made_again(sources: Path, tmp_path: Path) -> None:
    whole = main(conf(), sources, tmp_path / "whole")
    cut = tmp_path / "cut"
    shutil.copytree(whole, cut)
    (cut / "index.json").unlink()
    (cut / "shard-000002.tar").unlink()
    (cut / "ground_truth.csv").write_text("query_id,refer")
    (cut / "failures.tsv").write_text("class\tsource\tfailure\treason\n3\tT0")
    main(conf(), sources, cut)
    assert digests(cut) == digests(whole)


# --- sharded runs ----------------------------------------------------------------------------


@pytest.mark.parametrize("count", [1, 2, 3, 6])
def test_merged_parts_equal_the_single_run(sources: Path, tmp_path: Path, count: int) -> None:
    single = main(conf(), sources, tmp_path / "single", metrics=tmp_path / "single.json")
    output = tmp_path / "merged"
    for index in range(count):
        main(conf(), sources, output, spec=ShardSpec(index, count))
    if count == 2:  # a part made with other settings is refused
        main(conf(seed=3), sources, output, spec=ShardSpec(1, 2))
        with pytest.raises(PartsError, match="00001-of-00002 was made from other sources"):
            main(conf(), sources, output, merge=count)
        main(conf(), sources, output, spec=ShardSpec(1, 2))
    main(conf(), sources, output, merge=count, metrics=tmp_path / "merged.json")
    assert digests(output) == digests(single)
    assert (tmp_path / "merged.json").read_bytes() == (tmp_path / "single.json").read_bytes()
    assert not output.with_name("merged.parts").exists()


def test_merge_names_the_missing_parts(sources: Path, tmp_path: Path) -> None:
    main(conf(), sources, tmp_path / "out", spec=ShardSpec(0, 3))
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"copydetect-train": conf()}))
    command = ["stage", "copydetect-train", str(sources), str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*command, "--merge", "3", "--params", str(params)])
    assert result.exit_code == 2
    assert "part(s) 1, 2 of 3 are not finished" in " ".join(result.output.split())


# --- edge cases and errors -------------------------------------------------------------------


def test_no_source_and_one_source(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    empty = main(conf(), tmp_path / "none", tmp_path / "empty", metrics=tmp_path / "m.json")
    assert len(ShardReader(empty)) == 0
    assert (empty / "ground_truth.csv").read_text() == "query_id,reference_id\n"
    assert json.loads((tmp_path / "m.json").read_text())["images"] == 0
    one = write_sources(tmp_path / "one", 1)
    output = main(conf(select_every=1, mix_every=1, mix_offset=0), one, tmp_path / "single")
    assert ShardReader(output).keys() == ["0_0", "0_1", "0_2", "0_3"]


def test_settings_that_cannot_work(sources: Path, tmp_path: Path) -> None:
    with pytest.raises(GenerateError, match="no transform called 'sparkle'"):
        main(conf(transforms=["hflip", "sparkle"]), sources, tmp_path / "a")
    with pytest.raises(GenerateError, match=r"k_min <= k_max <= 2"):
        main(conf(transforms=["hflip", "vflip"], k_min=2, k_max=3), sources, tmp_path / "b")
    with pytest.raises(GenerateError, match="blend, stack need other images"):
        main(conf(mix_every=100, mix_offset=50), sources, tmp_path / "c")


def test_command_line(sources: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "copydetect-train:\n  entries: [demo-copydetect]\n  select_every: 4\n  mix_every: 4\n"
        "  mix_offset: 1\n  copies: 1\n  transforms: [hflip, vflip]\n  k_min: 1\n  k_max: 2\n"
        "  jobs: 1\n"
    )
    runner = CliRunner()
    stage = ["stage", "copydetect-train", str(sources)]
    result = runner.invoke(app, [*stage, str(tmp_path / "out"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert ShardReader(tmp_path / "out").keys() == ["0_0", "0_1", "1_0", "1_1"]
    params.write_text("copydetect-train:\n  copies: 1\n  sparkles: 3\n")
    result = runner.invoke(app, [*stage, str(tmp_path / "bad"), "--params", str(params)])
    assert result.exit_code == 2
    assert f"{params}:3: copydetect-train.sparkles is not a setting" in result.output
    params.write_text("copydetect-train:\n  transforms: [hflip, sparkle]\n")
    result = runner.invoke(app, [*stage, str(tmp_path / "bad"), "--params", str(params)])
    assert result.exit_code == 2 and "no transform called 'sparkle'" in result.output
    result = runner.invoke(app, [*stage, str(tmp_path / "bad"), "--shard", "3/2"])
    assert result.exit_code == 2 and "does not exist" in result.output
    help_text = runner.invoke(app, ["stage", "copydetect-train", "--help"])
    assert help_text.exit_code == 0 and "DISC21-style" in help_text.output


def test_ground_truth_reader_takes_distractors_and_names_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "ground_truth.csv"
    path.write_text("query_id,reference_id\nQ00000,R000012\nQ00001,\n")
    assert groundtruth.read(path) == [("Q00000", "R000012"), ("Q00001", None)]
    assert groundtruth.dumps(groundtruth.read(path)) == path.read_text()
    bad = {
        "query,reference\nQ0,R0\n": r"ground_truth\.csv:1: the header must be query_id,",
        "query_id,reference_id\nQ0,R0\nQ0,R1\n": r"ground_truth\.csv:3: query 'Q0' has a row",
        "query_id,reference_id\nQ0,R0,x\n": r"ground_truth\.csv:2: expected 2 fields",
        "": r"ground_truth\.csv:1: the file is empty",
    }
    for text, message in bad.items():
        path.write_text(text)
        with pytest.raises(groundtruth.GroundTruthError, match=message):
            groundtruth.read(path)
