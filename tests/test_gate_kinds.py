"""The frames, copydetect and overlap gate kinds on copies of the demo's real artifacts.

Each clean copy passes ``vcat check``; each corrupted copy (corrupted the way a faulty
producer would write it: shards re-packed with the shard writer, matrices written with the
overlap stage's own writer) fails it with exit 1, the summary naming the check and the item,
and ``bad-items.tsv`` listing the item. The artifacts are those of the ``demo_root``
fixture (this checkout after ``dvc repro``, else a copy built once). One process runs every
check (great-expectations is imported once).
"""

from __future__ import annotations

import csv
import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vcat.cli import app
from vcat.gates.profile import detect_kind
from vcat.gates.report import BAD_ITEMS_NAME
from vcat.geometry.overlap import overlap_bytes
from vcat.shards import INDEX_NAME, ShardIndex, ShardReader, ShardWriter

FRAMES = Path("data/prepared/video-frames/demo-video")
VIDEOS = Path("data/sources/demo-video/videos")  # what the frames were made from
COPYDETECT = Path("data/prepared/copydetect-train/demo-copydetect")
OVERLAP = Path("data/prepared/overlap/demo-megadepth")
LOCUS = Path("data/prepared/locus-precompute/demo-matterport")
VIDEO = "demo-flythrough"

runner = CliRunner()

Samples = dict[str, dict[str, bytes]]


def demo_copy(root: Path, relative: Path, tmp_path: Path) -> Path:
    """A copy in ``tmp_path`` of the demo artifact ``relative`` to the project ``root``."""
    source = root / relative
    if not source.exists():
        pytest.fail(
            f"{source} is missing: run `vcat demo build && dvc repro` (a built copy has what "
            "tests/demo_artifacts.py lists in PREPARED)"
        )
    target = tmp_path / source.name
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)
    return target


def gate_params(tmp_path: Path, artifact: Path, checks: dict | None = None) -> Path:
    """A params file declaring the gate ``g`` for ``artifact`` (JSON is YAML)."""
    params = tmp_path / "params.yaml"
    gate = {"artifact": str(artifact), "checks": checks or {}}
    params.write_text(json.dumps({"gates": {"g": gate}}) + "\n")
    return params


def check(artifact: Path, params: Path, *extra: str) -> tuple[int, str]:
    args = ["check", str(artifact), "--params", str(params), "--workers", "1", *extra]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def bad_items(artifact: Path) -> list[tuple[str, str, str]]:
    text = (artifact.with_name(artifact.name + ".gate") / BAD_ITEMS_NAME).read_text()
    return [tuple(line.split("\t")) for line in text.splitlines()[1:]]  # type: ignore[misc]


def assert_fails(artifact: Path, params: Path, wanted_check: str, table: str, *items: str) -> None:
    """The gate fails, its summary names ``wanted_check`` and each of ``items``, and
    ``bad-items.tsv`` lists each item of ``table`` under that check."""
    code, output = check(artifact, params)
    assert code == 1, output
    assert f"failed {wanted_check}:" in output, output
    listed = {(row[0], row[1]): row[2].split(",") for row in bad_items(artifact)}
    for item in items:
        assert item in output, output
        assert wanted_check in listed[(table, item)], listed


def repack(folder: Path, change: Callable[[Samples], Samples]) -> None:
    """The shards of ``folder`` written again by the shard writer, with ``change`` applied to
    the samples (in order), and the same limits."""
    index = ShardIndex.load(folder / INDEX_NAME)
    with ShardReader(folder) as reader:
        samples = {key: dict(members) for key, members in reader}
    for path in folder.glob("shard-*.tar"):
        path.unlink()
    (folder / INDEX_NAME).unlink()
    with ShardWriter(folder, max_count=index.max_count, max_bytes=index.max_bytes) as writer:
        for key, members in change(samples).items():
            writer.add(key, members)


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# --- frames ---------------------------------------------------------------------------------


