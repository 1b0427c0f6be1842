"""The video-frames stage on real H.264 videos: which frames are kept, names, lists, failures,
resuming, sharded runs and the reader."""

from __future__ import annotations

import hashlib
import io
import math
import os
import signal
import struct
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from subprocess import PIPE

import av
import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from stages.video_frames import ListError, TooManyFailed, main, merge
from tests.process_tree import children, command_line, kill_worker_and_read_error
from vcat.cli import app
from vcat.parts import ShardSpec, part_folder
from vcat.shards import ShardReader, unpack_shards
from vcat.video.decode import kept_positions, output_size
from vcat.video.frames import VideoFrames, middle_frame, per_second
from vcat.video.naming import (
    FFMPEG_PATTERN,
    PYTHON_PATTERN,
    frame_dir,
    frame_key,
    frame_path,
    parse_frame_key,
)

FIRST_LEVEL, STEP = 16, 4  # frame i of a test video is a flat grey of 16 + 4 i


def level(index: int) -> int:
    return FIRST_LEVEL + STEP * index


def write_video(
    path: Path,
    count: int,
    rate: int = 30,
    size: tuple[int, int] = (64, 48),
    pts_ms: list[int] | None = None,
    faststart: bool = False,
) -> Path:
    """An H.264 video whose frame i is a flat grey of ``level(i)`` (timestamps ``pts_ms``
    when given, else ``rate`` per second)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        if pts_ms is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        for index in range(count):
            pixels = np.full((size[1], size[0], 3), level(index), np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[index], Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def source_index(jpeg: bytes) -> int:
    """Which frame of a test video a kept JPEG shows."""
    grey = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"), dtype=float)
    return round((grey.mean() - FIRST_LEVEL) / STEP)


def digests(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def conf(**settings: object) -> dict[str, object]:
    return {"jobs": 1, "shard_max_count": 8, **settings}


def wds_samples(folder: Path) -> dict[str, bytes]:
    """Every sample's JPEG as webdataset itself reads the shards."""
    urls = [str(path) for path in sorted(folder.glob("shard-*.tar"))]
    if not urls:
        return {}
    return {sample["__key__"]: sample["jpg"] for sample in wds.WebDataset(urls, shardshuffle=False)}


# --- the grid rule and the size rule -------------------------------------------------------


def test_grid_keeps_the_first_frame_at_or_after_each_grid_point() -> None:
    def at(rate: int, count: int) -> list[Fraction]:
        return [Fraction(i, rate) for i in range(count)]

    ten = Fraction(10)
    assert kept_positions(at(30, 30), ten) == list(range(0, 30, 3))
    assert kept_positions(at(25, 25), ten) == [math.ceil(k * 25 / 10) for k in range(10)]
    assert kept_positions(at(5, 10), ten) == list(range(10))  # slower than the grid: all, once
    # NTSC 29.97: still every third frame, never drifting
    assert kept_positions([Fraction(1001 * i, 30000) for i in range(300)], ten) == list(
        range(0, 300, 3)
    )
    # a variable rate with a gap: grid points in the gap are skipped, nothing is repeated
    times = [Fraction(ms, 1000) for ms in (0, 40, 300, 310, 420, 1000, 1090)]
    assert kept_positions(times, ten) == [0, 2, 4, 5]


def test_shorter_side_is_capped_never_raised() -> None:
    assert output_size(640, 480, 256) == (341, 256)
    assert output_size(480, 640, 256) == (256, 341)
    assert output_size(1920, 1080, 256) == (455, 256)
    assert output_size(320, 240, 256) == (320, 240)
    assert output_size(640, 480, 0) == (640, 480)


# --- which frames end up where --------------------------------------------------------------


@pytest.fixture(scope="module")
def rates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rates")
    write_video(root / "thirty.mp4", 30, rate=30)
    write_video(root / "class_b" / "twentyfive.mp4", 25, rate=25)
    write_video(root / "five.mp4", 6, rate=5)
    write_video(root / "big.mp4", 4, rate=10, size=(400, 300))
    (root / "notes.txt").write_text("not a video\n")
    return root


