"""The one naming scheme of extracted video frames, shared by the writer, the lists and readers.

A video ``<dir>/<name>.<ext>`` gets a *frame dir*: its relative path without the extension
(``relative``, the default: class folders are kept and no two videos collide), or the source
project's flat ``<name up to its first dot>`` (``basename``, so that frame lists published with
the paper, which name frame dirs that way, match). Its kept frames are numbered from 1 and
named ``%05d.jpg`` (the pattern the source project's ffmpeg call writes); the source project's
reader must be given ``fname_fmt=PYTHON_PATTERN`` instead of its default ``{:03d}.jpeg``.

- shard sample key of frame n: ``<frame dir>/<n:05d>``, member ``<key>.jpg``;
- path in an unpacked tree and in the plain frame list: ``<frame dir>/<n:05d>.jpg``;
- line of the Kinetics-style video list: ``<frame dir> <frame count>``.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath

FIRST_FRAME = 1
FRAME_EXT = "jpg"
FFMPEG_PATTERN = "%05d.jpg"
PYTHON_PATTERN = "{:05d}.jpg"
FRAME_DIR_SCHEMES = ("relative", "basename")

VIDEO_LIST_NAME = "video_list.txt"  # Kinetics style: "<frame dir> <frame count>" per video
FRAME_LIST_NAME = "frame_list.txt"  # Krishna-CAM style: one frame path per line
RECORDS_NAME = "videos.jsonl"  # one record per video in input order: frames and times, or failure
FAILURES_NAME = "failures.tsv"  # the videos that gave no frames, with their failure class

_FRAME_KEY = re.compile(r"(.+)/(\d{5,})")
_UNLISTABLE = re.compile(r"\s")  # the video list separates its fields with a space


class FrameNameError(ValueError):
    """A video path that cannot name a frame dir; the message says why."""


def frame_dir(video: str, scheme: str = "relative") -> str:
    """The frame dir of ``video`` (a relative POSIX path) under ``scheme``."""
    path = PurePosixPath(video)
    if scheme == "relative":
        name = str(path.with_suffix("")) if path.suffix else str(path)
    elif scheme == "basename":
        name = path.name.split(".")[0]
    else:
        raise FrameNameError(f"frame dir scheme {scheme!r} is not one of {FRAME_DIR_SCHEMES}")
    if not name or _UNLISTABLE.search(name):
        raise FrameNameError(
            f"{video}: its frame dir {name!r} is empty or holds white space, which the "
            "'<frame dir> <frame count>' list cannot carry; rename the video or its folder"
            + (", or use frame_dirs: basename" if scheme == "relative" else "")
        )
    return name


def frame_name(number: int) -> str:
    """``00001.jpg`` for frame 1."""
    return PYTHON_PATTERN.format(number)


def frame_key(directory: str, number: int) -> str:
    """The shard sample key of frame ``number`` of ``directory`` (its member adds ``.jpg``)."""
    return f"{directory}/{number:05d}"


def frame_path(directory: str, number: int) -> str:
    """The path of frame ``number`` in an unpacked tree and in the plain frame list."""
    return f"{directory}/{frame_name(number)}"


def parse_frame_key(key: str) -> tuple[str, int]:
    """``(frame dir, number)`` of a sample key made by :func:`frame_key`."""
    match = _FRAME_KEY.fullmatch(key)
    if match is None:
        raise FrameNameError(f"{key!r} is not a frame key <frame dir>/<number, 5+ digits>")
    return match.group(1), int(match.group(2))


def video_list_line(directory: str, count: int) -> str:
    """One line of the Kinetics-style video list, with its newline."""
    return f"{directory} {count}\n"
