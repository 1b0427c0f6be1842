"""The VSC 2022 variant: reference videos' middle frames as classes, and positive frame pairs.

Videos come as ``video-frames`` outputs (:mod:`vcat.video.frames`), one frame per second or
denser. A reference video's class source is the middle one of its one-per-second frames
(:func:`vcat.video.frames.per_second`, then the ``n // 2``-th, in time order: the guide sorts
the frame file names as text, so its "middle" frame of a video longer than 10 s is not in the
middle).

``train_matching_ground_truth.csv`` (``query_id,ref_id,query_start,query_end,ref_start,
ref_end``, times in seconds) gives copied segments. Along each, a positive pair is taken every
second of the query: at ``query_start + s`` and ``ref_start + s * rate`` for s = 1, 2, ... while
both stay before their segment's end, with ``rate`` the reference span over the query span (as
the guide does). A pair names the frame shown at each time (the last frame at or before it) when
the frames of that video are given and the time is within the video.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from PIL import Image

from vcat.regular import read_regular_text
from vcat.shards import ShardReader
from vcat.video.frames import VideoFrames, per_second
from vcat.video.naming import FRAME_EXT, frame_key
from vcat.video.records import VideoRecord

SEGMENT_COLUMNS = ("query_id", "ref_id", "query_start", "query_end", "ref_start", "ref_end")
PAIRS_NAME = "pairs.csv"
PAIRS_HEADER = "pair,query_id,query_time,ref_id,ref_time,query_frame,ref_frame\n"


class SegmentError(ValueError):
    """A ground-truth file that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Segment:
    line: int
    query_id: str
    ref_id: str
    query_start: float
    query_end: float
    ref_start: float
    ref_end: float


def read_segments(path: Path) -> list[Segment]:
    """The rows of a VSC matching ground truth; SegmentError naming the line for a missing
    column, a time that is not a finite number, or a segment that ends before it starts."""
    try:
        text = read_regular_text(path, "utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SegmentError(f"{path}: not UTF-8 text ({exc.reason})") from None
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in SEGMENT_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise SegmentError(
            f"{path}:1: the header lacks {', '.join(missing)} (it needs "
            f"{','.join(SEGMENT_COLUMNS)})"
        )
    segments = []
    for row in reader:
        line = reader.line_num
        values = {}
        for column in SEGMENT_COLUMNS[2:]:
            try:
                values[column] = float(row[column] or "")
            except (TypeError, ValueError):
                raise SegmentError(
                    f"{path}:{line}: {column} is {row[column]!r}, not a number of seconds"
                ) from None
            if not math.isfinite(values[column]) or values[column] < 0:
                raise SegmentError(f"{path}:{line}: {column} must be a time >= 0 seconds")
        if not row["query_id"] or not row["ref_id"]:
            raise SegmentError(f"{path}:{line}: query_id and ref_id must not be empty")
        if values["query_end"] <= values["query_start"] or values["ref_end"] < values["ref_start"]:
            raise SegmentError(
                f"{path}:{line}: a segment must end after it starts (query "
                f"{values['query_start']}-{values['query_end']}, reference "
                f"{values['ref_start']}-{values['ref_end']})"
            )
        segments.append(Segment(line, row["query_id"], row["ref_id"], **values))
    return segments


@dataclass(frozen=True)
class Pair:
    query_id: str
    query_time: float
    ref_id: str
    ref_time: float


def segment_pairs(segment: Segment) -> list[Pair]:
    """The positive pairs of ``segment``: one per second of the query part."""
    rate = (segment.ref_end - segment.ref_start) / (segment.query_end - segment.query_start)
    pairs = []
    step = 1
    while (
        segment.query_start + step < segment.query_end
        and segment.ref_start + rate * step < segment.ref_end
    ):
        pairs.append(
            Pair(
                segment.query_id,
                segment.query_start + step,
                segment.ref_id,
                segment.ref_start + rate * step,
            )
        )
        step += 1
    return pairs


def video_ids(frames: VideoFrames) -> dict[str, VideoRecord]:
    """The videos with frames, by id: the last part of their frame dir (``Q100001``)."""
    return {PurePosixPath(record.frame_dir).name: record for record in frames.videos()}


def frame_at(record: VideoRecord, seconds: float) -> int | None:
    """The number of the frame shown at ``seconds`` (the last at or before it); None past
    the end of the video (beyond its last frame by more than the frames' spacing)."""
    times = record.times_ms
    if not times:
        return None
    milliseconds = seconds * 1000.0
    spacing = (times[-1] - times[0]) / (len(times) - 1) if len(times) > 1 else 1000.0
    if milliseconds >= times[-1] + spacing:
        return None
    position = 0
    for index, time in enumerate(times):
        if time <= milliseconds + 1e-6:
            position = index
        else:
            break
    return record.numbers[position]


def pairs_text(
    segments: list[Segment],
    queries: dict[str, VideoRecord] | None,
    references: dict[str, VideoRecord],
) -> tuple[str, int, int]:
    """``pairs.csv`` for ``segments``, the number of pairs, and how many lack a frame."""
    lines = [PAIRS_HEADER]
    without = 0
    count = 0
    for segment in segments:
        for pair in segment_pairs(segment):
            query = queries.get(pair.query_id) if queries is not None else None
            reference = references.get(pair.ref_id)
            query_frame = frame_at(query, pair.query_time) if query is not None else None
            ref_frame = frame_at(reference, pair.ref_time) if reference is not None else None
            without += query_frame is None or ref_frame is None
            cells = [
                str(count),
                pair.query_id,
                f"{pair.query_time:.3f}",
                pair.ref_id,
                f"{pair.ref_time:.3f}",
                "" if query_frame is None else str(query_frame),
                "" if ref_frame is None else str(ref_frame),
            ]
            lines.append(",".join(cells) + "\n")
            count += 1
    return "".join(lines), count, without


_READERS: dict[str, ShardReader] = {}


@dataclass(frozen=True)
class MiddleFrame:
    """The middle one-per-second frame of a video of a ``video-frames`` output, as a source."""

    folder: Path
    frame_dir: str
    number: int
    size: int

    @property
    def name(self) -> str:
        return frame_key(self.frame_dir, self.number)

    def load(self, draft: int | None = None) -> Image.Image:
        key = str(self.folder)
        if key not in _READERS:  # one reader per process, opened on first use
            _READERS[key] = ShardReader(self.folder)
        data = _READERS[key].read_member(self.name, FRAME_EXT)
        with Image.open(io.BytesIO(data)) as image:
            if draft is not None:
                image.draft("RGB", (draft, draft))
            return image.convert("RGB")

    def signature(self) -> str:
        return f"{self.name}\t{self.size}"


def middle_frames(folder: Path, frames: VideoFrames) -> list[MiddleFrame]:
    """The middle frame of each video of ``frames`` that has frames, in its order."""
    sources = []
    for record in frames.videos():
        seconds = per_second(record)
        number = seconds[len(seconds) // 2]
        _, size = frames.shards.index.samples[frame_key(record.frame_dir, number)].members[
            FRAME_EXT
        ]
        sources.append(MiddleFrame(folder, record.frame_dir, number, size))
    return sources
