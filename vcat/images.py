"""Whether bytes or a file are an image that decodes, within bounded size.

Where images enter the project (a dataset tree that dataset-stats describes, the images a
subset list downloads), each one is decoded once, so that an empty file, a web page or a text
saved as ``.jpg``, a transfer cut short, or a header that declares a 30,000 x 30,000 canvas is
recorded as a failure of its class instead of being counted, stored and found by a training
run weeks later.

The check reads at most ``max_bytes``, refuses more than ``max_pixels`` (Pillow's decompression
bomb warning and error become the ``decompression_bomb`` class without changing Pillow's
global settings; a ``max_pixels`` above twice Pillow's ``MAX_IMAGE_PIXELS`` is capped there)
and decodes the pixel data to the end, since a header reads fine from a file cut in half.
JPEGs are decoded at 1/8 scale (``draft``), which still reads every entropy-coded byte, so
truncation is caught at less than half the cost of a full decode; other formats are decoded
fully.
"""

from __future__ import annotations

import io
import threading
import warnings
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from vcat.failures import looks_like_html
from vcat.regular import NotRegularFile, out_of_resources, read_regular

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485

#: The Pillow formats an image file's extension promises (MPO: a JPEG with extra frames).
FORMATS_BY_SUFFIX: dict[str, frozenset[str]] = {
    "jpg": frozenset({"JPEG", "MPO"}),
    "jpeg": frozenset({"JPEG", "MPO"}),
    "jpe": frozenset({"JPEG", "MPO"}),
    "png": frozenset({"PNG"}),
    "ppm": frozenset({"PPM"}),
    "pgm": frozenset({"PPM"}),
    "pbm": frozenset({"PPM"}),
    "pnm": frozenset({"PPM"}),
    "bmp": frozenset({"BMP"}),
    "webp": frozenset({"WEBP"}),
    "gif": frozenset({"GIF"}),
    "tif": frozenset({"TIFF"}),
    "tiff": frozenset({"TIFF"}),
}
#: Only these decoders ever see the bytes (a smaller attack surface than all of Pillow's).
_DECODERS = sorted(set().union(*FORMATS_BY_SUFFIX.values()) - {"MPO"})
_OPEN_LOCK = threading.Lock()


class ImageFailure(StrEnum):
    """Why a file is not a usable image."""

    EMPTY = "empty_file"
    HTML = "html_instead_of_file"
    TEXT = "text_instead_of_image"
    NOT_AN_IMAGE = "not_an_image"
    WRONG_EXTENSION = "wrong_extension"
    TRUNCATED = "truncated_image"
    CORRUPT = "corrupt_image"
    BOMB = "decompression_bomb"
    OVERSIZED = "oversized"
    NOT_A_FILE = "not_a_regular_file"
    UNREADABLE = "unreadable"


class ImageProblem(Exception):
    """A file or body that is not a usable image: its class and the reason, for a person."""

    def __init__(self, failure: ImageFailure, reason: str) -> None:
        self.failure = ImageFailure(failure)
        self.reason = reason
        super().__init__(f"{self.failure}: {reason}")


@dataclass(frozen=True)
class ImageLimits:
    """The most bytes and pixels an image may have."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclass(frozen=True)
class ImageInfo:
    """What decoding found: Pillow's format name and the size in pixels."""

    format: str
    width: int
    height: int


class _TooManyPixels(Exception):
    pass


def _looks_like_text(head: bytes) -> bool:
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start > len(head) - 4  # a character cut by the sample's end
    return True


