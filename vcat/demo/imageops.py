"""Seeded image edits for the demo world: crops, resizes, colour changes, geometric edits.

Every function takes its random choices from the ``numpy.random.Generator`` it is given and
uses only operations whose results do not depend on the CPU (elementwise float32 arithmetic,
Pillow's resamplers and encoders pinned by the ``demo`` extra), so that equal generators give
equal pixels on every build.
"""

from __future__ import annotations

import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

RGBImage = NDArray[np.uint8]


def crop_box(
    rng: np.random.Generator,
    height: int,
    width: int,
    area: tuple[float, float],
    aspect: tuple[float, float] = (3 / 4, 4 / 3),
) -> tuple[int, int, int, int]:
    """A random ``(top, left, bottom, right)`` box inside a ``height x width`` image.

    The box covers a fraction in ``area`` of the image and has a width/height ratio in
    ``aspect`` (drawn log-uniformly), shrunk where needed to fit.
    """
    fraction = rng.uniform(*area)
    ratio = float(np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]))))
    target = fraction * height * width
    box_w = min(width, max(8, round((target * ratio) ** 0.5)))
    box_h = min(height, max(8, round((target / ratio) ** 0.5)))
    top = int(rng.integers(0, height - box_h + 1))
    left = int(rng.integers(0, width - box_w + 1))
    return top, left, top + box_h, left + box_w


def random_crop(rng: np.random.Generator, pixels: RGBImage, area: tuple[float, float]) -> RGBImage:
    """A random crop covering a fraction in ``area`` of ``pixels``."""
    top, left, bottom, right = crop_box(rng, pixels.shape[0], pixels.shape[1], area)
    return pixels[top:bottom, left:right]


def resize_long_side(pixels: RGBImage, long_side: int) -> RGBImage:
    """``pixels`` scaled (Lanczos) so that its longer side is ``long_side`` pixels."""
    height, width = pixels.shape[:2]
    scale = long_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.LANCZOS))


def jitter_colour(rng: np.random.Generator, pixels: RGBImage, strength: float) -> RGBImage:
    """Brightness, contrast and saturation each scaled by a factor in ``1 +- strength``."""
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, size=3)
    x = pixels.astype(np.float32)
    grey = x[..., 0] * 0.299 + x[..., 1] * 0.587 + x[..., 2] * 0.114
    x = grey[..., None] + (x - grey[..., None]) * np.float32(saturation)
    x = (x - 128) * np.float32(contrast) + 128
    x = x * np.float32(brightness)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def rotate(rng: np.random.Generator, pixels: RGBImage, max_degrees: float) -> RGBImage:
    """Rotated by up to ``max_degrees`` either way, the canvas grown and filled with one colour."""
    angle = float(rng.uniform(-max_degrees, max_degrees))
    fill = tuple(int(v) for v in rng.integers(0, 256, size=3))
    image = Image.fromarray(pixels).rotate(
        angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=fill
    )
    return np.asarray(image)


def blur(rng: np.random.Generator, pixels: RGBImage, radius: tuple[float, float]) -> RGBImage:
    """Gaussian blur with a radius drawn from ``radius``."""
    amount = float(rng.uniform(*radius))
    return np.asarray(Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(amount)))


def reencode_jpeg(rng: np.random.Generator, pixels: RGBImage, quality: tuple[int, int]) -> RGBImage:
    """``pixels`` after a round trip through JPEG at a quality drawn from ``quality``."""
    buffer = io.BytesIO()
    level = int(rng.integers(quality[0], quality[1] + 1))
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=level)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"))


def overlay(
    rng: np.random.Generator,
    pixels: RGBImage,
    background: RGBImage,
    scale: tuple[float, float],
) -> RGBImage:
    """``pixels`` shrunk to a fraction in ``scale`` of ``background``'s size, pasted at random."""
    bg_h, bg_w = background.shape[:2]
    fraction = rng.uniform(*scale)
    long_side = max(8, round(fraction * min(bg_h, bg_w)))
    inset = resize_long_side(pixels, long_side)
    in_h, in_w = inset.shape[:2]
    top = int(rng.integers(0, bg_h - in_h + 1))
    left = int(rng.integers(0, bg_w - in_w + 1))
    canvas = background.copy()
    canvas[top : top + in_h, left : left + in_w] = inset
    return canvas
