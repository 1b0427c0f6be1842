"""Real image files, good and broken in the ways downloads and trees break them."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def jpeg(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    """A JPEG of seeded noise (noise keeps the entropy-coded data long enough to cut)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def png(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 30_000, height: int = 30_000) -> bytes:
    """A valid PNG of a few hundred bytes that declares ``width`` x ``height`` RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\0" * (1 + 3 * min(width, 1000)) * 4, 9)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", rows)
        + _chunk(b"IEND", b"")
    )


HTML_PAGE = b"<!DOCTYPE html><html><head><title>Not found</title></head><body>gone</body></html>"
TEXT = b"This photo is no longer available.\n"


def broken_images() -> dict[str, tuple[bytes, str]]:
    """Name: (bytes, the failure class that checking them must report), for ``.jpg`` names
    (the PNG ones are named ``.png`` unless the case is the extension)."""
    good = jpeg(1, (160, 120))
    return {
        "empty.jpg": (b"", "empty_file"),
        "page.jpg": (HTML_PAGE, "html_instead_of_file"),
        "note.jpg": (TEXT, "text_instead_of_image"),
        "noise.jpg": (
            bytes(np.random.default_rng(5).integers(0, 256, 4096, np.uint8)),
            "not_an_image",
        ),
        "half.jpg": (good[: len(good) // 2], "truncated_image"),
        "no-end.jpg": (good[:-2], "truncated_image"),
        "half.png": (png(2)[:300], "truncated_image"),
        "bomb.png": (png_bomb(), "decompression_bomb"),
        "warned-bomb.png": (png_bomb(10_000, 10_000), "decompression_bomb"),  # Pillow only warns
        "png-named.jpg": (png(3), "wrong_extension"),
    }