def _decode(data: bytes, limits: ImageLimits) -> tuple[ImageInfo, Image.Image]:
    # The warnings filter is process-wide: the lock keeps threads from restoring each other's
    # filters, and holds only while the header is parsed (where Pillow checks the size), so
    # decoding runs in parallel. The size is checked here too, whatever the filters are.
    with _OPEN_LOCK, warnings.catch_warnings():
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
        image = Image.open(io.BytesIO(data), formats=_DECODERS)
    width, height = image.size
    if width * height > limits.max_pixels:
        image.close()
        raise _TooManyPixels(f"declares {width:,} x {height:,} pixels")
    if image.format in ("JPEG", "MPO"):
        # libjpeg still reads every coefficient (a cut or corrupt stream fails), but skips
        # most of the inverse DCT: an eighth of the size, several times faster
        image.draft(None, (max(1, width // 8), max(1, height // 8)))
    try:
        image.load()
    except BaseException:
        image.close()
        raise
    return ImageInfo(str(image.format), width, height), image


def check_image(
    data: bytes, suffix: str | None = None, limits: ImageLimits | None = None
) -> ImageInfo:
    """What the image in ``data`` is; raises ImageProblem with its class when it is not one
    that decodes to the end within ``limits``, or when its format is not the one that
    ``suffix`` (an extension such as ``jpg``, with or without the dot) promises."""
    info, image = load_image(data, suffix, limits)
    image.close()
    return info


def load_image(
    data: bytes, suffix: str | None = None, limits: ImageLimits | None = None
) -> tuple[ImageInfo, Image.Image]:
    """``check_image``, and the decoded pixels: a JPEG at an eighth of its size (each side
    rounded up), other formats whole. ``ImageInfo`` has the full size."""
    limits = limits or ImageLimits()
    if not data:
        raise ImageProblem(ImageFailure.EMPTY, "the file is empty (0 bytes)")
    if len(data) > limits.max_bytes:
        raise ImageProblem(ImageFailure.OVERSIZED, f"larger than {limits.max_bytes:,} bytes")
    try:
        info, image = _decode(data, limits)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, _TooManyPixels) as exc:
        size = f"{exc}; " if isinstance(exc, _TooManyPixels) else ""
        raise ImageProblem(
            ImageFailure.BOMB, f"{size}more pixels than the limit of {limits.max_pixels:,}"
        ) from None
    except UnidentifiedImageError:
        head = data[:1024]
        if looks_like_html(head):
            raise ImageProblem(ImageFailure.HTML, "a web page, not an image") from None
        if _looks_like_text(head):
            raise ImageProblem(ImageFailure.TEXT, "text, not an image") from None
        raise ImageProblem(ImageFailure.NOT_AN_IMAGE, "not an image format") from None
    except MemoryError:
        raise ImageProblem(ImageFailure.BOMB, "decoding it ran out of memory") from None
    except Exception as exc:  # any decoder's complaint about the bytes: they do not decode
        failure = ImageFailure.CORRUPT
        if isinstance(exc, EOFError) or "truncated" in str(exc).lower():
            failure = ImageFailure.TRUNCATED
        raise ImageProblem(failure, f"does not decode ({exc or type(exc).__name__})") from None
    expected = FORMATS_BY_SUFFIX.get((suffix or "").lower().lstrip("."))
    if expected is not None and info.format not in expected:
        image.close()
        raise ImageProblem(
            ImageFailure.WRONG_EXTENSION,
            f"holds a {info.format} image, not what its extension .{suffix.lstrip('.')} says",
        )
    return info, image


def check_image_file(path: Path, limits: ImageLimits | None = None) -> ImageInfo:
    """:func:`check_image` of the file ``path`` (its suffix gives the expected format); a FIFO,
    device or socket is refused without being opened, a file is read only up to the limit.
    Raises ImageProblem; an OSError when the process is out of file descriptors or memory."""
    limits = limits or ImageLimits()
    try:
        data = read_regular(path, limits.max_bytes)
    except NotRegularFile as exc:
        raise ImageProblem(ImageFailure.NOT_A_FILE, f"{exc.kind}, not a regular file") from None
    except OSError as exc:
        if out_of_resources(exc):
            raise
        raise ImageProblem(ImageFailure.UNREADABLE, exc.strerror or str(exc)) from None
    return check_image(data, path.suffix, limits)
