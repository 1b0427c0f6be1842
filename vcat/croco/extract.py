"""The pixels of CroCo's pairs: the operations of ``extract_crops_from_images.py``, decoding each
source image once for all the pairs that use it.

For one crop, CroCo runs, in this order (Pillow): ``Image.open(path).convert('RGB')``;
``crop(box)``; ``resize((imsize, imsize))`` with LANCZOS when the crop's area is more than 4x
the target's, else BICUBIC; for crop 2 only, a turn by the header's rotation (none within
[-60, 60] degrees, else ``round(rotation / 90) % 4`` quarter turns, Pillow's ``ROTATE_90`` /
``ROTATE_180`` / ``ROTATE_270``, which turn counter-clockwise); and ``save`` as JPEG at Pillow's
default quality (75). :func:`prepare_crop` and :func:`encode_jpeg` do exactly these calls, so the
bytes are CroCo's. The one thing done differently gives the same pixels: ``convert('RGB')`` of
an image that is already RGB is a copy, so it is skipped.

The work is cut into :class:`Task` objects (runs of consecutive pair headers); a task decodes
each image once into a small LRU cache and cuts every crop of its headers from it, where CroCo
decodes both images again for every header. A source image that cannot be read, and a crop
box that reaches past its image (where Pillow's ``crop`` would pad with black), make the
pairs that need them failures of their class; the other pairs go on.

``reduced_decode`` (off by default) decodes a JPEG at 1/2, 1/4 or 1/8 scale (libjpeg's DCT
scaling, Pillow's ``draft``) when every crop cut from it still has at least ``imsize`` pixels
on each side at that scale. That is faster but not CroCo's pixels, so it is for users who do
not need CroCo's exact bytes: on crops of 520-1100 px from 1600 x 1200 photos (bench/crops.py
--sides 520 1100 --reduced) it was 3.2x faster, with a mean difference of 1.2 grey levels, at
most 63, PSNR 41 dB. It never applies to a crop under twice ``imsize``.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vcat.croco.crops_file import Box, Crop, PairHeader
from vcat.images import FORMATS_BY_SUFFIX, ImageFailure
from vcat.regular import NotRegularFile, open_regular

#: the class of a pair whose crop box reaches past its source image
CROP_OUTSIDE = "crop_outside_image"
_DECODERS = sorted(set().union(*FORMATS_BY_SUFFIX.values()) - {"MPO"})  # JPEG opens MPO
_TURNS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}
_DRAFT_SCALES = (8, 4, 2)


def effective_rotation(rotation: int) -> int:
    """The turn CroCo gives crop 2, in degrees (0, 90, 180 or 270), for a header's rotation."""
    if -60 <= rotation <= 60:
        return 0  # most likely not a true rotation
    return (round(rotation / 90) % 4) * 90


def resample_for(crop_size: tuple[int, int], imsize: int) -> Image.Resampling:
    """LANCZOS when the crop's area is more than 4x the target's, else BICUBIC (CroCo's rule)."""
    if crop_size[0] * crop_size[1] > 4 * imsize * imsize:
        return Image.Resampling.LANCZOS
    return Image.Resampling.BICUBIC


def prepare_crop(image: Image.Image, box: Box, imsize: int, turn: int = 0) -> Image.Image:
    """``box`` (left, top, right, bottom) of ``image`` resized to ``imsize`` square and turned
    by ``turn`` degrees (a value of :func:`effective_rotation`), as CroCo does."""
    crop = image.crop(box)
    crop = crop.resize((imsize, imsize), resample=resample_for(crop.size, imsize))
    return crop.transpose(_TURNS[turn]) if turn else crop


