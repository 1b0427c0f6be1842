"""Frame sets: the video-frames stage's folder (shards of ``<frame dir>/<n:05d>.jpg``, the
records ``videos.jsonl``, ``video_list.txt``, ``frame_list.txt``).

The ``images`` and ``shards`` tables and their checks are those of
``vcat.gates.kinds.images`` (their row count is the ``frame_count`` check here: ``count``
counts videos). The ``videos`` table has one row per video of the records: its frames in the
shards, the count ``video_list.txt`` gives, its entries in ``frame_list.txt``, the count the
record gives, whether all of them agree and number the frames 1..n in order, and the source's
duration and frame rate with the frames the fps grid should then hold.

The output does not record the source's duration, so the ``frames_match_duration`` check
reads it from the source videos when its ``videos`` parameter names the folder the records'
paths are relative to (container metadata only, nothing is decoded). Without it, the duration
is taken as the last kept frame's time plus one grid step: that still finds grid points
missing inside a video, not a cut tail.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from vcat.gates.checks import Check, Expect, Params, mostly_of, row_count, values_true
from vcat.gates.kinds import images
from vcat.gates.profile import Profile, ProfileError, Table
from vcat.shards import INDEX_NAME
from vcat.video.naming import (
    FRAME_EXT,
    FRAME_LIST_NAME,
    RECORDS_NAME,
    VIDEO_LIST_NAME,
    FrameNameError,
    parse_frame_key,
)
from vcat.video.records import RecordError, read_records

KIND = "frames"
DESCRIPTION = "video frames in shards with videos.jsonl and the video and frame lists"
RUN_NAME = ".run.json"  # the video-frames stage's settings, with the grid's fps
COLUMNS = (
    "item",
    "video",
    "failure",
    "frames",
    "listed",
    "frame_list",
    "recorded",
    "agree",
    "problem",
    "duration",
    "source_fps",
    "expected",
    "deficit",
    "mismatch",
)


def _within_duration(params: Params) -> list[Expect]:
    if params.get("max_deficit") is None:
        return []
    kwargs = {"column": "mismatch", "max_value": params["max_deficit"], **mostly_of(params)}
    return [Expect("ExpectColumnValuesToBeBetween", kwargs)]


CHECKS: list[Check] = [
    *(check for check in images.CHECKS if check.name != "count"),
    row_count("frame_count", "images", "frames: exactly {equal}, or between {min} and {max}"),
    Check(
        "frames_match_duration",
        "videos",
        "every video's frame count within {max_deficit} of its duration x fps",
        {"max_deficit": 1, "videos": None, "max_bad_fraction": 0.0},
        _within_duration,
        "mismatch",
    ),
    values_true(
        "lists_agree",
        "videos",
        "agree",
        "the shards, videos.jsonl, video_list.txt and frame_list.txt give every video the same "
        "frames, numbered from 1 in order",
    ),
    row_count("count", "videos", "videos: exactly {equal}, or between {min} and {max}"),
]


def detect(artifact: Path) -> bool:
    return (artifact / INDEX_NAME).is_file() and (artifact / RECORDS_NAME).is_file()


def _read_text(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ProfileError(
            f"{path}: missing; the video-frames stage writes it last: run it again"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read it ({exc}); run the stage again") from None


def _video_list(path: Path) -> dict[str, int]:
    """Frame dir -> count of ``video_list.txt``; ProfileError naming a line that is not
    ``<frame dir> <count>`` (a later line for the same dir wins, and shows as a mismatch)."""
    counts: dict[str, int] = {}
    for number, line in enumerate(_read_text(path), start=1):
        fields = line.rsplit(" ", 1)
        if len(fields) != 2 or not fields[1].isdigit():
            raise ProfileError(f"{path}:{number}: not '<frame dir> <frame count>': {line!r}")
        counts[fields[0]] = int(fields[1])
    return counts


def _frame_list(path: Path) -> dict[str, list[int]]:
    """Frame dir -> the frame numbers ``frame_list.txt`` gives it, in list order (a line that
    is no frame path counts as frame -1 of its folder, so it shows as a mismatch)."""
    numbers: dict[str, list[int]] = defaultdict(list)
    for line in _read_text(path):
        directory, _, name = line.rpartition("/")
        stem, dot, ext = name.partition(".")
        number = int(stem) if dot and ext == FRAME_EXT and stem.isdigit() else -1
        numbers[directory].append(number)
    return numbers


def _shard_frames(artifact: Path) -> tuple[dict[str, list[int]], int]:
    """Frame dir -> the frame numbers of its samples with a ``.jpg``, in index order, and
    the number of samples that are not frames."""
    index = images.load_index(artifact)
    numbers: dict[str, list[int]] = defaultdict(list)
    strays = 0
    for key, location in index.samples.items():
        try:
            directory, number = parse_frame_key(key)
        except FrameNameError:
            strays += 1
            continue
        if FRAME_EXT in location.members:
            numbers[directory].append(number)
    return numbers, strays


def _grid_fps(artifact: Path) -> Fraction:
    try:
        return Fraction(str(json.loads((artifact / RUN_NAME).read_text("utf-8"))["fps"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(
            f"{artifact / RUN_NAME}: no fps of the video-frames stage in it ({exc}); run the "
            "stage again"
        ) from None


def probe_source(path: Path) -> tuple[float, float, int | None]:
    """Duration (seconds), average frame rate and frame count (None when the container does
    not say) of the video at ``path``, from its metadata; ProfileError when FFmpeg cannot
    open it."""
    import av

    try:
        with av.open(os.fspath(path), metadata_errors="ignore") as container:
            if not container.streams.video:
                raise ProfileError(f"{path}: no video stream; is it the source of these frames?")
            stream = container.streams.best("video")
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / 1_000_000
            else:
                duration = math.nan
            rate = stream.average_rate or stream.guessed_rate
            return duration, float(rate) if rate else math.nan, (stream.frames or None)
    except (av.FFmpegError, OSError) as exc:
        raise ProfileError(f"{path}: cannot read the source video ({exc})") from None


def expected_frames(duration: float, fps: Fraction, source_frames: int | None) -> float:
    """Grid points in ``duration`` seconds at ``fps``: a source slower than the grid keeps
    each of its ``source_frames`` once, so never more than those."""
    if not math.isfinite(duration):
        return math.nan
    points = math.ceil(round(duration * float(fps), 6))
    return float(min(points, source_frames) if source_frames else points)


def _agreement(
    recorded: int, shards: list[int], listed: int | None, frame_list: list[int]
) -> tuple[bool, str]:
    wanted = list(range(1, recorded + 1))
    if shards != wanted:
        return False, f"the shards hold {len(shards)} frame(s), the record {recorded}"
    if recorded and listed != recorded:
        return False, f"video_list.txt gives {listed}, the record {recorded}"
    if not recorded and listed is not None:
        return False, "video_list.txt lists a video without frames"
    if frame_list != wanted:
        return False, f"frame_list.txt gives {len(frame_list)} frame(s), the record {recorded}"
    return True, ""


def video_rows(artifact: Path, shards: Mapping[str, list[int]], params: Mapping[str, Any]) -> Any:
    """The ``videos`` table: one row per record of ``videos.jsonl``, then one per frame dir
    of the shards or lists that no record names; ``shards``: the frame numbers of each frame
    dir in the shards."""
    import pandas as pd

    try:
        records = read_records(artifact / RECORDS_NAME).records
    except RecordError as exc:
        raise ProfileError(str(exc)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{artifact / RECORDS_NAME}: cannot read it ({exc})") from None
    fps = _grid_fps(artifact)
    listed = _video_list(artifact / VIDEO_LIST_NAME)
    frame_list = _frame_list(artifact / FRAME_LIST_NAME)
    source = params.get("videos")
    seen = Counter(record.frame_dir for record in records)
    rows = []
    for record in records:
        agree, problem = _agreement(
            record.frames,
            shards.get(record.frame_dir, []),
            listed.get(record.frame_dir),
            frame_list.get(record.frame_dir, []),
        )
        if seen[record.frame_dir] > 1:
            agree, problem = False, "two records share this frame dir"
        duration = source_fps = expected = math.nan
        if record.failure is None:
            if source:
                duration, source_fps, count = probe_source(Path(source) / record.video)
            else:
                duration, count = float(record.times_ms[-1] / 1000 + 1 / fps), None
            expected = expected_frames(duration, fps, count)
        frames = len(shards.get(record.frame_dir, []))
        deficit = expected - frames
        rows.append(
            (
                record.frame_dir,
                record.video,
                record.failure or "",
                frames,
                listed.get(record.frame_dir, math.nan),
                len(frame_list.get(record.frame_dir, [])),
                record.frames,
                agree,
                problem,
                duration,
                source_fps,
                expected,
                deficit,
                abs(deficit),
            )
        )
    known = {record.frame_dir for record in records}
    for directory in sorted((set(shards) | set(listed) | set(frame_list)) - known):
        problem = "frames or list entries of a video that videos.jsonl does not record"
        frames = len(shards.get(directory, []))
        count = listed.get(directory, math.nan)
        entries = len(frame_list.get(directory, []))
        nan = math.nan
        rows.append(
            (directory, "", "", frames, count, entries, 0, False, problem, nan, nan, nan, nan, nan)
        )
    return pd.DataFrame.from_records(rows, columns=list(COLUMNS))


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    if not detect(artifact):
        raise ProfileError(
            f"{artifact}: no {INDEX_NAME} and {RECORDS_NAME}, so not a finished folder of the "
            "video-frames stage; run it again"
        )
    found = images.tables(artifact, workers)
    duration_params = (params or {}).get("frames_match_duration", {})
    shards, strays = _shard_frames(artifact)
    found["videos"] = Table(video_rows(artifact, shards, duration_params), "item")
    videos = found["videos"].frame
    facts = {
        "failures": images.failure_counts(found["images"].frame),
        "videos": len(videos),
        "videos_failed": int((videos["failure"] != "").sum()),
        "frames": int(videos["frames"].sum()),
        "samples_not_frames": strays,
        "duration_from": "source videos" if duration_params.get("videos") else "frame times",
        # why each disagreeing video disagrees, for the person reading result.json
        "disagreements": problems(videos, "problem"),
    }
    return Profile(KIND, artifact, found, facts)


def problems(table: Any, column: str, limit: int = 100) -> dict[str, str]:
    """The non-empty ``column`` of up to ``limit`` rows, by item."""
    found = table.loc[table[column] != "", ["item", column]].head(limit)
    return {str(item): str(text) for item, text in found.itertuples(index=False)}
