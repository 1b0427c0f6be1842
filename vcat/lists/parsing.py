"""Blocks of list items parsed into fixed-width path rows, vectorised with numpy.

The formats carry the names of the catalog's list formats (seed-formats.md section B):

``flickr-tsv-gz``
    Tab-separated fields with the path in field ``column`` (0-based; 2 in the Flickr-CC subset
    lists ``flickr_id <TAB> url <TAB> path``); fields after it are allowed.
``kinetics-frames``
    ``<frame_dir> <n_frames>``: the frame folder, one space, the number of frames (a whole
    number, 0 or more). The number is the last field, so the folder is everything before the
    last space.
``path-list``
    The whole line is the path (Krishna-CAM frames, Full ImageNet images).
``memmap-s120``
    A list already in the fixed-width format: entries of ``width`` bytes, NUL-padded.

A line ending in CRLF counts as ending in LF. Every path must fit ``width`` bytes, be UTF-8,
hold no NUL or other control character, and neither begin nor end with a space (the source
project's reader strips white space, so such a path would name another file). The first item
that breaks a rule is an error naming the file and the line (``list:27: ...``) or, in a memmap,
the entry (``list: entry 27: ...``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from vcat.lists.reading import ListFormatError

FLICKR_TSV = "flickr-tsv-gz"
KINETICS_FRAMES = "kinetics-frames"
PATH_LIST = "path-list"
MEMMAP = "memmap-s120"
TEXT_FORMATS = (FLICKR_TSV, KINETICS_FRAMES, PATH_LIST)
FORMATS = (*TEXT_FORMATS, MEMMAP)

_NL, _CR, _TAB, _SPACE = ord("\n"), ord("\r"), ord("\t"), ord(" ")
_MAX_DIGITS = 18  # a frame count below 10**18 fits int64
_CONTROL = np.zeros(256, dtype=bool)  # bytes that are control characters (NUL is padding)
_CONTROL[1:0x20] = True
_CONTROL[0x7F] = True

Problem = tuple[int | None, Callable[[int], str]]


@dataclass(frozen=True)
class Rows:
    """Paths as rows of ``width`` NUL-padded bytes, their lengths, and the frame counts of a
    Kinetics list."""

    rows: NDArray[np.uint8]
    lengths: NDArray[np.intp]
    n_frames: NDArray[np.int64] | None = None

    def __len__(self) -> int:
        return len(self.rows)


def _first(mask: NDArray[np.bool_]) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _raise_first(problems: list[Problem], where: Callable[[int], str]) -> None:
    """ListFormatError for the earliest item with a problem (the first listed on a tie)."""
    found = [(index, describe) for index, describe in problems if index is not None]
    if found:
        index, describe = min(found, key=lambda item: item[0])
        raise ListFormatError(f"{where(index)}: {describe(index)}")


def _line_of_byte(block: bytes, byte: bytes, ends: NDArray[np.intp]) -> int | None:
    """The line holding the first ``byte`` in ``block``, or None."""
    position = block.find(byte)
    return None if position < 0 else int(np.searchsorted(ends, position))


def _first_non_utf8_line(block: bytes) -> int | None:
    if block.isascii():
        return None
    try:
        block.decode("utf-8")
    except UnicodeDecodeError as exc:
        return block.count(b"\n", 0, exc.start)
    return None


def _line_bounds(buf: NDArray[np.uint8], block: bytes) -> tuple[NDArray[np.intp], ...]:
    """Start and end (before the LF or CRLF) of every line of a block of whole lines."""
    newlines = np.flatnonzero(buf == _NL)
    ends = newlines if block.endswith(b"\n") else np.append(newlines, buf.size)
    starts = np.empty_like(ends)
    if ends.size:
        starts[0] = 0
        starts[1:] = ends[:-1] + 1
    ends = ends - ((ends > starts) & (buf[np.maximum(ends - 1, 0)] == _CR))
    return starts, ends


def _field_count_problem(tab_count: int, column: int, empty: bool) -> str:
    if empty:
        return f"an empty line where {column + 1} tab-separated fields are needed"
    if tab_count == 0:
        return f"one field where the path column needs {column + 1} tab-separated fields"
    return f"{tab_count + 1} tab-separated fields where the path column needs {column + 1}"


def _tab_field(
    buf: NDArray[np.uint8], starts: NDArray[np.intp], ends: NDArray[np.intp], column: int
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_], list[Problem]]:
    tabs = np.flatnonzero(buf == _TAB)
    first_tab = np.searchsorted(tabs, starts)
    tab_count = np.searchsorted(tabs, ends) - first_tab
    too_few = tab_count < column
    if tabs.size == 0:
        field_start, field_end = starts, ends
    else:
        last = tabs.size - 1
        before = tabs[np.clip(first_tab + column - 1, 0, last)] + 1
        field_start = starts if column == 0 else np.where(too_few, starts, before)
        after = tabs[np.clip(first_tab + column, 0, last)]
        field_end = np.where(tab_count > column, after, ends)
    problem = (
        _first(too_few),
        lambda i: _field_count_problem(int(tab_count[i]), column, bool(starts[i] == ends[i])),
    )
    return field_start, np.maximum(field_end, field_start), ~too_few, [problem]


def _frames_fields(
    block: bytes, buf: NDArray[np.uint8], starts: NDArray[np.intp], ends: NDArray[np.intp]
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.bool_], list[Problem], NDArray[np.int64]]:
    spaces = np.flatnonzero(buf == _SPACE)
    if spaces.size:
        index = np.searchsorted(spaces, ends) - 1
        last = spaces[np.maximum(index, 0)]
        has_space = (index >= 0) & (last >= starts)
    else:
        last = starts
        has_space = np.zeros(starts.shape, dtype=bool)
    number_start = np.where(has_space, last + 1, ends)
    number_size = ends - number_start
    digits = int(np.clip(number_size.max(initial=1), 1, _MAX_DIGITS))
    window = sliding_window_view(np.frombuffer(block + bytes(digits), dtype=np.uint8), digits)[
        number_start
    ]
    inside = np.arange(digits) < number_size[:, None]
    digits_only = np.all(((window >= ord("0")) & (window <= ord("9"))) | ~inside, axis=1)
    is_number = has_space & (number_size >= 1) & (number_size <= _MAX_DIGITS) & digits_only
    window *= inside & is_number[:, None]
    window[~is_number, 0] = ord("0")
    n_frames = window.view(f"S{digits}").ravel().astype(np.int64)

    def bad_number(i: int) -> str:
        shown = block[number_start[i] : ends[i]].decode("utf-8", "replace")
        return f"the frame count {shown!r} after the last space is not a whole number"

    problems: list[Problem] = [
        (
            _first(~has_space),
            lambda i: (
                "an empty line where `<frame_dir> <n_frames>` is needed"
                if starts[i] == ends[i]
                else "one field where `<frame_dir> <n_frames>` needs two, separated by a space"
            ),
        ),
        (_first(has_space & ~is_number), bad_number),
    ]
    field_end = np.where(has_space, last, ends)
    return starts, field_end, is_number, problems, n_frames


def _used_columns(
    block: bytes, field_start: NDArray[np.intp], lengths: NDArray[np.intp]
) -> NDArray[np.uint8]:
    """The bytes of each field from its start, as many columns as the longest has, the bytes
    past each field's length zeroed."""
    longest = max(1, int(lengths.max(initial=0)))
    padded = np.frombuffer(block + bytes(longest), dtype=np.uint8)
    used = sliding_window_view(padded, longest)[field_start]
    used *= np.arange(longest) < lengths[:, None]
    return used


