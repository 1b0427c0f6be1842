"""The vsc-train stage on real H.264 videos: middle frames augmented as classes, the positive
pairs along the ground-truth segments, sharded runs and the errors of a bad ground truth."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stages.video_frames import main as extract_frames
from stages.vsc_train import main
from vcat.cli import app
from vcat.copydetect.vsc import Segment, SegmentError, read_segments, segment_pairs
from vcat.parts import ShardSpec
from vcat.shards import ShardReader
from vcat.video.frames import VideoFrames

RATE = 10


def write_video(path: Path, seconds: int, shade: int) -> Path:
    """An H.264 video of ``seconds`` at 10 fps; frame i is a flat grey of ``shade + i`` with
    a bright bar whose width tells the second, so a frame says where it comes from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv420p"
        for index in range(seconds * RATE):
            pixels = np.full((64, 96, 3), shade + index, np.uint8)
            pixels[:8, : 8 * (index // RATE + 1)] = 250
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def second_shown(jpeg: bytes) -> int:
    """Which second of a test video a frame shows (from the width of its bar)."""
    bar = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))[3]
    return int((bar > 200).sum() // 8) - 1


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


GROUND_TRUTH = (
    "query_id,ref_id,query_start,query_end,ref_start,ref_end\n"
    "Q100001,R200001,0.5,4.0,1.0,8.0\n"  # the reference runs twice as fast
    "Q100002,R200003,0.0,2.0,3.0,5.0\n"
    "Q100002,R200009,1.0,3.0,0.0,2.0\n"  # a reference without frames
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vsc")
    for number, seconds in ((1, 9), (2, 6), (3, 7)):
        write_video(root / "reference" / f"R20000{number}.mp4", seconds, 20 * number)
    for number in (1, 2):
        write_video(root / "query" / f"Q10000{number}.mp4", 5, 100 + 10 * number)
    settings = {"fps": 1.0, "jobs": 1}
    references = extract_frames(settings, root / "reference", root / "reference-frames")
    queries = extract_frames(settings, root / "query", root / "query-frames")
    truth = root / "train_matching_ground_truth.csv"
    truth.write_text(GROUND_TRUTH)
    return {"references": references, "queries": queries, "truth": truth, "root": root}


def conf(**settings: object) -> dict[str, object]:
    base: dict[str, object] = {
        "copies": 2,
        "jobs": 1,
        "shard_max_count": 4,
        "transforms": ["hflip", "grayscale", "blend", "stack", "text"],
    }
    return {**base, **settings}


def test_middle_frames_become_classes_and_pairs_follow_the_segments(
    world: dict[str, Path], tmp_path: Path
) -> None:
    output = main(
        conf(),
        world["references"],
        world["truth"],
        tmp_path / "out",
        metrics=tmp_path / "m.json",
        queries=world["queries"],
    )
    with ShardReader(output) as reader:
        assert reader.keys() == [f"{c}_{j}" for c in range(3) for j in range(3)]
        records = [json.loads(reader.read_member(f"{c}_0", "json")) for c in range(3)]
        # the middle of n one-per-second frames is the n // 2-th: seconds 4, 3 and 3
        assert [record["source"] for record in records] == [
            "R200001/00005",
            "R200002/00004",
            "R200003/00004",
        ]
        with VideoFrames(world["references"]) as frames:
            middle = frames.frame("R200001", 5)
        assert second_shown(middle) == 4
        copy = json.loads(reader.read_member("2_1", "json"))
        assert len(copy["transforms"]) == 3  # the guide's VSC set: exactly three
    with (output / "pairs.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert [(r["query_time"], r["ref_time"]) for r in rows[:3]] == [
        ("1.500", "3.000"),
        ("2.500", "5.000"),
        ("3.500", "7.000"),
    ]
    assert [(r["query_frame"], r["ref_frame"]) for r in rows[:3]] == [
        ("2", "4"),
        ("3", "6"),
        ("4", "8"),
    ]
    assert [(r["query_id"], r["ref_id"], r["ref_frame"]) for r in rows[3:]] == [
        ("Q100002", "R200003", "5"),
        ("Q100002", "R200009", ""),
    ]
    assert [r["pair"] for r in rows] == ["0", "1", "2", "3", "4"]
    # the frame a pair names shows the time it names
    with VideoFrames(world["references"]) as frames:
        assert second_shown(frames.frame("R200001", 6)) == 5
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["pairs"] == 5 and metrics["pairs_without_frames"] == 1
    assert metrics["classes"] == 3 and metrics["images"] == 9 and metrics["segments"] == 3


def test_pairs_every_second_as_the_guide_samples_them() -> None:
    segment = Segment(2, "Q", "R", 10.0, 13.0, 100.0, 101.5)
    pairs = segment_pairs(segment)
    assert [(p.query_time, p.ref_time) for p in pairs] == [(11.0, 100.5), (12.0, 101.0)]
    assert segment_pairs(Segment(2, "Q", "R", 0.0, 1.0, 0.0, 1.0)) == []


def test_idempotent_and_merged_parts_equal_the_single_run(
    world: dict[str, Path], tmp_path: Path
) -> None:
    single = main(conf(), world["references"], world["truth"], tmp_path / "single")
    before = digests(single)
    main(conf(), world["references"], world["truth"], single)
    assert digests(single) == before
    merged = tmp_path / "merged"
    for index in range(2):
        main(conf(), world["references"], world["truth"], merged, spec=ShardSpec(index, 2))
    main(conf(), world["references"], world["truth"], merged, merge=2)
    assert digests(merged) == before


def test_other_images_to_blend_with(world: dict[str, Path], tmp_path: Path) -> None:
    others = tmp_path / "disc21"
    others.mkdir()
    for index in range(4):
        Image.new("RGB", (80, 60), (60 * index, 200, 30)).save(others / f"T{index:06d}.jpg")
    settings = conf(transforms=["blend"], k_min=1, k_max=1, mix_every=2, mix_offset=1)
    output = main(settings, world["references"], world["truth"], tmp_path / "out", others=others)
    assert len(ShardReader(output)) == 9


def test_an_empty_ground_truth_gives_no_pairs(world: dict[str, Path], tmp_path: Path) -> None:
    truth = tmp_path / "gt.csv"
    truth.write_text("query_id,ref_id,query_start,query_end,ref_start,ref_end\n")
    output = main(conf(copies=0), world["references"], truth, tmp_path / "out")
    assert (output / "pairs.csv").read_text().splitlines() == [
        "pair,query_id,query_time,ref_id,ref_time,query_frame,ref_frame"
    ]
    assert ShardReader(output).keys() == ["0_0", "1_0", "2_0"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("query_id,ref_id,query_start\nQ1,R1,0\n", r"gt\.csv:1: the header lacks query_end"),
        (
            "query_id,ref_id,query_start,query_end,ref_start,ref_end\nQ1,R1,0,1,0,1\n"
            "Q2,R2,zero,1,0,1\n",
            r"gt\.csv:3: query_start is 'zero', not a number of seconds",
        ),
        (
            "query_id,ref_id,query_start,query_end,ref_start,ref_end\nQ1,R1,4,4,0,1\n",
            r"gt\.csv:2: a segment must end after it starts",
        ),
    ],
)
def test_a_bad_ground_truth_names_its_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "gt.csv"
    path.write_text(text)
    with pytest.raises(SegmentError, match=message):
        read_segments(path)


def test_command_line(world: dict[str, Path], tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"vsc-train": conf()}))
    command = ["stage", "vsc-train", str(world["references"]), str(world["truth"])]
    runner = CliRunner()
    result = runner.invoke(app, [*command, str(tmp_path / "out"), "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "pairs.csv").is_file()
    bad = tmp_path / "bad.csv"
    bad.write_text("query_id,ref_id\n")
    result = runner.invoke(
        app, ["stage", "vsc-train", str(world["references"]), str(bad), str(tmp_path / "b")]
    )
    assert result.exit_code == 2 and "bad.csv:1: the header lacks query_start" in result.output
    not_frames = tmp_path / "empty"
    not_frames.mkdir()
    result = runner.invoke(
        app, ["stage", "vsc-train", str(not_frames), str(world["truth"]), str(tmp_path / "c")]
    )
    assert result.exit_code == 2 and "not a finished video-frames output" in result.output
