"""The pool of transforms an augmented copy draws from, by name.

A transform takes an RGB image (``uint8`` array, height x width x 3), the copy's generator and
the :class:`Context` (output size, other images, fonts, emoji) and returns a new RGB image; it
draws every random choice from the generator it is given. :data:`DEFAULT_POOL` is the pool of
the copy-detection guide, with the guide's parameter ranges. Where albumentations has the
transform it does the work (seeded from the copy's generator, so it is deterministic too);
Pillow does sharpening; what neither has is written here with numpy and Pillow: channel
shift/swap/invert, blending with, overlaying onto and stacking with another image, stripes,
pixel shuffling, meme captions, text and emoji overlays.

More transforms can be registered with :func:`register` (a name and a function) and named in
a stage's ``transforms`` setting; a transform that raises makes its copy try again with the
next attempt's generator (see :mod:`vcat.copydetect.generate`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import albumentations as A
import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from vcat.copydetect.names import GUIDE_POOL
from vcat.copydetect.overlays import (
    LETTERS,
    Assets,
    fitting_font,
    random_colour,
    random_text,
)
from vcat.copydetect.seeds import child_seed

RGB = np.ndarray  # uint8, height x width x 3


@dataclass(frozen=True)
class Context:
    """What transforms may use besides the image: the output side, another image (chosen
    with the generator passed to ``other``) and the fonts and emoji."""

    size: int
    other: Callable[[np.random.Generator], RGB]
    assets: Assets = field(default_factory=Assets)


Transform = Callable[[RGB, np.random.Generator, Context], RGB]
_REGISTRY: dict[str, Transform] = {}


class UnknownTransform(KeyError):
    """A transform name that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(name: str) -> Callable[[Transform], Transform]:
    """Register ``function`` as the transform ``name`` (a decorator); a name is registered once."""

    def decorate(function: Transform) -> Transform:
        if name in _REGISTRY and _REGISTRY[name] is not function:
            raise ValueError(f"a transform called {name!r} is already registered")
        _REGISTRY[name] = function
        return function

    return decorate


def unregister(name: str) -> None:
    """Remove the transform ``name`` (for transforms registered for one run)."""
    _REGISTRY.pop(name, None)


def registered() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_REGISTRY)


def get(name: str) -> Transform:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(_REGISTRY)
        raise UnknownTransform(f"no transform called {name!r} (known: {known})") from None


def check_names(names: list[str] | tuple[str, ...]) -> None:
    """UnknownTransform naming the first unknown name; ValueError for a repeated one."""
    for name in names:
        get(name)
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise ValueError(f"transforms named more than once: {', '.join(repeated)}")


def resize(image: RGB, width: int, height: int) -> RGB:
    """``image`` resized with Pillow's bicubic filter (as the guide's ``x.resize``)."""
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return np.asarray(Image.fromarray(image).resize((width, height), Image.Resampling.BICUBIC))


def square(image: RGB, context: Context) -> RGB:
    return resize(image, context.size, context.size)


def _albumentations(transform: A.BasicTransform, image: RGB, rng: np.random.Generator) -> RGB:
    transform.set_random_seed(child_seed(rng))
    return np.ascontiguousarray(transform(image=image)["image"])


@functools.cache
def _library(name: str, size: int) -> A.BasicTransform:
    """The albumentations transforms with fixed ranges, made once per process."""
    if name == "random_resized_crop":
        return A.RandomResizedCrop(size=(size, size), scale=(0.3, 1.0), p=1.0)
    factories: dict[str, Callable[[], A.BasicTransform]] = {
        "rotate": lambda: A.Rotate(limit=(0, 360), crop_border=True, p=1.0),
        "grayscale": lambda: A.ToGray(num_output_channels=3, p=1.0),
        "color_jitter": lambda: A.ColorJitter(
            brightness=(0.0, 4.0), contrast=(0.0, 5.0), saturation=(0.0, 5.0), hue=(-0.5, 0.5), p=1
        ),
        "blur": lambda: A.GaussianBlur(sigma_limit=(2.0, 5.0), blur_limit=0, p=1.0),
        "pixelize": lambda: A.Downscale(
            scale_range=(0.1, 1.0),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_NEAREST},
            p=1.0,
        ),
        "noise": lambda: A.GaussNoise(std_range=(0.0, 0.71), mean_range=(0.0, 0.5), p=1.0),
        "vflip": lambda: A.VerticalFlip(p=1.0),
        "hflip": lambda: A.HorizontalFlip(p=1.0),
        "jpeg": lambda: A.ImageCompression(quality_range=(1, 50), p=1.0),
        # the guide's skew factor in [-2, 2] is a shear of atan(2) = 63.4 degrees at most
        "skew": lambda: A.Affine(shear={"x": (-63.4, 63.4), "y": (0.0, 0.0)}, p=1.0),
        "perspective": lambda: A.Perspective(scale=(0.02, 0.1), p=1.0),
    }
    return factories[name]()


