"""What became of each video: the records file and the lists derived from it.

``videos.jsonl`` holds one JSON object per input video, in input order::

    {"video":"train/a.mp4","frame_dir":"train/a","frames":3,"times_ms":[0,100,200]}
    {"video":"train/b.mp4","frame_dir":"train/b","failure":"empty_file","message":"..."}

``times_ms`` are the kept frames' presentation times in milliseconds from the video's first
frame (frame n is ``times_ms[n - 1]``). The video list, the frame list and the failures file
are written from the records, with the names of :mod:`vcat.video.naming`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from vcat.video.naming import FIRST_FRAME, frame_path, video_list_line

FAILURES_HEADER = "video\tfailure\tmessage\n"


class RecordError(ValueError):
    """A records file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class VideoRecord:
    """One video: its frames (count and times) or why it has none."""

    video: str
    frame_dir: str
    times_ms: tuple[int, ...] = ()
    failure: str | None = None
    message: str = ""

    @property
    def frames(self) -> int:
        return len(self.times_ms)

    @property
    def numbers(self) -> range:
        """The frame numbers of the video."""
        return range(FIRST_FRAME, FIRST_FRAME + self.frames)

    def to_line(self) -> str:
        values: dict[str, object] = {"video": self.video, "frame_dir": self.frame_dir}
        if self.failure is None:
            values |= {"frames": self.frames, "times_ms": list(self.times_ms)}
        else:
            values |= {"failure": self.failure, "message": self.message}
        return json.dumps(values, ensure_ascii=False, separators=(",", ":")) + "\n"

    @classmethod
    def from_line(cls, line: str) -> VideoRecord:
        """The record of one line; ValueError, KeyError or TypeError when it is not one."""
        values = json.loads(line)
        if "failure" in values:
            failure, message = str(values["failure"]), str(values["message"])
            return cls(str(values["video"]), str(values["frame_dir"]), (), failure, message)
        times = tuple(int(time) for time in values["times_ms"])
        if values["frames"] != len(times):
            raise ValueError("frames and times_ms disagree")
        return cls(str(values["video"]), str(values["frame_dir"]), times)


@dataclass
class RecordsRead:
    records: list[VideoRecord] = field(default_factory=list)
    cut: bool = False  # the file ended in a line cut short (an interrupted run)


def read_records(path: Path, *, tolerate_cut: bool = False) -> RecordsRead:
    """The records of ``path`` in order. With ``tolerate_cut``, reading stops quietly at the
    first line that is not a whole record (what a killed run leaves); otherwise that is a
    RecordError naming the line."""
    read = RecordsRead()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                if not line.endswith("\n"):
                    raise ValueError("the line has no end")
                read.records.append(VideoRecord.from_line(line))
            except (ValueError, KeyError, TypeError) as exc:
                if tolerate_cut:
                    read.cut = True
                    break
                raise RecordError(
                    f"{path}:{number}: not a video record ({exc}); run the stage again"
                ) from None
    return read


def video_list_lines(records: Iterable[VideoRecord]) -> Iterator[str]:
    """The Kinetics-style list: ``<frame dir> <frame count>`` per video that has frames."""
    for record in records:
        if record.failure is None:
            yield video_list_line(record.frame_dir, record.frames)


def frame_list_lines(records: Iterable[VideoRecord]) -> Iterator[str]:
    """The plain list: every frame's path, video by video, frame by frame."""
    for record in records:
        for number in record.numbers:
            yield frame_path(record.frame_dir, number) + "\n"


def failure_lines(records: Iterable[VideoRecord]) -> Iterator[str]:
    """The failures file: a header, then ``video <TAB> failure <TAB> message`` per failure."""
    yield FAILURES_HEADER
    for record in records:
        if record.failure is not None:
            message = " ".join(record.message.split())
            yield f"{record.video}\t{record.failure}\t{message}\n"
