"""64-bit perceptual hashes (DCT pHash), packed as 8 bytes for faiss's binary indexes.

The hash is the one ``imagehash.phash`` defines: the image in greyscale, resized to 32 x 32
(LANCZOS), its 2-D DCT-II, the top-left 8 x 8 coefficients, each bit set when its coefficient
is above their median. Bits are taken row by row and packed most significant bit first
(``numpy.packbits``), so a hash is a row of ``uint8[8]`` and the Hamming distance between two
hashes is the number of differing bits.

:func:`hash_image` gives imagehash's bits exactly for a decoded image. :func:`hash_bytes`
decodes an encoded image within :class:`vcat.images.ImageLimits` and, for a JPEG, lets the
decoder produce greyscale at a reduced scale (``draft``, at least ``DRAFT_SIDE`` pixels on the
shorter side) instead of decoding and resizing every pixel of a large photo: the hash moves
by a bit or two at most, a re-encoded copy moves it more. The DCT runs as two matrix products
over a whole batch (:func:`hash_pixels`).
"""

from __future__ import annotations

import io
import warnings
from functools import cache

import numpy as np
from PIL import Image

from vcat.images import (
    FORMATS_BY_SUFFIX,
    ImageFailure,
    ImageLimits,
    ImageProblem,
    check_image,
)

HASH_SIDE = 8  # the hash is HASH_SIDE x HASH_SIDE bits
SIDE = 32  # the image is resized to SIDE x SIDE before the DCT
HASH_BYTES = HASH_SIDE * HASH_SIDE // 8
#: The smallest side a JPEG is decoded at: well above SIDE, so LANCZOS sees enough pixels.
DRAFT_SIDE = 128
_DECODERS = sorted(set().union(*FORMATS_BY_SUFFIX.values()) - {"MPO"})


@cache
def _dct_rows() -> np.ndarray:
    """The first HASH_SIDE rows of the unnormalised DCT-II matrix of size SIDE (scipy's
    ``dct(x, type=2, norm=None)``: ``2 * sum_n x[n] cos(pi k (2n + 1) / (2 SIDE))``)."""
    k = np.arange(HASH_SIDE)[:, None]
    n = np.arange(SIDE)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * n + 1) / (2 * SIDE))


def hash_pixels(pixels: np.ndarray) -> np.ndarray:
    """The hashes of a batch of greyscale ``(count, SIDE, SIDE)`` images as ``(count, 8)``
    uint8 rows."""
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 3 or pixels.shape[1:] != (SIDE, SIDE):
        raise ValueError(f"expected (count, {SIDE}, {SIDE}) pixels, got {pixels.shape}")
    rows = _dct_rows()
    low = rows @ pixels @ rows.T  # (count, 8, 8): the low frequencies only
    flat = low.reshape(len(low), -1)
    bits = flat > np.median(flat, axis=1, keepdims=True)
    return np.packbits(bits, axis=1)


def small_grey(image: Image.Image) -> np.ndarray:
    """``image`` as the SIDE x SIDE greyscale pixels the hash is taken from."""
    small = image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    return np.asarray(small, dtype=np.uint8)


def hash_image(image: Image.Image) -> np.ndarray:
    """The hash of a decoded image: ``uint8[8]``, imagehash's phash bits."""
    return hash_pixels(small_grey(image)[None])[0]


def decode_small(
    data: bytes, suffix: str | None = None, limits: ImageLimits | None = None
) -> np.ndarray:
    """The SIDE x SIDE greyscale pixels of the encoded image ``data`` (JPEG drafted).

    Raises :class:`vcat.images.ImageProblem` with its class when ``data`` is not an image that
    decodes within ``limits``; an image is never decoded past ``limits.max_pixels``."""
    limits = limits or ImageLimits()
    try:
        if not data or len(data) > limits.max_bytes:
            raise ValueError("empty or oversized")
        with warnings.catch_warnings():
            # the pixel count is checked below against our own limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=_DECODERS)
        with image:
            width, height = image.size
            if width * height > limits.max_pixels:
                raise ValueError("too many pixels")
            if image.format in ("JPEG", "MPO"):
                scale = max(1, min(width, height) // DRAFT_SIDE)
                image.draft("L", (max(1, width // scale), max(1, height // scale)))
            image.load()
            return small_grey(image)
    except MemoryError:
        raise ImageProblem(ImageFailure.BOMB, "decoding it ran out of memory") from None
    except Exception as exc:  # any decoder's complaint: vcat.images says which class it is
        check_image(data, suffix, limits)
        raise ImageProblem(ImageFailure.CORRUPT, f"does not decode ({exc})") from None


def hash_bytes(
    data: bytes, suffix: str | None = None, limits: ImageLimits | None = None
) -> np.ndarray:
    """The hash of the encoded image ``data`` (``uint8[8]``); ImageProblem when it is not a
    usable image (see :func:`decode_small`)."""
    return hash_pixels(decode_small(data, suffix, limits)[None])[0]


def hamming(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Bitwise distances between hashes: ``(n, 8)`` against ``(m, 8)`` gives ``(n, m)``
    (brute force: the reference faiss is checked against)."""
    a = np.ascontiguousarray(left, dtype=np.uint8).view(np.uint64)  # (n, 1)
    b = np.ascontiguousarray(right, dtype=np.uint8).view(np.uint64)  # (m, 1)
    return np.bitwise_count(a ^ b.T).astype(np.int32)


def to_hex(code: np.ndarray) -> str:
    """A hash as 16 hex digits (imagehash's ``str()`` of the same bits)."""
    return bytes(np.asarray(code, dtype=np.uint8)).hex()