def encode_jpeg(image: Image.Image) -> bytes:
    """``image`` as a JPEG at Pillow's defaults (quality 75), the bytes of CroCo's ``save``."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return buffer.getvalue()


class SourceProblem(Exception):
    """A source image that cannot be used: its failure class and a message for a person."""

    def __init__(self, failure: str, message: str) -> None:
        super().__init__(f"{failure}: {message}")
        self.failure = failure
        self.message = message


@dataclass
class Decoded:
    """A source image in RGB, and the factor its coordinates were divided by (``draft``)."""

    image: Image.Image
    size: tuple[int, int]  # the full size, before any reduction
    scale: int = 1


def _draft_scale(size: tuple[int, int], smallest_crop_side: int, imsize: int) -> int:
    for scale in _DRAFT_SCALES:
        if smallest_crop_side // scale >= imsize and min(size) // scale >= 1:
            return scale
    return 1


def decode_rgb(path: Path, *, smallest_crop_side: int | None = None, imsize: int = 0) -> Decoded:
    """The image at ``path`` as RGB pixels (CroCo's ``Image.open(path).convert('RGB')``).

    With ``smallest_crop_side`` (reduced decoding), a JPEG is decoded at the coarsest scale
    that leaves that many pixels at least ``imsize``. Raises SourceProblem with its class.
    """
    try:
        with open_regular(path) as stream:
            opened = Image.open(stream, formats=_DECODERS)
            size = opened.size
            scale = 1
            if smallest_crop_side is not None and opened.format in ("JPEG", "MPO"):
                scale = _draft_scale(size, smallest_crop_side, imsize)
                if scale > 1:
                    opened.draft("RGB", (size[0] // scale, size[1] // scale))
            opened.load()  # the pixels are in memory: the file may close
        image = opened if opened.mode == "RGB" else opened.convert("RGB")
    except FileNotFoundError:
        raise SourceProblem(ImageFailure.UNREADABLE, "no such file") from None
    except NotRegularFile as exc:
        raise SourceProblem(ImageFailure.NOT_A_FILE, f"{exc.kind}, not a regular file") from None
    except UnidentifiedImageError:
        raise SourceProblem(ImageFailure.NOT_AN_IMAGE, "not an image Pillow reads") from None
    except Image.DecompressionBombError as exc:
        raise SourceProblem(ImageFailure.BOMB, str(exc)) from None
    except MemoryError:
        raise SourceProblem(ImageFailure.BOMB, "decoding it ran out of memory") from None
    except PermissionError as exc:
        raise SourceProblem(ImageFailure.UNREADABLE, exc.strerror or str(exc)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        failure = ImageFailure.CORRUPT
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            failure = ImageFailure.TRUNCATED
        raise SourceProblem(failure, f"does not decode ({exc or type(exc).__name__})") from None
    return Decoded(image, size, scale)


@dataclass(frozen=True)
class PairFailure:
    """A pair that was not made: its index, line, the image at fault, the class and why."""

    index: int
    line: int
    image: str
    failure: str
    message: str


#: a pair's two JPEGs (crop 1, crop 2), or why it has none
PairResult = tuple[bytes, bytes] | PairFailure


@dataclass(frozen=True)
class Task:
    """Consecutive pair headers, with only the crops to make now (the others are done or
    excluded); decoded together so each image is decoded once."""

    headers: tuple[PairHeader, ...]

    @property
    def pairs(self) -> int:
        return sum(len(header.crops) for header in self.headers)


@dataclass(frozen=True)
class ExtractSettings:
    root: Path
    imsize: int = 256
    cache_images: int = 8
    reduced_decode: bool = False


@dataclass
class ImageCache:
    """The last ``capacity`` images used (a failure is remembered like an image)."""

    capacity: int
    decodes: int = 0
    _images: OrderedDict[str, Decoded | SourceProblem] = field(default_factory=OrderedDict)

    def get(self, name: str, load: Callable[[str], Decoded]) -> Decoded | SourceProblem:
        if name in self._images:
            self._images.move_to_end(name)
            return self._images[name]
        self.decodes += 1
        try:
            value: Decoded | SourceProblem = load(name)
        except SourceProblem as problem:
            value = problem
        self._images[name] = value
        while len(self._images) > max(1, self.capacity):
            self._images.popitem(last=False)
        return value


def planned_decodes(headers: Iterable[PairHeader], capacity: int) -> int:
    """How many images :func:`run_task` decodes for these headers (one task), crops or not."""
    cache = ImageCache(capacity)
    for header in headers:
        if header.crops:
            cache.get(header.image1, _nothing)
            cache.get(header.image2, _nothing)
    return cache.decodes


def _nothing(name: str) -> Decoded:
    raise SourceProblem("", "")


def _smallest_sides(task: Task) -> dict[str, int]:
    sides: dict[str, int] = {}
    for header in task.headers:
        for crop in header.crops:
            for name, (left, top, right, bottom) in (
                (header.image1, crop.box1),
                (header.image2, crop.box2),
            ):
                side = min(right - left, bottom - top)
                sides[name] = min(side, sides.get(name, side))
    return sides


def _inside(box: Box, size: tuple[int, int]) -> bool:
    return box[2] <= size[0] and box[3] <= size[1]


def _cut(decoded: Decoded, box: Box, imsize: int, turn: int) -> bytes:
    if decoded.scale == 1:
        return encode_jpeg(prepare_crop(decoded.image, box, imsize, turn))
    scaled = tuple(value / decoded.scale for value in box)
    area = (scaled[2] - scaled[0]) * (scaled[3] - scaled[1])
    resample = Image.Resampling.LANCZOS if area > 4 * imsize * imsize else Image.Resampling.BICUBIC
    crop = decoded.image.resize((imsize, imsize), resample=resample, box=scaled)
    return encode_jpeg(crop.transpose(_TURNS[turn]) if turn else crop)


def run_task(task: Task, settings: ExtractSettings) -> list[tuple[int, PairResult]]:
    """Every crop of ``task`` as ``(index, result)``, in index order."""
    sides = _smallest_sides(task) if settings.reduced_decode else {}

    def load(name: str) -> Decoded:
        if settings.reduced_decode:
            return decode_rgb(
                settings.root / name, smallest_crop_side=sides[name], imsize=settings.imsize
            )
        return decode_rgb(settings.root / name)

    cache = ImageCache(settings.cache_images)
    results: list[tuple[int, PairResult]] = []
    for header in task.headers:
        if not header.crops:
            continue
        first = cache.get(header.image1, load)
        second = cache.get(header.image2, load)
        turn = effective_rotation(header.rotation)
        for crop in header.crops:
            results.append((crop.index, _pair(header, crop, first, second, turn, settings.imsize)))
    return results


def _pair(
    header: PairHeader,
    crop: Crop,
    first: Decoded | SourceProblem,
    second: Decoded | SourceProblem,
    turn: int,
    imsize: int,
) -> PairResult:
    sides = ((header.image1, first, crop.box1), (header.image2, second, crop.box2))
    for name, decoded, box in sides:
        if isinstance(decoded, SourceProblem):
            return PairFailure(crop.index, crop.line, name, decoded.failure, decoded.message)
        if not _inside(box, decoded.size):
            left, top, right, bottom = box
            width, height = decoded.size
            return PairFailure(
                crop.index,
                crop.line,
                name,
                CROP_OUTSIDE,
                f"line {crop.line}: box (left {left}, right {right}, top {top}, bottom {bottom}) "
                f"reaches past the {width} x {height} image",
            )
    assert isinstance(first, Decoded) and isinstance(second, Decoded)
    return _cut(first, crop.box1, imsize, 0), _cut(second, crop.box2, imsize, turn)
