"""CroCo's ``crops_release.txt``: pair headers, each followed by the crop lines of its pairs.

The format (read by CroCo's ``datasets/crops/extract_crops_from_images.py``)::

    # a comment: any line starting with '#'
    <img1>, <img2>, <rotation>          a pair header: paths relative to the dataset root,
                                        the rotation of image 2 in integer degrees
    l1, r1, t1, b1, l2, r2, t2, b2      a crop line: one output pair, boxes in pixels with
    ...                                 right and bottom exclusive (PIL's crop)

Fields are separated by ``", "`` (comma and space). A line with fewer than 8 fields is a pair
header, one with 8 is a crop line. Every crop line gets the next *global index* in file order,
which names its pair (:mod:`vcat.croco.layout`). Lists have millions of lines, so they are
read as a stream: :func:`read_headers` yields one header (with its crops) at a time and
:func:`summarize` checks a whole file and counts it without keeping it.

Unlike the source script, which crashes on them or reads them as something else, these lines
are errors naming ``file:line``: a field that is not an integer, a field count other than 3 or
8, a crop line before any header, a box that is empty or has a negative coordinate, a path
that is absolute or climbs out of the root with ``..``, and bytes that are not UTF-8. A header
without crop lines is allowed (it makes no pair).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from vcat.regular import NotRegularFile, open_regular

SEPARATOR = ", "
#: A box in PIL's order: left, top, right, bottom (right and bottom exclusive).
Box = tuple[int, int, int, int]

_INTEGER = "[+-]?[0-9]+"
_CROP_LINE = re.compile(f"{_INTEGER}(?:, {_INTEGER}){{7}}")
_ROTATION = re.compile(_INTEGER)
_CONTROL = re.compile("[\x00-\x1f\x7f]")


class CropsFormatError(ValueError):
    """A crop list that cannot be used; the message names the file and line and what is wrong."""


class Crop(NamedTuple):
    """One crop line: one output pair (a tuple: lists hold millions)."""

    index: int  # global index in file order, from 0
    line: int  # 1-based line number in the file
    box1: Box
    box2: Box


@dataclass(frozen=True)
class PairHeader:
    """A pair header and the crop lines that follow it."""

    line: int
    image1: str
    image2: str
    rotation: int  # degrees, as written
    crops: tuple[Crop, ...]


@dataclass(frozen=True)
class CropsSummary:
    """What a whole crop list holds."""

    headers: int
    crops: int


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line, without its line ending."""
    try:
        stream = open_regular(path)  # a FIFO would be waited on forever
    except NotRegularFile as exc:
        raise CropsFormatError(str(exc)) from None
    except OSError as exc:
        raise CropsFormatError(f"{path}: cannot read the crop list: {exc.strerror}") from None
    with stream:
        for number, raw in enumerate(stream, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise CropsFormatError(
                    f"{path}:{number}: not UTF-8 text; is this a crops_release.txt?"
                ) from None
            yield number, text.rstrip("\r\n")


def _crop_boxes(path: Path, number: int, text: str, fields: list[str]) -> tuple[Box, Box]:
    if _CROP_LINE.fullmatch(text) is None:
        raise CropsFormatError(
            f"{path}:{number}: a crop line must be 8 integers 'l1, r1, t1, b1, l2, r2, t2, b2' "
            f"separated by ', '; got {_shown(text)}"
        )
    l1, r1, t1, b1, l2, r2, t2, b2 = map(int, fields)
    if l1 < 0 or t1 < 0 or r1 <= l1 or b1 <= t1 or l2 < 0 or t2 < 0 or r2 <= l2 or b2 <= t2:
        for which, (left, right, top, bottom) in ((1, (l1, r1, t1, b1)), (2, (l2, r2, t2, b2))):
            if min(left, top) < 0 or right <= left or bottom <= top:
                raise CropsFormatError(
                    f"{path}:{number}: box {which} (left {left}, right {right}, top {top}, "
                    f"bottom {bottom}) is empty or outside the image; left < right and "
                    "top < bottom are needed, none negative"
                )
    return (l1, t1, r1, b1), (l2, t2, r2, b2)


def _header(path: Path, number: int, fields: list[str]) -> tuple[str, str, int]:
    if len(fields) != 3:
        raise CropsFormatError(
            f"{path}:{number}: {len(fields)} field(s); a line holds either a pair header "
            "'img1, img2, rotation' (3 fields) or a crop line of 8 integers, separated by ', '"
        )
    image1, image2, rotation = fields
    if _ROTATION.fullmatch(rotation) is None:
        raise CropsFormatError(
            f"{path}:{number}: the rotation {_shown(rotation)} is not an integer (degrees)"
        )
    for image in (image1, image2):
        problem = _path_problem(image)
        if problem:
            raise CropsFormatError(f"{path}:{number}: image path {_shown(image)} {problem}")
    return image1, image2, int(rotation)


def _path_problem(image: str) -> str | None:
    if not image:
        return "is empty"
    if _CONTROL.search(image):
        return "holds a control character"
    if image.startswith("/") or ".." in image.split("/"):
        return "must be relative to the dataset root, without '..'"
    return None


def _shown(text: str) -> str:
    return repr(text) if len(text) <= 80 else f"{text[:80]!r}..."


def read_headers(path: Path) -> Iterator[PairHeader]:
    """Every pair header of the crop list ``path`` with its crops, in file order, checked as
    the module docstring says (CropsFormatError naming file and line)."""
    header: tuple[int, str, str, int] | None = None
    crops: list[Crop] = []
    index = 0
    for number, text in _lines(path):
        if text.startswith("#"):
            continue
        fields = text.split(SEPARATOR)
        if len(fields) >= 8:
            if header is None:
                raise CropsFormatError(
                    f"{path}:{number}: a crop line before any pair header 'img1, img2, rotation'"
                )
            if len(fields) > 8:
                raise CropsFormatError(
                    f"{path}:{number}: {len(fields)} fields; a crop line holds 8 integers "
                    "'l1, r1, t1, b1, l2, r2, t2, b2' separated by ', '"
                )
            box1, box2 = _crop_boxes(path, number, text, fields)
            crops.append(Crop(index, number, box1, box2))
            index += 1
            continue
        image1, image2, rotation = _header(path, number, fields)
        if header is not None:
            yield PairHeader(*header, tuple(crops))
        header, crops = (number, image1, image2, rotation), []
    if header is not None:
        yield PairHeader(*header, tuple(crops))


def summarize(path: Path, images: set[str] | None = None) -> CropsSummary:
    """Check the whole crop list ``path`` and count its pair headers and crop lines; the
    paths of the images its crops need are added to ``images`` when given."""
    headers = crops = 0
    for header in read_headers(path):
        headers += 1
        crops += len(header.crops)
        if images is not None and header.crops:
            images.add(header.image1)
            images.add(header.image2)
    return CropsSummary(headers, crops)
