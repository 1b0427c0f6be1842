"""Frames kept per second by the video-frames stage against plain decoding loops, in one run.

    python bench/frames.py [--repeat N] [--seconds S]

Makes, in a temporary folder, one H.264 video (640 x 480, 30 fps, S seconds, default 10: a
pan over a real photo with seeded noise, x264 at CRF 23) and times, on one worker, the output
frames per second of keeping it at 10 fps with the shorter side at 256 as JPEG (quality 90):

- ``stage``: ``stages.video_frames.main`` with jobs 1, the whole stage (grid by timestamps,
  shards, records, lists), default decoder threads (SLICE);
- ``stage-auto``: the same with frame threads as well (thread_type AUTO);
- ``loop``: the reference, a PyAV loop that decodes every frame and keeps every third, with
  the same conversion as the stage (FFmpeg's scaler to 341 x 256 BGR, OpenCV's JPEG), keeping
  the bytes in memory;
- ``loop-naive``: the same loop converting as a first script would (``to_image``, Pillow's
  bicubic resize, Pillow's JPEG);
- ``opencv``: OpenCV's reader, ``grab`` every frame and ``retrieve`` every third, then area
  resize and JPEG;
- ``seek``: one seek per kept frame (to the key frame before it, then decoding up to it).

Ratios are against ``loop``, by elapsed time and by this process's processor time (which a
busy machine disturbs less); the target for ``stage`` is at least 0.8. The contenders run
in turns, --repeat times, and each figure is its best run, so that the page cache and a busy
neighbour weigh on all alike. The stage's figure includes its fixed costs per run (settings,
clearing the output with --overwrite, sealing and syncing the shard, the lists).
"""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter
from PIL import Image

from stages.video_frames import main as run_stage
from vcat.video.decode import output_size

WIDTH, HEIGHT, RATE, KEEP_EVERY, SHORT_SIDE, QUALITY = 640, 480, 30, 3, 256, 90
SIZE = output_size(WIDTH, HEIGHT, SHORT_SIDE)


def make_video(path: Path, seconds: int) -> Path:
    from skimage import data

    rng = np.random.default_rng(3)
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((1024, 1024)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=RATE)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for index in range(seconds * RATE):
            x, y = (index * 3) % (1024 - WIDTH), (index * 2) % (1024 - HEIGHT)
            noise = rng.integers(-4, 5, (HEIGHT, WIDTH, 3))
            pixels = np.clip(photo[y : y + HEIGHT, x : x + WIDTH] + noise, 0, 255)
            frame = av.VideoFrame.from_ndarray(pixels.astype(np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def jpeg_of(frame: av.VideoFrame, scaler: VideoReformatter) -> bytes:
    pixels = scaler.reformat(
        frame, width=SIZE[0], height=SIZE[1], format="bgr24", interpolation=Interpolation.AREA
    ).to_ndarray()
    return cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1].tobytes()


def loop(path: Path) -> int:
    scaler = VideoReformatter()
    kept = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % KEEP_EVERY == 0:
                kept.append(jpeg_of(frame, scaler))
    return len(kept)


def loop_naive(path: Path) -> int:
    kept = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % KEEP_EVERY == 0:
                buffer = io.BytesIO()
                frame.to_image().resize(SIZE, Image.BICUBIC).save(buffer, "JPEG", quality=QUALITY)
                kept.append(buffer.getvalue())
    return len(kept)


def opencv(path: Path) -> int:
    capture = cv2.VideoCapture(str(path))
    kept, index = [], 0
    while capture.grab():
        if index % KEEP_EVERY == 0:
            _, pixels = capture.retrieve()
            small = cv2.resize(pixels, SIZE, interpolation=cv2.INTER_AREA)
            kept.append(cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, QUALITY])[1])
        index += 1
    capture.release()
    return len(kept)


def seek(path: Path) -> int:
    scaler = VideoReformatter()
    kept = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        base = Fraction(stream.time_base)
        start = stream.start_time or 0
        count = stream.frames // KEEP_EVERY
        for k in range(count):
            target = start + int(Fraction(k * KEEP_EVERY, RATE) / base)
            container.seek(target, stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    kept.append(jpeg_of(frame, scaler))
                    break
    return len(kept)


def stage(folder: Path, output: Path, thread_type: str) -> Callable[[Path], int]:
    def run(_: Path) -> int:
        settings = {"jobs": 1, "thread_type": thread_type, "fps": RATE / KEEP_EVERY}
        run_stage(settings, folder, output, overwrite=True)
        return len((output / "frame_list.txt").read_text().splitlines())

    return run


@dataclass
class Timing:
    frames: int
    wall: float  # best elapsed seconds
    cpu: float  # best processor seconds of this process, all its threads


def interleaved(
    contenders: dict[str, Callable[[Path], int]], path: Path, repeat: int
) -> dict[str, Timing]:
    """The best times and the frame count of each contender, run in turns, so that a busy
    neighbour slows them all alike."""
    walls: dict[str, list[float]] = {name: [] for name in contenders}
    cpus: dict[str, list[float]] = {name: [] for name in contenders}
    counts: dict[str, int] = {}
    for _ in range(repeat):
        for name, work in contenders.items():
            wall, cpu = time.perf_counter(), time.process_time()
            counts[name] = work(path)
            cpus[name].append(time.process_time() - cpu)
            walls[name].append(time.perf_counter() - wall)
    return {name: Timing(counts[name], min(walls[name]), min(cpus[name])) for name in contenders}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-frames-"))
    try:
        folder = workdir / "videos"
        folder.mkdir()
        path = make_video(folder / "pan.mp4", args.seconds)
        megabytes = path.stat().st_size / 1e6
        print(f"video: {WIDTH}x{HEIGHT}, {RATE} fps, {args.seconds} s, H.264 ({megabytes:.1f} MB)")
        print(f"kept: 10 fps, {SIZE[0]}x{SIZE[1]} JPEG; best of {args.repeat}, run in turns")
        contenders: dict[str, Callable[[Path], int]] = {
            "loop": loop,
            "stage": stage(folder, workdir / "out", "SLICE"),
            "stage-auto": stage(folder, workdir / "out-auto", "AUTO"),
            "loop-naive": loop_naive,
            "opencv": opencv,
            "seek": seek,
        }
        results = interleaved(contenders, path, args.repeat)
        loop_wall = results["loop"].frames / results["loop"].wall
        loop_cpu = results["loop"].frames / results["loop"].cpu
        print(f"{'':12} {'frames':>6} {'wall s':>7} {'frames/s':>9} {'vs loop':>8} "
              f"{'cpu s':>7} {'frames/cpu s':>12} {'vs loop':>8}")  # fmt: skip
        for name, timing in results.items():
            wall, cpu = timing.frames / timing.wall, timing.frames / timing.cpu
            print(
                f"{name:12} {timing.frames:6d} {timing.wall:7.3f} {wall:9.1f} "
                f"{wall / loop_wall:7.2f}x {timing.cpu:7.3f} {cpu:12.1f} {cpu / loop_cpu:7.2f}x"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
