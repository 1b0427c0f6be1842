"""Fonts and emoji for the text, meme and emoji overlays.

Both come from folders the user names (the copy-detection guide uses AugLy's font and emoji
files: the ``augly-fonts`` and ``augly-emoji`` catalog entries, or ``augly/assets/fonts`` and
``augly/assets/twemojis`` of AugLy's wheel), or, when no folder is given, from what ships with
Pillow: its built-in scalable font (Pillow >= 10.1) and emoji-like sprites drawn here (a face,
a heart or a star in a random colour, on a transparent background). Fonts are only opened as
fonts: AugLy's ``.pkl`` character lists beside them are never unpickled.
"""

from __future__ import annotations

import functools
import math
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vcat.regular import open_regular

FONT_SUFFIXES = (".ttf", ".otf")
EMOJI_SUFFIXES = (".png",)
TEXT_CHARACTERS = string.ascii_letters + string.digits + string.punctuation
LETTERS = string.ascii_letters
SPRITE_SIZE = 128

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class AssetError(ValueError):
    """A font or emoji folder that cannot be used; the message names it."""


def asset_files(folder: Path | None, suffixes: tuple[str, ...], what: str) -> tuple[Path, ...]:
    """The files of ``folder`` (searched recursively) whose suffix is one of ``suffixes``,
    sorted by relative path; () for no folder. A folder with none is an AssetError."""
    if folder is None:
        return ()
    if not folder.is_dir():
        raise AssetError(f"{folder}: the {what} folder does not exist or is not a folder")
    files = sorted(
        (path for path in folder.rglob("*") if path.suffix.lower() in suffixes and path.is_file()),
        key=lambda path: path.relative_to(folder).as_posix(),
    )
    if not files:
        raise AssetError(
            f"{folder}: the {what} folder holds no {'/'.join(suffixes)} file; name a folder "
            f"of {what} files or leave the option out to use the built-in ones"
        )
    return tuple(files)


@functools.lru_cache(maxsize=512)
def _truetype(path: str, size: int) -> Font:
    return ImageFont.truetype(path, size)


@functools.lru_cache(maxsize=512)
def _builtin(size: int) -> Font:
    return ImageFont.load_default(size)


@functools.lru_cache(maxsize=1024)
def _emoji_file(path: str) -> Image.Image:
    with open_regular(Path(path)) as stream, Image.open(stream) as image:
        return image.convert("RGBA")


def _ink(font: Font, text: str) -> tuple[tuple[int, int], bytes]:
    mask = font.getmask(text)
    return mask.size, bytes(mask)


@functools.lru_cache(maxsize=512)
def _characters(path: str | None, alphabet: str) -> str:
    """The characters of ``alphabet`` that the font draws as glyphs of their own: not its
    "missing glyph" box, not blank. (AugLy keeps such a list in a pickle beside each font;
    pickles from a download are never loaded here, so the list is measured.)"""
    font = _builtin(32) if path is None else _truetype(path, 32)
    missing = _ink(font, "\U0010fffd")
    drawn = []
    for character in alphabet:
        ink = _ink(font, character)
        if ink != missing and any(ink[1]):
            drawn.append(character)
    return "".join(drawn)


@dataclass(frozen=True)
class Face:
    """A font file (None: Pillow's built-in font) at any size, and what it can draw."""

    path: str | None

    def at(self, size: int) -> Font:
        """The face at ``size`` pixels (at least 1)."""
        size = max(1, int(size))
        return _builtin(size) if self.path is None else _truetype(self.path, size)

    def characters(self, alphabet: str = TEXT_CHARACTERS) -> str:
        """The characters of ``alphabet`` the face has glyphs for, else those of
        TEXT_CHARACTERS it has, else ``alphabet`` (a font that draws none of them)."""
        return (
            _characters(self.path, alphabet) or _characters(self.path, TEXT_CHARACTERS) or alphabet
        )


@dataclass(frozen=True)
class Assets:
    """The fonts and emoji files to draw with (empty: the built-in ones)."""

    fonts: tuple[Path, ...] = ()
    emoji: tuple[Path, ...] = ()

    def face(self, rng: np.random.Generator) -> Face:
        """A font face chosen by ``rng`` among the fonts (the built-in one without fonts)."""
        if not self.fonts:
            return Face(None)
        return Face(str(self.fonts[int(rng.integers(len(self.fonts)))]))

    def sprite(self, rng: np.random.Generator) -> Image.Image:
        """An RGBA emoji, chosen by ``rng`` among the files or drawn."""
        if not self.emoji:
            return draw_sprite(rng)
        return _emoji_file(str(self.emoji[int(rng.integers(len(self.emoji)))]))


def random_text(rng: np.random.Generator, low: int, high: int, alphabet: str) -> str:
    """``low``..``high`` characters drawn from ``alphabet``."""
    length = int(rng.integers(low, high + 1))
    picks = rng.integers(len(alphabet), size=length)
    return "".join(alphabet[int(i)] for i in picks)


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, size=3))
    return red, green, blue


def draw_sprite(rng: np.random.Generator) -> Image.Image:
    """An emoji-like RGBA sprite: a face, a heart or a star in a random colour."""
    size = SPRITE_SIZE
    sprite = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(sprite)
    colour = (*random_colour(rng), 255)
    dark = (20, 20, 20, 255)
    kind = int(rng.integers(3))
    if kind == 0:  # a face
        draw.ellipse((4, 4, size - 4, size - 4), fill=colour, outline=dark, width=3)
        eye = size // 10
        for x in (size * 0.35, size * 0.65):
            draw.ellipse((x - eye, size * 0.38 - eye, x + eye, size * 0.38 + eye), fill=dark)
        mouth = float(rng.uniform(-1.0, 1.0))  # smile or frown
        top, bottom = (size * 0.5, size * 0.8) if mouth >= 0 else (size * 0.62, size * 0.9)
        draw.arc(
            (size * 0.28, top, size * 0.72, bottom),
            start=0 if mouth >= 0 else 180,
            end=180 if mouth >= 0 else 360,
            fill=dark,
            width=4,
        )
    elif kind == 1:  # a heart
        points = []
        for step in range(64):
            t = 2 * math.pi * step / 64
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            points.append((size / 2 + x * size / 36, size / 2 - y * size / 36))
        draw.polygon(points, fill=colour, outline=dark)
    else:  # a star
        points = []
        for step in range(10):
            radius = size * (0.47 if step % 2 == 0 else 0.2)
            angle = math.pi / 2 + math.pi * step / 5
            points.append(
                (size / 2 + radius * math.cos(angle), size / 2 - radius * math.sin(angle))
            )
        draw.polygon(points, fill=colour, outline=dark)
    return sprite


def text_size(font: Font, text: str) -> tuple[int, int]:
    """Width and height of ``text`` drawn at (0, 0) with ``font``, in pixels."""
    _, _, right, bottom = font.getbbox(text)
    return max(0, int(right)), max(0, int(bottom))


def fitting_font(face: Face, text: str, width: int, height: int) -> Font:
    """``face`` at the largest size at which ``text`` fits ``width`` x ``height``."""
    size = max(1, height)
    for _ in range(32):
        font = face.at(size)
        text_width, text_height = text_size(font, text)
        if (text_width <= width and text_height <= height) or size == 1:
            return font
        scale = min(width / max(text_width, 1), height / max(text_height, 1))
        size = max(1, min(size - 1, int(size * scale)))
    return font
