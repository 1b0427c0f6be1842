"""The ``demo-video`` file: a six-second H.264 fly-through of demo scene demo01.

640x480, 30 fps, yuv420p (BT.601, limited range), in MP4. The bytes are reproducible: frames
are rendered with CPU-independent maths, converted to YUV with integer arithmetic (not
swscale, whose SIMD paths differ between CPUs), and encoded by libx264 with one thread and
the bit-exact flags, in a container without creation time or encoder version.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
from numpy.typing import NDArray

from vcat.demo.publish import atomic_output
from vcat.demo.scenes import Camera, get_scene, look_at, render, sin_cos_degrees

SCENE_ID = "demo01"
WIDTH = 640
HEIGHT = 480
FPS = 30
SECONDS = 6
FOCAL = 560.0
X264_OPTIONS = {"preset": "veryfast", "crf": "23", "threads": "1"}


def _smoothstep(t: float) -> float:
    return t * t * (3.0 - 2.0 * t)


def camera_at(frame: int, count: int = FPS * SECONDS) -> Camera:
    """The camera of ``frame``: gliding left to right in an arc, eased at both ends, looking
    ahead of itself towards the boards."""
    t = _smoothstep(frame / (count - 1))
    sin_arc, _ = sin_cos_degrees(180.0 * t)
    sin_bob, _ = sin_cos_degrees(360.0 * t)
    x = -2.4 + 4.8 * t
    position = (x, -3.0 + 1.4 * sin_arc, 1.5 + 0.15 * sin_bob)
    target = (0.6 * x + 0.4, 3.0, 1.2)
    return look_at(f"frame{frame:03d}", position, target, FOCAL, WIDTH, HEIGHT)


def yuv420(rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """RGB (H, W, 3) as yuv420p planes stacked into (H * 3 / 2, W): BT.601 limited range in
    integer arithmetic; chroma from the rounded mean of each 2x2 block's RGB."""
    height, width = rgb.shape[:2]
    wide = rgb.astype(np.int32)
    r, g, b = wide[..., 0], wide[..., 1], wide[..., 2]
    out = np.empty((height * 3 // 2, width), np.uint8)
    out[:height] = ((66 * r + 129 * g + 25 * b + 128) >> 8) + 16
    block = wide[0::2, 0::2] + wide[1::2, 0::2] + wide[0::2, 1::2] + wide[1::2, 1::2]
    mean = (block + 2) >> 2
    mr, mg, mb = mean[..., 0], mean[..., 1], mean[..., 2]
    chroma = out[height:].reshape(2, -1)  # the U plane, then the V plane
    chroma[0] = (((-38 * mr - 74 * mg + 112 * mb + 128) >> 8) + 128).ravel()
    chroma[1] = (((112 * mr - 94 * mg - 18 * mb + 128) >> 8) + 128).ravel()
    return out


def frames() -> Iterator[NDArray[np.uint8]]:
    """The RGB frames of the fly-through, in order."""
    scene = get_scene(SCENE_ID)
    for frame in range(FPS * SECONDS):
        yield render(scene, camera_at(frame))[0]


def encode(rgb_frames: Iterator[NDArray[np.uint8]]) -> bytes:
    """H.264 in MP4 of ``rgb_frames`` (640x480 at 30 fps), byte-reproducible."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        container.flags |= av.container.Flags.bitexact.value
        stream = container.add_stream("libx264", rate=FPS, options=X264_OPTIONS)
        stream.width = WIDTH
        stream.height = HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.codec_context.thread_count = 1
        stream.codec_context.flags |= av.codec.context.Flags.bitexact.value
        for index, rgb in enumerate(rgb_frames):
            frame = av.VideoFrame.from_ndarray(yuv420(rgb), format="yuv420p")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def build_video(path: Path) -> None:
    """Write the fly-through to ``path`` (an MP4 file)."""
    data = encode(frames())
    with atomic_output(path) as stream:
        stream.write(data)