def test_frames_on_the_grid_in_shards_and_lists(rates: Path, tmp_path: Path) -> None:
    output = main(conf(), rates, tmp_path / "out", metrics=tmp_path / "m.json")
    samples = wds_samples(output)
    expected = {
        "big": [0, 1, 2, 3],
        "class_b/twentyfive": [math.ceil(k * 25 / 10) for k in range(10)],
        "five": list(range(6)),
        "thirty": list(range(0, 30, 3)),
    }
    assert list(samples) == [
        frame_key(name, n + 1) for name in sorted(expected) for n in range(len(expected[name]))
    ]
    for name, indices in expected.items():
        kept = [source_index(samples[frame_key(name, n + 1)]) for n in range(len(indices))]
        assert kept == indices, name
    assert Image.open(io.BytesIO(samples["big/00001"])).size == (341, 256)
    assert Image.open(io.BytesIO(samples["five/00001"])).size == (64, 48)

    # the source project's conventions: "<frame_dir> <n_frames>" and "<frame_dir>/%05d.jpg"
    tree = tmp_path / "tree"
    unpack_shards(output, tree)
    video_lines = (output / "video_list.txt").read_text().splitlines()
    assert video_lines == [f"{name} {len(expected[name])}" for name in sorted(expected)]
    frame_paths = []
    for line in video_lines:
        directory, count = line.split(" ")
        for index in range(int(count)):  # as KineticsSequentialDataset names frame index + 1
            path = tree / directory / PYTHON_PATTERN.format(index + 1)
            assert path.is_file()
            frame_paths.append(f"{directory}/{path.name}")
    assert (output / "frame_list.txt").read_text().splitlines() == frame_paths
    assert (output / "failures.tsv").read_text() == "video\tfailure\tmessage\n"
    assert (tmp_path / "m.json").read_text().count('"frames": 30') == 1

    # a finished run is not redone: the same bytes and the same files
    before = {path: path.stat().st_mtime_ns for path in output.iterdir()}
    digest = digests(output)
    main(conf(), rates, output)
    assert digests(output) == digest
    assert {path: path.stat().st_mtime_ns for path in output.iterdir()} == before


def test_variable_rate_and_a_late_start(tmp_path: Path) -> None:
    pts = [5000, 5040, 5300, 5310, 5420, 6000, 6090]
    write_video(tmp_path / "in" / "vfr.mkv", len(pts), pts_ms=pts)
    output = main(conf(), tmp_path / "in", tmp_path / "out")
    with VideoFrames(output) as frames:
        (record,) = frames.videos()
        assert record.times_ms == (0, 300, 420, 1000)
        assert [source_index(jpeg) for _, jpeg in frames.frames("vfr")] == [0, 2, 4, 5]


def test_display_rotation_is_applied_as_ffmpeg_does(tmp_path: Path) -> None:
    path = tmp_path / "in" / "portrait.mp4"
    path.parent.mkdir()
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        pixels = np.zeros((48, 64, 3), np.uint8)
        pixels[:16, :16] = 255  # a white square at the top left
        for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
            container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    data = bytearray(path.read_bytes())
    tkhd = data.find(b"tkhd")
    matrix = tkhd + 4 + 4 + (20 if data[tkhd + 4] == 0 else 32) + 16
    # the track matrix of a phone video held upright: displayed turned 90 degrees clockwise
    data[matrix : matrix + 36] = struct.pack(">9i", 0, 65536, 0, -65536, 0, 0, 0, 0, 1 << 30)
    path.write_bytes(data)
    output = main(conf(), path.parent, tmp_path / "out")
    with VideoFrames(output) as frames:
        grey = np.asarray(frames.image("portrait", 1).convert("L"))
    assert grey.shape == (64, 48)
    assert grey[:16, -16:].mean() > 240 and grey[:16, :16].mean() < 15  # now at the top right


