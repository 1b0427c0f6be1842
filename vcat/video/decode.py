"""Decoding a video once and keeping the frames on a time grid, resized and JPEG-encoded.

Every frame of the video's best stream (FFmpeg's choice, as its command line makes it) is
decoded once, in order, with PyAV; nothing seeks. A frame's time is its presentation
timestamp, exactly (a fraction of seconds), counted from the first decoded frame, so a stream
that starts at a time other than 0 starts at 0 here. The grid rule (:class:`TimeGrid`):

    a frame at time t is kept when t >= k / fps for the smallest grid point k not yet
    served; the next grid point is then floor(t * fps) + 1.

So each grid point gets the first frame at or after it; no frame is kept twice (a video
slower than ``fps`` keeps every frame, where FFmpeg's ``-r`` would repeat frames), grid points
that fall in a gap of a variable-rate video are skipped rather than filled with copies, and a
30 fps video keeps frames 0, 3, 6, ... at 10 fps (25 fps: 0, 3, 5, 8, 10, ...). A frame
without a timestamp is placed one average frame duration after the one before it.

Kept frames are rotated upright as the stream's display matrix says (as FFmpeg's command line
does), their shorter side is brought down to ``max_short_side`` (never up; the longer side
keeps the stored aspect, rounded to the nearest pixel) with FFmpeg's area filter in the same
pass that converts them to BGR, and they are encoded as JPEG with libjpeg-turbo (OpenCV).

PyAV rather than OpenCV's reader: it gives each frame's exact timestamp (OpenCV's position
is derived from a frame count), raises on data the decoder rejects (OpenCV's ``read`` only
returns False, as at the end), and resizes in FFmpeg's scaler; OpenCV's grab/retrieve was
also slower in ``bench/frames.py``.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.video.reformatter import Interpolation, VideoReformatter

# failure classes of a video that gives no frames
NOT_A_FILE = "not_a_file"
EMPTY_FILE = "empty_file"
UNREADABLE = "unreadable"
NO_VIDEO_STREAM = "no_video_stream"
DECODE_ERROR = "decode_error"
NO_FRAMES = "no_frames"
FAILURE_CLASSES = (NOT_A_FILE, EMPTY_FILE, UNREADABLE, NO_VIDEO_STREAM, DECODE_ERROR, NO_FRAMES)


class VideoProblem(Exception):
    """A video that gives no frames: ``failure`` is one of FAILURE_CLASSES, ``reason`` says why."""

    def __init__(self, failure: str, reason: str) -> None:
        super().__init__(failure, reason)  # both, so that it crosses process boundaries
        self.failure = failure
        self.reason = " ".join(reason.split())

    def __str__(self) -> str:
        return f"{self.failure}: {self.reason}"


def frame_rate(value: float | int | str) -> Fraction:
    """``value`` (frames per second, from params) as an exact positive fraction."""
    rate = Fraction(str(value))
    if rate <= 0:
        raise ValueError(f"fps must be positive, not {value!r}")
    return rate


@dataclass(frozen=True)
class FrameSettings:
    """What the kept frames are: ``fps`` grid, shorter-side cap (0: none), JPEG quality."""

    fps: Fraction
    max_short_side: int = 256
    jpeg_quality: int = 90
    thread_type: str = "SLICE"  # PyAV's default; FRAME or AUTO add frame threads

    def __post_init__(self) -> None:
        if self.fps <= 0:
            raise ValueError(f"fps must be positive, not {self.fps}")
        if self.max_short_side < 0:
            raise ValueError(f"max_short_side must be 0 (no cap) or more: {self.max_short_side}")
        if not 0 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in 0..100, not {self.jpeg_quality}")
        if self.thread_type not in ("NONE", "SLICE", "FRAME", "AUTO"):
            raise ValueError(f"thread_type must be NONE, SLICE, FRAME or AUTO: {self.thread_type}")


class TimeGrid:
    """The grid rule of the module docstring, fed frame times in decoding order."""

    def __init__(self, fps: Fraction) -> None:
        self.fps = fps
        self._next = 0  # the grid point still to serve

    def keep(self, time: Fraction) -> bool:
        """Whether the frame at ``time`` (seconds from the first frame) is kept."""
        slot = time * self.fps
        if slot < self._next:
            return False
        self._next = math.floor(slot) + 1
        return True


def kept_positions(times: Iterable[Fraction], fps: Fraction) -> list[int]:
    """The 0-based positions of the frames that the grid keeps among frames at ``times``."""
    grid = TimeGrid(fps)
    return [position for position, time in enumerate(times) if grid.keep(time)]


def output_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """``(width, height)`` with the shorter side brought down to ``max_short_side`` (never
    up; 0: unchanged) and the longer side scaled alike, rounded half up, at least 1."""
    short, long = min(width, height), max(width, height)
    if max_short_side == 0 or short <= max_short_side:
        return width, height
    scaled = max(1, (2 * long * max_short_side + short) // (2 * short))
    return (scaled, max_short_side) if width >= height else (max_short_side, scaled)


@dataclass
class ExtractedVideo:
    """The kept frames of one video as JPEG bytes, and their times in milliseconds."""

    frames: list[bytes] = field(default_factory=list)
    times_ms: list[int] = field(default_factory=list)
    decoded: int = 0  # frames decoded, kept or not


def _timed(
    frames: Iterable[av.VideoFrame], step: Fraction
) -> Iterator[tuple[av.VideoFrame, Fraction]]:
    """Each frame with its time in seconds from the first frame."""
    origin: Fraction | None = None
    last: Fraction | None = None
    for frame in frames:
        if frame.pts is not None and frame.time_base is not None:
            time = frame.pts * Fraction(frame.time_base)
        else:
            time = Fraction(0) if last is None else last + step
        if origin is None:
            origin = time
        last = time
        yield frame, time - origin


def _checked_file(path: Path) -> None:
    try:
        mode = path.stat()  # follows links: DVC may check files out as links to its cache
    except OSError as error:
        raise VideoProblem(UNREADABLE, f"cannot be read: {error.strerror}") from None
    if not stat.S_ISREG(mode.st_mode):
        raise VideoProblem(NOT_A_FILE, "not a regular file (a FIFO, a device or a folder)")
    if mode.st_size == 0:
        raise VideoProblem(EMPTY_FILE, "the file is empty (0 bytes)")


class FrameEncoder:
    """Rotate, resize and encode decoded frames; one per video (it caches FFmpeg's scaler)."""

    def __init__(self, settings: FrameSettings) -> None:
        self.settings = settings
        self._reformatter = VideoReformatter()
        self._params = [cv2.IMWRITE_JPEG_QUALITY, settings.jpeg_quality]

    def encode(self, frame: av.VideoFrame) -> bytes:
        width, height = output_size(frame.width, frame.height, self.settings.max_short_side)
        pixels = self._reformatter.reformat(
            frame, width=width, height=height, format="bgr24", interpolation=Interpolation.AREA
        ).to_ndarray()
        quarter_turns = round(frame.rotation / 90) % 4
        if quarter_turns:
            # the display matrix rotates counterclockwise by frame.rotation degrees
            pixels = np.ascontiguousarray(np.rot90(pixels, quarter_turns))
        ok, encoded = cv2.imencode(".jpg", pixels, self._params)
        if not ok:
            raise VideoProblem(DECODE_ERROR, f"a {width}x{height} frame could not be encoded")
        return encoded.tobytes()


def extract_frames(path: Path, settings: FrameSettings) -> ExtractedVideo:
    """The frames of the video at ``path`` kept by the grid, as JPEG, in order.

    Raises :class:`VideoProblem` for a file that gives no frames: not a regular file, empty,
    not a video FFmpeg can open, without a video stream, with data the decoder rejects
    (a cut or damaged file; no frames are kept from it), or without any frame.
    """
    _checked_file(path)
    try:
        container = av.open(os.fspath(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        raise VideoProblem(UNREADABLE, f"FFmpeg cannot open it: {error}") from None
    with container:
        found = [stream.type for stream in container.streams]
        if not container.streams.video:
            streams = ", ".join(found) if found else "none (the file may be cut short)"
            raise VideoProblem(NO_VIDEO_STREAM, f"no video stream; streams: {streams}")
        stream = container.streams.best("video")
        stream.thread_type = settings.thread_type
        rate = stream.average_rate or stream.guessed_rate or settings.fps
        grid = TimeGrid(settings.fps)
        encoder = FrameEncoder(settings)
        extracted = ExtractedVideo()
        try:
            for frame, time in _timed(container.decode(stream), 1 / Fraction(rate)):
                extracted.decoded += 1
                if grid.keep(time):
                    extracted.frames.append(encoder.encode(frame))
                    extracted.times_ms.append(round(time * 1000))
        except (av.FFmpegError, OSError) as error:
            raise VideoProblem(
                DECODE_ERROR, f"decoding stopped after {extracted.decoded} frames: {error}"
            ) from None
    if not extracted.frames:
        raise VideoProblem(NO_FRAMES, "the video stream holds no frame")
    return extracted