def _library_transform(name: str) -> Transform:
    def apply(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
        return _albumentations(_library(name, context.size), image, rng)

    apply.__name__ = name
    return apply


for _name in (
    "random_resized_crop",
    "rotate",
    "grayscale",
    "color_jitter",
    "blur",
    "pixelize",
    "noise",
    "vflip",
    "hflip",
    "jpeg",
    "skew",
    "perspective",
):
    register(_name)(_library_transform(_name))


@register("change_channel")
def change_channel(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """One of: red and blue shifted apart diagonally by 0-39 px (borders cut), the channels
    in a random order, or each channel inverted with probability 1/2; then resized square."""
    choice = int(rng.integers(3))
    pixels = image.copy()
    if choice == 0:
        shift = int(rng.uniform(0, 40))
        shift = min(shift, (min(pixels.shape[:2]) - 1) // 2)
        if shift > 0:
            pixels[..., 0] = np.roll(pixels[..., 0], (shift, -shift), axis=(0, 1))
            pixels[..., 2] = np.roll(pixels[..., 2], (-shift, shift), axis=(0, 1))
            pixels = pixels[shift:-shift, shift:-shift]
    elif choice == 1:
        pixels = pixels[..., rng.permutation(3)]
    else:
        flags = rng.integers(2, size=3).astype(bool)
        pixels[..., flags] = 255 - pixels[..., flags]
    return square(np.ascontiguousarray(pixels), context)


@register("pad_square")
def pad_square(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """Padded to a square with a random colour, centred; then resized square."""
    side = max(image.shape[:2])
    pad = A.PadIfNeeded(
        min_height=side, min_width=side, position="center", fill=random_colour(rng), p=1.0
    )
    return square(_albumentations(pad, image, rng), context)


@register("pad")
def pad(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """0-50% of the width added left and right, 0-50% of the height above and below, in a
    random colour; then resized square."""
    height, width = image.shape[:2]
    left = int(rng.uniform(0.0, 0.5) * width)
    top = int(rng.uniform(0.0, 0.5) * height)
    padding = A.Pad(padding=(left, top, left, top), fill=random_colour(rng), p=1.0)
    return square(_albumentations(padding, image, rng), context)


@register("blend")
def blend(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """Blended with another image, both resized square: ``other * (1 - a) + image * a`` with
    the opacity ``a`` in [0.2, 1]."""
    opacity = float(rng.uniform(0.2, 1.0))
    other = Image.fromarray(square(context.other(rng), context))
    mine = Image.fromarray(square(image, context))
    return np.asarray(Image.blend(other, mine, opacity))


@register("sharpen")
def sharpen(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """Pillow's sharpness enhancement by a factor in [2, 20]."""
    factor = float(rng.uniform(2.0, 20.0))
    return np.asarray(ImageEnhance.Sharpness(Image.fromarray(image)).enhance(factor))


@register("stripes")
def stripes(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """Parallel stripes of a random colour and opacity at an angle in [0, 360) degrees: the
    density in [0, 1] sets their spacing ((1 - density) x the shorter side), the width in
    [0, 1] the share of each period they cover."""
    width_share = float(rng.uniform(0.0, 1.0))
    colour = np.array(random_colour(rng), dtype=np.float32)
    angle = np.deg2rad(float(rng.integers(0, 361)))
    density = float(rng.uniform(0.0, 1.0))
    opacity = float(rng.uniform(0.0, 1.0))
    height, width = image.shape[:2]
    spacing = max((1.0 - density) * min(height, width), 1.0)
    xs = (np.arange(width, dtype=np.float32) - width / 2) * np.float32(np.sin(angle))
    ys = (np.arange(height, dtype=np.float32) - height / 2) * np.float32(np.cos(angle))
    along = ys[:, None] + xs[None, :]
    phase = np.mod(along / spacing, 1.0)
    mask = (phase < width_share).astype(np.float32)[..., None] * opacity
    mixed = image.astype(np.float32) * (1.0 - mask) + colour * mask
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)


@register("shuffle_pixels")
def shuffle_pixels(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """A share in [0.1, 0.5] of the pixels, chosen at random, permuted among themselves."""
    factor = float(rng.uniform(0.1, 0.5))
    height, width = image.shape[:2]
    flat = image.reshape(height * width, 3).copy()
    chosen = rng.choice(height * width, size=int(factor * height * width), replace=False)
    flat[chosen] = flat[rng.permutation(chosen)]
    return flat.reshape(height, width, 3)


def _with_alpha(layer: Image.Image, opacity: float) -> Image.Image:
    """``layer`` (RGBA) with its alpha multiplied by ``opacity``."""
    alpha = np.asarray(layer.getchannel("A"), dtype=np.float32) * opacity
    faded = layer.copy()
    faded.putalpha(Image.fromarray(np.clip(np.rint(alpha), 0, 255).astype(np.uint8)))
    return faded


def _paste(base: Image.Image, layer: Image.Image, box: tuple[int, int], opacity: float) -> RGB:
    """``layer`` (any mode) pasted onto ``base`` at ``box`` with ``opacity``, as RGB."""
    canvas = base.convert("RGBA")
    canvas.alpha_composite(_with_alpha(layer.convert("RGBA"), opacity), dest=box)
    return np.asarray(canvas.convert("RGB"))


def _overlay(
    base: Image.Image, layer: Image.Image, size_share: float, x: float, y: float, opacity: float
) -> RGB:
    """``layer`` scaled to ``size_share`` of ``base``'s height (aspect kept) and pasted with its
    top-left corner at (``x``, ``y``) x ``base``'s size; the part outside ``base`` is cut."""
    height = max(1, int(base.height * size_share))
    width = max(1, int(layer.width * height / layer.height))
    scaled = layer.resize((width, height), Image.Resampling.BICUBIC)
    left, top = int(base.width * x), int(base.height * y)
    visible = scaled.crop((0, 0, min(width, base.width - left), min(height, base.height - top)))
    return _paste(base, visible, (left, top), opacity)


@register("emoji")
def emoji(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """An emoji of 20-100% of the image height, opacity in [0.2, 1], its corner in the
    top-left quarter."""
    sprite = context.assets.sprite(rng)
    opacity = float(rng.uniform(0.2, 1.0))
    share = float(rng.uniform(0.2, 1.0))
    x, y = (float(v) for v in rng.uniform(0.0, 0.5, size=2))
    return _overlay(Image.fromarray(image), sprite, share, x, y, opacity)


@register("overlay_onto")
def overlay_onto(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """The image, at 50-100% of another image's height and opacity in [0.6, 1], pasted onto
    that other image with its corner in the top-left quarter; then resized square."""
    background = Image.fromarray(context.other(rng))
    opacity = float(rng.uniform(0.6, 1.0))
    share = float(rng.uniform(0.5, 1.0))
    x, y = (float(v) for v in rng.uniform(0.0, 0.5, size=2))
    return square(_overlay(background, Image.fromarray(image), share, x, y, opacity), context)


@register("stack")
def stack(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """The image and another, both resized square, side by side or one above the other, in
    a random order; then resized square."""
    other = square(context.other(rng), context)
    mine = square(image, context)
    first, second = (mine, other) if int(rng.integers(2)) == 0 else (other, mine)
    axis = int(rng.integers(2))  # 0: one above the other, 1: side by side
    return square(np.concatenate([first, second], axis=axis), context)


@register("text")
def text(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """0-20 random characters of a random font, colour and opacity, the font size 0-100% of
    the shorter side, starting in the top-left quarter."""
    face = context.assets.face(rng)
    words = random_text(rng, 0, 20, face.characters())
    colour = random_colour(rng)
    opacity = float(rng.uniform(0.0, 1.0))
    share = float(rng.uniform(0.0, 1.0))
    x, y = (float(v) for v in rng.uniform(0.0, 0.5, size=2))
    height, width = image.shape[:2]
    font = face.at(int(min(height, width) * share))
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    ImageDraw.Draw(layer).text((x * width, y * height), words, font=font, fill=(*colour, 255))
    return _paste(Image.fromarray(image), layer, (0, 0), opacity)


@register("meme")
def meme(image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """A caption band of 100-300 px in a random colour above the image, holding 1-10 random
    letters as large as fit, centred, of a random colour and opacity; then resized square."""
    face = context.assets.face(rng)
    words = random_text(rng, 1, 10, face.characters(LETTERS))
    opacity = float(rng.uniform(0.0, 1.0))
    colour = random_colour(rng)
    band = int(rng.integers(100, 301))
    background = random_colour(rng)
    height, width = image.shape[:2]
    canvas = Image.new("RGB", (width, height + band), background)
    canvas.paste(Image.fromarray(image), (0, band))
    font = fitting_font(face, words, max(width - 10, 1), band - 10)
    left, top, right, bottom = font.getbbox(words)
    layer = Image.new("RGBA", canvas.size, (0, 0, 0, 0))
    origin = ((width - (right - left)) / 2 - left, (band - (bottom - top)) / 2 - top)
    ImageDraw.Draw(layer).text(origin, words, font=font, fill=(*colour, 255))
    return square(_paste(canvas, layer, (0, 0), opacity), context)


DEFAULT_POOL = GUIDE_POOL


class BadOutput(ValueError):
    """A transform returned something that is not an RGB image."""


def apply(name: str, image: RGB, rng: np.random.Generator, context: Context) -> RGB:
    """Transform ``name`` applied to ``image``; BadOutput when it returns no RGB image."""
    result = get(name)(image, rng, context)
    if (
        not isinstance(result, np.ndarray)
        or result.dtype != np.uint8
        or result.ndim != 3
        or result.shape[2] != 3
        or min(result.shape[:2]) < 1
    ):
        shape = getattr(result, "shape", type(result).__name__)
        raise BadOutput(f"returned {shape}, not an RGB uint8 image")
    return result