# --- failures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("damaged")
    write_video(root / "a-good.mp4", 9)
    (root / "b-empty.mp4").write_bytes(b"")
    (root / "c-text.mp4").write_text("hello, not a video\n")
    whole = write_video(tmp_path_factory.mktemp("whole") / "d.mp4", 30).read_bytes()
    (root / "d-cut.mp4").write_bytes(whole[: len(whole) * 6 // 10])  # its index was at the end
    whole = write_video(tmp_path_factory.mktemp("whole") / "d.mp4", 30, faststart=True)
    (root / "d2-cut.mp4").write_bytes(whole.read_bytes()[: whole.stat().st_size * 6 // 10])
    with av.open(str(root / "e-audio.m4a"), "w") as container:
        stream = container.add_stream("aac", rate=8000)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), "fltp", "mono")
        frame.sample_rate = 8000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    write_video(root / "f-good.mp4", 6, rate=10)
    return root


EXPECTED_FAILURES = [
    ("b-empty.mp4", "empty_file"),
    ("c-text.mp4", "unreadable"),
    ("d-cut.mp4", "no_video_stream"),
    ("d2-cut.mp4", "decode_error"),
    ("e-audio.m4a", "no_video_stream"),
]


def test_damaged_videos_are_listed_not_fatal_below_the_threshold(
    damaged: Path, tmp_path: Path
) -> None:
    settings = conf(extensions=[".mp4", ".m4a"], max_failed_fraction=0.75)
    output = main(settings, damaged, tmp_path / "out", metrics=tmp_path / "m.json")
    rows = [line.split("\t") for line in (output / "failures.tsv").read_text().splitlines()]
    assert rows[0] == ["video", "failure", "message"]
    assert [(video, failure) for video, failure, _ in rows[1:]] == EXPECTED_FAILURES
    assert "0 bytes" in rows[1][2] and "streams: audio" in rows[5][2]
    assert rows[4][2].startswith("decoding stopped after")
    assert (output / "video_list.txt").read_text() == "a-good 3\nf-good 6\n"
    with VideoFrames(output) as frames:
        assert [record.failure for record in frames.failures()] == [f for _, f in EXPECTED_FAILURES]
        with pytest.raises(KeyError, match="empty_file"):
            frames.frame("b-empty", 1)


def test_too_many_failures_stop_the_run_and_a_rerun_resumes(damaged: Path, tmp_path: Path) -> None:
    settings = conf(extensions=[".mp4", ".m4a"], shard_max_count=2)
    with pytest.raises(
        TooManyFailed,
        match=r"^1 of 7 videos gave no frames, more than the 0 .*b-empty.mp4: empty_file",
    ):
        main(settings, damaged, tmp_path / "out")
    assert not (tmp_path / "out" / "index.json").exists()
    # same videos and frame settings, a higher threshold: the run resumes and ends as one run
    relaxed = {**settings, "max_failed_fraction": 0.75}
    main(relaxed, damaged, tmp_path / "out")
    main(relaxed, damaged, tmp_path / "whole")
    assert digests(tmp_path / "out") == digests(tmp_path / "whole")


def test_cli_exit_codes_and_messages(damaged: Path, rates: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text("video-frames:\n  jobs: 1\n  extensions: ['.mp4']\n")
    runner = CliRunner()
    stage = ["stage", "video-frames"]
    result = runner.invoke(
        app, [*stage, str(damaged), str(tmp_path / "o"), "--params", str(params)]
    )
    assert result.exit_code == 1, result.output
    assert "1 of 6 videos gave no frames, more than the 0 that" in " ".join(result.output.split())

    listing = tmp_path / "videos.txt"
    listing.write_text("# clips\nthirty.mp4\n\n../five.mp4\n")
    result = runner.invoke(
        app,
        [*stage, str(listing), str(tmp_path / "o2"), "--root", str(rates), "--params", str(params)],
    )
    assert result.exit_code == 2
    assert f"{listing}:4: '../five.mp4' must be a path relative to the root" in result.output

    clash = tmp_path / "clash"
    write_video(clash / "x.mp4", 2)
    write_video(clash / "x.mkv", 2)
    params.write_text("video-frames:\n  jobs: 1\n")
    result = runner.invoke(app, [*stage, str(clash), str(tmp_path / "o3"), "--params", str(params)])
    assert result.exit_code == 2
    assert "x.mp4 and x.mkv both get the frame dir 'x'" in " ".join(result.output.split())

    write_video(tmp_path / "spaced" / "air drumming" / "clip.mp4", 2)
    with pytest.raises(
        ListError, match="its frame dir 'air drumming/clip' is empty or holds white"
    ):
        main(conf(), tmp_path / "spaced", tmp_path / "o6")

    params.write_text("video-frames:\n  fsp: 10\n")
    result = runner.invoke(app, [*stage, str(clash), str(tmp_path / "o4"), "--params", str(params)])
    assert result.exit_code == 2
    assert f"{params}:2: video-frames.fsp is not a setting" in result.output

    listing.write_text("thirty.mp4\nfive.mp4\n")
    params.write_text("video-frames:\n  jobs: 1\n")
    result = runner.invoke(
        app,
        [*stage, str(listing), str(tmp_path / "o5"), "--root", str(rates), "--params", str(params)],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "o5" / "video_list.txt").read_text() == "thirty 10\nfive 6\n"


def test_no_video_and_one_video(tmp_path: Path) -> None:
    (tmp_path / "none").mkdir()
    output = main(conf(), tmp_path / "none", tmp_path / "out0", metrics=tmp_path / "m0.json")
    assert sorted(p.name for p in output.iterdir()) == [
        ".run.json", "failures.tsv", "frame_list.txt", "index.json", "video_list.txt",
        "videos.jsonl",
    ]  # fmt: skip
    assert (output / "video_list.txt").read_text() == ""
    assert ShardReader(output).keys() == []
    write_video(tmp_path / "one" / "clip.mp4", 1)
    output = main(conf(), tmp_path / "one", tmp_path / "out1")
    assert (output / "video_list.txt").read_text() == "clip 1\n"


# --- resuming and sharded runs --------------------------------------------------------------


@pytest.fixture(scope="module")
def several(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("several")
    for index in range(5):
        write_video(root / f"g{index % 2}" / f"v{index}.mp4", 12 + 6 * index, rate=30)
    (root / "g1" / "zero.mp4").write_bytes(b"")
    return root


def test_shard_parts_merged_equal_one_run(several: Path, tmp_path: Path) -> None:
    settings = conf(shard_max_count=5, max_failed_fraction=0.5)
    single = main(settings, several, tmp_path / "single" / "out", metrics=tmp_path / "s.json")
    expected = digests(single)
    assert len(expected) > 8  # several shards
    for count in (1, 2, 3, 8):
        output = tmp_path / f"n{count}" / "out"
        for index in range(count):
            part = main(settings, several, output, shard=ShardSpec(index, count))
            assert part == part_folder(output, ShardSpec(index, count))
        merge(settings, several, output, count, metrics=tmp_path / f"m{count}.json")
        assert digests(output) == expected, count
        assert (tmp_path / f"m{count}.json").read_bytes() == (tmp_path / "s.json").read_bytes()


def test_jobs_do_not_change_the_bytes(several: Path, tmp_path: Path) -> None:
    settings = conf(shard_max_count=5, max_failed_fraction=0.5)
    one = main(settings, several, tmp_path / "one")
    two = main({**settings, "jobs": 2}, several, tmp_path / "two")
    assert digests(one) == digests(two)


def twelve_videos(tmp_path: Path, jobs: int) -> tuple[Path, list[str], Path]:
    """12 videos, the stage command over them and a params file with ``jobs``."""
    videos = tmp_path / "videos"
    for index in range(12):
        write_video(videos / f"clip{index:02d}.mp4", 45, rate=30, size=(320, 240))
    params = tmp_path / "params.yaml"
    params.write_text(f"video-frames:\n  jobs: {jobs}\n  shard_max_count: 7\n")
    command = [str(Path(sys.executable).with_name("vcat")), "stage", "video-frames", str(videos)]
    return videos, command, params


def test_killed_run_resumes_to_the_same_bytes(tmp_path: Path) -> None:
    videos, command, params = twelve_videos(tmp_path, jobs=1)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*command, str(killed), "--params", str(params)])
    journal = killed / ".videos.jsonl.partial"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if (killed / "shard-000002.tar").exists():
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert journal.exists() and not (killed / "index.json").exists(), "not killed mid-run"
    done_before = len(journal.read_text().splitlines())
    assert 0 < done_before < 12
    settings = conf(shard_max_count=7)
    main(settings, videos, killed)  # the same settings as the params file
    main(settings, videos, tmp_path / "whole")
    assert digests(killed) == digests(tmp_path / "whole")
    assert not journal.exists()


def test_a_worker_killed_mid_way_ends_the_run_in_one_line_and_it_resumes(tmp_path: Path) -> None:
    videos, command, params = twelve_videos(tmp_path, jobs=2)
    output = tmp_path / "out"
    process = subprocess.Popen([*command, str(output), "--params", str(params)], stderr=PIPE)
    deadline = time.monotonic() + 60
    while not (output / "shard-000001.tar").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    workers = [pid for pid in children(process.pid) if "spawn_main" in command_line(pid)]
    assert workers, "no worker process found"
    kill_worker_and_read_error(process, workers[0])
    assert not (output / "index.json").exists()
    done = subprocess.run([*command, str(output), "--params", str(params)], capture_output=True)
    assert done.returncode == 0, done.stderr
    main(conf(shard_max_count=7), videos, tmp_path / "whole")
    assert digests(output) == digests(tmp_path / "whole")


# --- the reader ------------------------------------------------------------------------------


def test_reader_picks_one_frame_per_second_and_the_middle_frame(tmp_path: Path) -> None:
    write_video(tmp_path / "in" / "long.mp4", 50, rate=25)  # 2 s
    output = main(conf(), tmp_path / "in", tmp_path / "out")
    with VideoFrames(output) as frames:
        record = frames.record("long")
        assert record.frames == 20
        assert per_second(record) == [1, 11]
        assert per_second(record, 2) == [1, 6, 11, 16]
        assert middle_frame(record) == 10  # times 0..1.9 s: 0.9 and 1.0 s are nearest 0.95 s
        assert source_index(frames.frame("long", 11)) == 25  # 1 s into a 25 fps video
        with pytest.raises(KeyError, match=r"frames 1\.\.20, not 21"):
            frames.frame("long", 21)
    assert os.path.getsize(output / "videos.jsonl") > 0


def test_one_naming_scheme_for_keys_paths_and_lists() -> None:
    assert frame_dir("train/abseiling/x_000001.mp4") == "train/abseiling/x_000001"
    assert frame_dir("train/abseiling/x.part.mp4", "basename") == "x"  # the guide's flat names
    assert frame_key("a/b", 7) == "a/b/00007"
    assert frame_path("a/b", 7) == "a/b/00007.jpg" == "a/b/" + FFMPEG_PATTERN % 7
    assert parse_frame_key(frame_key("a.b/c", 123456)) == ("a.b/c", 123456)


def test_basename_frame_dirs_that_clash_are_refused(tmp_path: Path) -> None:
    write_video(tmp_path / "in" / "a" / "clip.mp4", 2)
    write_video(tmp_path / "in" / "b" / "clip.mp4", 2)
    with pytest.raises(ListError, match="or use frame_dirs: relative"):
        main(conf(frame_dirs="basename"), tmp_path / "in", tmp_path / "out")
    output = main(conf(), tmp_path / "in", tmp_path / "out")
    assert (output / "video_list.txt").read_text() == "a/clip 1\nb/clip 1\n"


def test_shards_and_merge_on_the_command_line(several: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "video-frames:\n  jobs: 1\n  shard_max_count: 5\n  max_failed_fraction: 0.5\n"
    )
    runner = CliRunner()
    output = tmp_path / "out"

    def stage(*options: str) -> tuple[int, str]:
        arguments = ["stage", "video-frames", str(several), str(output), "--params", str(params)]
        result = runner.invoke(app, [*arguments, *options])
        return result.exit_code, " ".join(result.output.split())

    assert stage("--shard", "2/2")[0] == 2
    assert stage("--shard", "0/2")[0] == 0
    code, text = stage("--merge", "2")
    assert code == 2 and "part(s) 1 of 2 are not finished" in text
    params.write_text(
        "video-frames:\n  jobs: 1\n  shard_max_count: 6\n  max_failed_fraction: 0.5\n"
    )
    assert stage("--shard", "1/2")[0] == 0  # other settings than part 0
    code, text = stage("--merge", "2")
    assert code == 2 and "00000-of-00002: made from other videos or settings" in text
    assert "run the stage with --shard 0/2 again" in text
    assert stage("--shard", "0/2")[0] == 0
    assert stage("--merge", "2")[0] == 0
    assert stage("--shard", "0/2", "--merge", "2")[0] == 2
    single = main(conf(shard_max_count=6, max_failed_fraction=0.5), several, tmp_path / "single")
    assert digests(output) == digests(single)
