"""The demo copy-detection set: references, edited copies as queries, distractors, ground truth.

Laid out as DISC21 publishes it (seed-formats.md section C): ``references/R000000.jpg`` ...,
``queries/Q00000.jpg`` ... and ``ground_truth.csv``. A query is either an edited copy of one
reference (a few edits drawn from crop, resize, rotation, colour jitter, blur, JPEG
re-encoding and overlay onto another image) or a distractor that copies none.

``ground_truth.csv`` is written as DISC21's ``public_ground_truth.csv`` is: the header
``query_id,reference_id``, then one row per query in query-id order, the reference empty for a
distractor (``Q00005,``), LF line ends. isc2021's ``read_ground_truth`` skips the empty rows.

Each photo is split in two: references are cut from disjoint cells of its left part, and
distractors and overlay backgrounds from its right part, so no query shares content with a
reference other than the one the ground truth names.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from vcat.demo.imageops import (
    RGBImage,
    blur,
    crop_box,
    jitter_colour,
    overlay,
    random_crop,
    reencode_jpeg,
    resize_long_side,
    rotate,
)
from vcat.demo.photos import PHOTO_NAMES, load_photo
from vcat.demo.publish import atomic_output, save_jpeg

SEED = 2021
# the reference part of each photo is cut into GRID cells, one reference per cell
GRID = (3, 2)  # rows, columns
REFERENCE_SHARE = 0.6  # left fraction of each photo width holding the references
COPY_COUNT = 30
DISTRACTOR_COUNT = 10
LONG_SIDE = (224, 320)
# every generator is keyed [SEED, stream, item], so no two draws share a stream
_REFERENCE_STREAM = 0
_QUERY_STREAM = 1
_PLAN_STREAM = 2


def reference_id(index: int) -> str:
    return f"R{index:06d}"


def query_id(index: int) -> str:
    return f"Q{index:05d}"


def reference_count() -> int:
    """How many references there are: one per grid cell of every photo."""
    return len(PHOTO_NAMES) * GRID[0] * GRID[1]


def _split(pixels: RGBImage) -> tuple[RGBImage, RGBImage]:
    """The reference part (left) and the distractor part (right) of a photo."""
    cut = round(pixels.shape[1] * REFERENCE_SHARE)
    return pixels[:, :cut], pixels[:, cut:]


def _reference(index: int) -> RGBImage:
    rng = np.random.default_rng([SEED, _REFERENCE_STREAM, index])
    rows, cols = GRID
    photo, cell = divmod(index, rows * cols)
    part, _ = _split(load_photo(PHOTO_NAMES[photo]).pixels)
    height, width = part.shape[0] // rows, part.shape[1] // cols
    row, col = divmod(cell, cols)
    cell_pixels = part[row * height : (row + 1) * height, col * width : (col + 1) * width]
    top, left, bottom, right = crop_box(rng, height, width, area=(0.6, 1.0))
    pixels = cell_pixels[top:bottom, left:right]
    return resize_long_side(pixels, int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1)))


def _distractor_part(rng: np.random.Generator) -> RGBImage:
    """A random crop of the right part of a random photo."""
    _, part = _split(load_photo(PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))]).pixels)
    return random_crop(rng, part, area=(0.4, 1.0))


Edit = Callable[[np.random.Generator, RGBImage], RGBImage]

EDITS: dict[str, Edit] = {
    "crop": lambda rng, px: random_crop(rng, px, area=(0.4, 0.85)),
    "resize": lambda rng, px: resize_long_side(
        px, max(32, round(max(px.shape[:2]) * rng.uniform(0.5, 1.5)))
    ),
    "rotation": lambda rng, px: rotate(rng, px, max_degrees=30),
    "colour": lambda rng, px: jitter_colour(rng, px, strength=0.35),
    "blur": lambda rng, px: blur(rng, px, radius=(1.0, 3.0)),
    "jpeg": lambda rng, px: reencode_jpeg(rng, px, quality=(10, 40)),
    "overlay": lambda rng, px: overlay(
        rng, px, resize_long_side(_distractor_part(rng), 320), scale=(0.45, 0.75)
    ),
}


def _edited_copy(index: int, reference: RGBImage) -> RGBImage:
    """2 to 4 distinct edits, drawn and applied in a seeded order."""
    rng = np.random.default_rng([SEED, _QUERY_STREAM, index])
    names = list(EDITS)
    chosen = rng.choice(len(names), size=int(rng.integers(2, 5)), replace=False)
    pixels = reference
    for position in chosen:
        pixels = np.ascontiguousarray(EDITS[names[int(position)]](rng, pixels))
    return pixels


def _distractor(index: int) -> RGBImage:
    rng = np.random.default_rng([SEED, _QUERY_STREAM, index])
    pixels = _distractor_part(rng)
    pixels = resize_long_side(pixels, int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1)))
    return jitter_colour(rng, pixels, strength=0.2)


def build_copydetect(out: Path) -> None:
    """Write ``references/``, ``queries/`` and ``ground_truth.csv`` under ``out``."""
    references = [_reference(index) for index in range(reference_count())]
    for index, pixels in enumerate(references):
        save_jpeg(out / "references" / f"{reference_id(index)}.jpg", pixels)

    plan = np.random.default_rng([SEED, _PLAN_STREAM])
    copied = plan.choice(len(references), size=COPY_COUNT, replace=False)
    query_count = COPY_COUNT + DISTRACTOR_COUNT
    # query slots in shuffled order: the first COPY_COUNT slots are copies, the rest distractors
    slots = plan.permutation(query_count)
    references_of: dict[str, str] = {}
    for position, slot in enumerate(slots):
        index = int(slot)
        if position < COPY_COUNT:
            source = int(copied[position])
            pixels = _edited_copy(index, references[source])
            references_of[query_id(index)] = reference_id(source)
        else:
            pixels = _distractor(index)
            references_of[query_id(index)] = ""
        save_jpeg(out / "queries" / f"{query_id(index)}.jpg", pixels)

    text = "query_id,reference_id\n" + "".join(
        f"{query},{references_of[query]}\n" for query in sorted(references_of)
    )
    with atomic_output(out / "ground_truth.csv") as stream:
        stream.write(text.encode("ascii"))