@pytest.fixture
def frames(demo_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    artifact = demo_copy(demo_root, FRAMES, tmp_path)
    return artifact, gate_params(
        tmp_path, artifact, {"frames_match_duration": {"videos": str(demo_root / VIDEOS)}}
    )


def test_frames_clean_passes_with_the_source_durations(frames: tuple[Path, Path]) -> None:
    artifact, params = frames
    assert detect_kind(artifact).name == "frames"
    code, output = check(artifact, params)
    assert code == 0, output
    result = json.loads((artifact.with_name("demo-video.gate") / "result.json").read_text())
    assert result["kind"] == "frames"
    assert result["rows"]["videos"] == 1
    assert result["facts"]["duration_from"] == "source videos"
    assert bad_items(artifact) == []


def test_frames_a_frame_missing_from_the_shards(frames: tuple[Path, Path]) -> None:
    artifact, params = frames
    repack(artifact, lambda s: {k: v for k, v in s.items() if k != f"{VIDEO}/00030"})
    assert_fails(artifact, params, "lists_agree", "videos", VIDEO)
    result = json.loads((artifact.with_name("demo-video.gate") / "result.json").read_text())
    assert result["facts"]["disagreements"] == {VIDEO: "the shards hold 59 frame(s), the record 60"}


def test_frames_a_video_list_count_off_by_two(frames: tuple[Path, Path]) -> None:
    artifact, params = frames
    (artifact / "video_list.txt").write_text(f"{VIDEO} 62\n")
    assert_fails(artifact, params, "lists_agree", "videos", VIDEO)


def test_frames_a_black_frame(frames: tuple[Path, Path]) -> None:
    artifact, params = frames
    key = f"{VIDEO}/00010"

    def blacken(samples: Samples) -> Samples:
        size = Image.open(io.BytesIO(samples[key]["jpg"])).size
        samples[key] = {"jpg": jpeg(Image.new("RGB", size))}
        return samples

    repack(artifact, blacken)
    assert_fails(artifact, params, "not_black", "images", f"{key}.jpg")


def test_frames_a_cut_tail_against_the_source_duration(frames: tuple[Path, Path]) -> None:
    """Shards and lists agree on 55 frames, but the 6 s source at 10 fps gives 60."""
    artifact, params = frames
    kept = 55
    repack(artifact, lambda s: {k: v for k, v in s.items() if int(k[-5:]) <= kept})
    record = json.loads((artifact / "videos.jsonl").read_text())
    record["frames"], record["times_ms"] = kept, record["times_ms"][:kept]
    (artifact / "videos.jsonl").write_text(json.dumps(record, separators=(",", ":")) + "\n")
    (artifact / "video_list.txt").write_text(f"{VIDEO} {kept}\n")
    lines = (artifact / "frame_list.txt").read_text().splitlines()[:kept]
    (artifact / "frame_list.txt").write_text("".join(f"{line}\n" for line in lines))
    assert_fails(artifact, params, "frames_match_duration", "videos", VIDEO)
    result = json.loads((artifact.with_name("demo-video.gate") / "result.json").read_text())
    assert [c["check"] for c in result["checks"] if not c["success"]] == ["frames_match_duration"]


def test_frames_a_failed_video_is_no_disagreement(frames: tuple[Path, Path]) -> None:
    """A video the stage recorded as failed has no frames and no list lines: that agrees (the
    stage's own threshold judged it); frames of a video without a record do not."""
    artifact, params = frames
    failed = {"video": "cut.mp4", "frame_dir": "cut", "failure": "decode_error", "message": "x"}
    with (artifact / "videos.jsonl").open("a") as records:
        records.write(json.dumps(failed, separators=(",", ":")) + "\n")
    code, output = check(artifact, params)
    assert code == 0, output
    with (artifact / "frame_list.txt").open("a") as lines:
        lines.write("stray/00001.jpg\n")
    assert_fails(artifact, params, "lists_agree", "videos", "stray")


def test_frames_without_records_cannot_run(frames: tuple[Path, Path]) -> None:
    artifact, params = frames
    (artifact / "videos.jsonl").unlink()
    code, output = check(artifact, params, "--kind", "frames")
    assert code == 2
    assert "videos.jsonl" in output and "run it again" in output


# --- copydetect -----------------------------------------------------------------------------


@pytest.fixture
def copydetect(demo_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    artifact = demo_copy(demo_root, COPYDETECT, tmp_path)
    # the demo's catalog entry allows these: augmented copies come out dark or flat on purpose
    allowed = {"not_black": {"max_bad_fraction": 0.01}, "not_blank": {"max_bad_fraction": 0.01}}
    return artifact, gate_params(tmp_path, artifact, allowed)


def ground_truth_append(artifact: Path, line: str) -> int:
    path = artifact / "ground_truth.csv"
    text = path.read_text()
    path.write_text(text + line + "\n")
    return text.count("\n") + 1


def test_copydetect_clean_passes(copydetect: tuple[Path, Path]) -> None:
    artifact, params = copydetect
    assert detect_kind(artifact).name == "copydetect"
    code, output = check(artifact, params)
    assert code == 0, output
    result = json.loads((artifact.with_name(artifact.name + ".gate") / "result.json").read_text())
    assert result["facts"]["copies_expected"] == 19  # the recipe's copies, besides <cls>_0
    assert result["rows"]["classes"] == 30
    assert result["rows"]["ground_truth"] == 570
    # ``equal`` declared for the gate overrides the recipe's count (the "exactly 20")
    allowed = {"not_black": {"max_bad_fraction": 0.01}, "not_blank": {"max_bad_fraction": 0.01}}
    twenty = gate_params(artifact.parent, artifact, {**allowed, "copies_per_class": {"equal": 20}})
    code, output = check(artifact, twenty)
    assert code == 1
    assert "failed copies_per_class: every class has the augmented copies declared" in output
    assert "(equal: 20;" in output


def test_copydetect_a_class_with_one_copy_fewer(copydetect: tuple[Path, Path]) -> None:
    """Class 3 has 19 images instead of 20 (18 copies besides its reference); its ground
    truth line goes too, so only the count is wrong."""
    artifact, params = copydetect
    repack(artifact, lambda s: {k: v for k, v in s.items() if k != "3_7"})
    path = artifact / "ground_truth.csv"
    path.write_text(
        "".join(f"{line}\n" for line in path.read_text().splitlines() if line != "3_7,3_0")
    )
    assert_fails(artifact, params, "copies_per_class", "classes", "3")


def test_copydetect_ground_truth_faults(copydetect: tuple[Path, Path]) -> None:
    """Three faults in one file, each its own item: a line naming images that do not exist,
    a line given twice (the second is the bad one), a copy without a line."""
    artifact, params = copydetect
    path = artifact / "ground_truth.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    path.write_text("".join(",".join(row) + "\n" for row in rows if row != ["5_4", "5_0"]))
    missing = ground_truth_append(artifact, "99_1,99_0")
    twice = ground_truth_append(artifact, "0_1,0_0")
    items = [f"ground_truth.csv:{missing} 99_1,99_0", f"ground_truth.csv:{twice} 0_1,0_0"]
    assert_fails(artifact, params, "ground_truth_complete", "ground_truth", *items, "5_4 (no line)")
    bad = {row[1] for row in bad_items(artifact) if row[0] == "ground_truth"}
    assert bad == {*items, "5_4 (no line)"}
    assert "ground_truth.csv:2 0_1,0_0" not in bad


# --- overlap --------------------------------------------------------------------------------


@pytest.fixture
def overlap(demo_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    artifact = demo_copy(demo_root, OVERLAP, tmp_path)
    return artifact, gate_params(tmp_path, artifact)


def rewrite_scene(
    path: Path, change: Callable[[list[str], np.ndarray], tuple[list[str], np.ndarray]]
) -> None:
    with np.load(path) as data:
        names = [str(name) for name in data["names"]]
        matrix, valid = np.array(data["overlap"]), np.array(data["valid"])
    names, matrix = change(names, matrix)
    path.write_bytes(overlap_bytes(names, matrix, valid[: len(names)]))


def set_entry(row: int, col: int, value: float) -> Callable:
    def change(names: list[str], matrix: np.ndarray) -> tuple[list[str], np.ndarray]:
        matrix[row, col] = value
        return names, matrix

    return change


def test_overlap_clean_passes_folder_and_single_file(
    overlap: tuple[Path, Path], tmp_path: Path
) -> None:
    artifact, params = overlap
    assert detect_kind(artifact).name == "overlap"
    assert check(artifact, params, "--max-items", "3")[0] == 0
    result = json.loads((artifact.with_name(artifact.name + ".gate") / "result.json").read_text())
    assert result["rows"]["matrices"] == 4 and result["facts"]["source"] == "megadepth"
    single = artifact / "demo01.npz"
    assert detect_kind(single).name == "overlap"
    code, output = check(single, params, "--out", str(tmp_path / "single.gate"))
    assert code == 0, output


@pytest.mark.parametrize(
    ("change", "wanted"),
    [
        (set_entry(3, 5, np.nan), "finite"),
        (set_entry(3, 5, np.inf), "finite"),
        (set_entry(2, 7, 1.5), "in_unit_range"),
        (set_entry(4, 4, 0.5), "unit_diagonal"),
        (lambda names, matrix: (names[:-1], matrix[:-1]), "square"),
        (lambda names, matrix: ([*names[:-1], names[0]], matrix), "order_matches"),
    ],
    ids=["nan", "inf", "value-1.5", "diagonal-0.5", "not-square", "name-twice"],
)
def test_overlap_corrupted_matrix(
    overlap: tuple[Path, Path], change: Callable, wanted: str
) -> None:
    artifact, params = overlap
    rewrite_scene(artifact / "demo02.npz", change)
    assert_fails(artifact, params, wanted, "matrices", "demo02.npz")


def test_overlap_names_not_matching_the_rows(overlap: tuple[Path, Path]) -> None:
    """Names dropped after the matrix was made: the order no longer matches the rows."""
    artifact, params = overlap
    path = artifact / "demo03.npz"
    with np.load(path) as data:
        arrays = {key: np.array(data[key]) for key in data.files}
    arrays["names"] = arrays["names"][:-2]
    np.savez(path, **arrays)
    assert_fails(artifact, params, "order_matches", "matrices", "demo03.npz")


def test_overlap_unreadable_file(overlap: tuple[Path, Path]) -> None:
    artifact, params = overlap
    (artifact / "demo04.npz").write_bytes(b"cut")
    assert_fails(artifact, params, "readable", "matrices", "demo04.npz")


def test_locus_precompute_order_names_an_image_not_kept(demo_root: Path, tmp_path: Path) -> None:
    artifact = demo_copy(demo_root, LOCUS, tmp_path)
    params = gate_params(tmp_path, artifact)
    assert detect_kind(artifact).name == "overlap"
    assert check(artifact, params)[0] == 0
    key = "vcatDemoRm1/img_overlaps"

    def rename(samples: Samples) -> Samples:
        names = samples[key]["order.txt"].decode().splitlines()
        names[3] = "not-a-kept-image.jpg"
        samples[key]["order.txt"] = "".join(f"{name}\n" for name in names).encode()
        return samples

    repack(artifact, rename)
    assert_fails(artifact, params, "order_matches", "matrices", f"{key}.npy")


def test_list_names_the_new_kinds() -> None:
    result = runner.invoke(app, ["check", "--list"])
    assert result.exit_code == 0
    for name in ("frames_match_duration", "lists_agree", "copies_per_class", "unit_diagonal"):
        assert name in result.output


@pytest.mark.parametrize(
    ("source", "kind", "spoil", "message"),
    [
        (
            FRAMES,
            "frames",
            lambda a: (a / "video_list.txt").write_text(f"{VIDEO}\n"),
            "video_list.txt:1: not '<frame dir> <frame count>'",
        ),
        (
            COPYDETECT,
            "copydetect",
            lambda a: (a / "ground_truth.csv").write_text("query,reference\n"),
            "ground_truth.csv:1: the header must be query_id,reference_id",
        ),
        (
            FRAMES,
            "overlap",
            lambda a: None,
            "a shard folder without <scan>/img_overlaps samples",
        ),
        (
            OVERLAP,
            "frames",
            lambda a: None,
            "not a finished folder of the video-frames stage",
        ),
    ],
    ids=[
        "frames-video-list-line",
        "copydetect-header",
        "overlap-on-frame-shards",
        "frames-on-overlap-folder",
    ],
)
def test_malformed_input_cannot_run(
    demo_root: Path,
    tmp_path: Path,
    source: Path,
    kind: str,
    spoil: Callable[[Path], object],
    message: str,
) -> None:
    artifact = demo_copy(demo_root, source, tmp_path)
    spoil(artifact)
    code, output = check(artifact, gate_params(tmp_path, artifact), "--kind", kind)
    assert code == 2, output
    assert message in " ".join(output.split()), output
