"""Reading the frames that the ``video-frames`` stage wrote, by video and frame number.

The output folder holds shards (:mod:`vcat.shards`) and ``videos.jsonl``
(:mod:`vcat.video.records`); names come from :mod:`vcat.video.naming`, the same module the
writer uses. Consumers that sample frames in time (copy detection takes one frame per second
and the middle frame of each video) use :func:`per_second` and :func:`middle_frame`, which
pick by the frames' recorded presentation times, not by assuming a constant rate.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import TracebackType

from PIL import Image

from vcat.shards import ShardReader
from vcat.video.decode import frame_rate, kept_positions
from vcat.video.naming import FIRST_FRAME, FRAME_EXT, RECORDS_NAME, frame_key
from vcat.video.records import VideoRecord, read_records


class VideoFrames:
    """The output folder ``folder`` of the stage: its videos, and their frames by number."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        path = folder / RECORDS_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: {folder} is not a finished video-frames output; run the "
                "stage (vcat stage video-frames) to completion first"
            )
        self.records = read_records(path).records
        self._by_dir = {record.frame_dir: record for record in self.records}
        self._shards: ShardReader | None = None

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._shards is not None:
            self._shards.close()
            self._shards = None

    @property
    def shards(self) -> ShardReader:
        if self._shards is None:
            self._shards = ShardReader(self.folder)
        return self._shards

    def videos(self) -> list[VideoRecord]:
        """The videos that have frames, in input order."""
        return [record for record in self.records if record.failure is None]

    def failures(self) -> list[VideoRecord]:
        """The videos that gave no frames, with their failure class and message."""
        return [record for record in self.records if record.failure is not None]

    def record(self, frame_dir: str) -> VideoRecord:
        try:
            return self._by_dir[frame_dir]
        except KeyError:
            raise KeyError(f"no video with frame dir {frame_dir!r} in {self.folder}") from None

    def frame(self, frame_dir: str, number: int) -> bytes:
        """The JPEG bytes of frame ``number`` (from 1) of the video ``frame_dir``."""
        record = self.record(frame_dir)
        if number not in record.numbers:
            raise KeyError(
                f"{frame_dir} has frames {FIRST_FRAME}..{record.frames}, not {number}"
                + (f" ({record.failure}: {record.message})" if record.failure else "")
            )
        return self.shards.read_member(frame_key(frame_dir, number), FRAME_EXT)

    def image(self, frame_dir: str, number: int) -> Image.Image:
        """Frame ``number`` of ``frame_dir`` decoded, as an RGB image."""
        with Image.open(io.BytesIO(self.frame(frame_dir, number))) as image:
            return image.convert("RGB")

    def frames(self, frame_dir: str) -> Iterator[tuple[int, bytes]]:
        """``(number, JPEG bytes)`` of every frame of ``frame_dir``, in order."""
        for number in self.record(frame_dir).numbers:
            yield number, self.frame(frame_dir, number)


def frame_times(record: VideoRecord) -> list[Fraction]:
    """The frames' times in seconds from the video's first frame."""
    return [Fraction(time, 1000) for time in record.times_ms]


def per_second(record: VideoRecord, rate: float | int | str = 1) -> list[int]:
    """The frame numbers of ``rate`` frames per second of the video (default one): for each
    time k / rate, the first frame at or after it, as the stage's grid keeps frames."""
    positions = kept_positions(frame_times(record), frame_rate(rate))
    return [FIRST_FRAME + position for position in positions]


def middle_frame(record: VideoRecord) -> int:
    """The number of the frame nearest the middle of the video's kept time span (the earlier
    of two equally near); for a constant rate, frame ``(n + 1) // 2`` of ``n``."""
    if record.failure is not None or not record.times_ms:
        raise ValueError(f"{record.video} has no frames ({record.failure}: {record.message})")
    middle = Fraction(record.times_ms[0] + record.times_ms[-1], 2)
    position = min(range(record.frames), key=lambda i: (abs(record.times_ms[i] - middle), i))
    return FIRST_FRAME + position