def _widened(used: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    if used.shape[1] == width:
        return used
    rows = np.zeros((len(used), width), dtype=np.uint8)
    rows[:, : used.shape[1]] = used
    return rows


def _row_problems(
    rows: NDArray[np.uint8], lengths: NDArray[np.intp], usable: NDArray[np.bool_]
) -> list[Problem]:
    """Control characters and white space at either end, in rows whose lengths are right."""
    rows = rows[:, : max(1, int(lengths.max(initial=0)))]
    control = _CONTROL[rows]
    has_control = usable & control.any(axis=1)

    def describe_control(i: int) -> str:
        byte = int(rows[i][control[i]][0])
        return f"the path holds the control character 0x{byte:02x}; paths must be printable"

    n = len(rows)
    first = rows[:, 0] if n else np.zeros(0, dtype=np.uint8)
    last = rows[np.arange(n), np.maximum(lengths - 1, 0)]
    spaced = usable & ((first == _SPACE) | (last == _SPACE))
    for i in np.flatnonzero(usable & ~spaced & ((first >= 0x80) | (last >= 0x80))):
        text = bytes(rows[i, : lengths[i]]).decode("utf-8", "replace")
        spaced[i] = text != text.strip()
    return [
        (_first(has_control), describe_control),
        (
            _first(spaced),
            lambda i: (
                "the path begins or ends with white space, which readers that strip "
                "their lines (the source project's) drop; fix the line"
            ),
        ),
    ]


def parse_lines(
    block: bytes,
    list_format: str,
    width: int,
    source: Path,
    first_line: int = 1,
    column: int = 2,
) -> Rows:
    """The paths (and frame counts) of a block of whole lines of a text list.

    The last line may lack its newline; errors name the line as ``source:<first_line + i>``.
    ``column`` is the path's field in ``flickr-tsv-gz`` lists.
    """
    buf = np.frombuffer(block, dtype=np.uint8)
    starts, ends = _line_bounds(buf, block)
    n_frames = None
    empty_path = "the path is empty"
    if list_format == FLICKR_TSV:
        field_start, field_end, fields_ok, problems = _tab_field(buf, starts, ends, column)
        empty_path = f"the path (field {column + 1}) is empty"
    elif list_format == KINETICS_FRAMES:
        field_start, field_end, fields_ok, problems, n_frames = _frames_fields(
            block, buf, starts, ends
        )
    elif list_format == PATH_LIST:
        field_start, field_end = starts, ends
        fields_ok = starts < ends
        problems = [(_first(~fields_ok), lambda i: "an empty line where a path is needed")]
    else:
        raise ValueError(f"{list_format!r} is not a text list format ({', '.join(TEXT_FORMATS)})")
    lengths = field_end - field_start
    problems += [
        (_first(fields_ok & (lengths <= 0)), lambda i: empty_path),
        (
            _first(fields_ok & (lengths > width)),
            lambda i: (
                f"the path is {lengths[i]} bytes, longer than the {width}-byte slots "
                "of the list; raise the stage's width setting"
            ),
        ),
        (
            _line_of_byte(block, b"\0", ends),
            lambda i: "holds a NUL byte, which the NUL-padded list cannot store",
        ),
        (_first_non_utf8_line(block), lambda i: "holds bytes that are not UTF-8"),
    ]
    clipped = np.clip(lengths, 0, width)
    used = _used_columns(block, field_start, clipped)
    problems += _row_problems(used, clipped, fields_ok & (lengths > 0) & (lengths <= width))
    _raise_first(problems, lambda i: f"{source}:{first_line + i}")
    return Rows(_widened(used, width), clipped, n_frames)


def parse_entries(block: bytes, width: int, source: Path, first_entry: int = 1) -> Rows:
    """The paths of a block of whole ``width``-byte entries of a memmap list; errors name the
    entry as ``source: entry <first_entry + i>``."""
    if len(block) % width:
        entry = first_entry + len(block) // width
        raise ListFormatError(
            f"{source}: entry {entry}: the file ends {len(block) % width} bytes into it; a "
            f"list of {width}-byte entries is a whole number of them (another width, or cut short?)"
        )
    rows = np.frombuffer(block, dtype=np.uint8).reshape(-1, width)
    filled = rows != 0
    lengths = np.where(filled.any(axis=1), width - np.argmax(filled[:, ::-1], axis=1), 0)
    inner_nul = ((rows == 0) & (np.arange(width) < lengths[:, None])).any(axis=1)
    not_utf8 = np.zeros(len(rows), dtype=bool)
    for i in np.flatnonzero((rows >= 0x80).any(axis=1)):
        try:
            bytes(rows[i, : lengths[i]]).decode("utf-8")
        except UnicodeDecodeError:
            not_utf8[i] = True
    usable = (lengths > 0) & ~inner_nul
    problems: list[Problem] = [
        (_first(lengths == 0), lambda i: "the entry is empty (all NUL bytes)"),
        (_first(inner_nul), lambda i: "the path holds a NUL byte before its end"),
        (_first(not_utf8), lambda i: "holds bytes that are not UTF-8"),
        *_row_problems(rows, lengths, usable),
    ]
    _raise_first(problems, lambda i: f"{source}: entry {first_entry + i}")
    return Rows(rows, lengths.astype(np.intp))


def convert_block(
    block: bytes, column: int, width: int, source: Path, first_line: int = 1
) -> NDArray[np.uint8]:
    """The path field ``column`` of every tab-separated line of ``block`` as rows of
    ``width`` NUL-padded bytes (see :func:`parse_lines`)."""
    return parse_lines(block, FLICKR_TSV, width, source, first_line, column).rows
