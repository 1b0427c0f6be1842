"""CroCo's crop metadata for the demo MegaDepth scenes (``MegaDepth/crops_release.txt``).

The format of CroCo's ``crop_metadata.zip`` (read by its ``extract_crops_from_images.py``):
lines starting with ``#`` are comments; fields are separated by ``", "``; a line of three
fields is a pair header ``img1, img2, rotation`` (paths relative to the dataset root, the
in-plane rotation of image 2 against image 1 in integer degrees); each following line of
eight integers ``l1, r1, t1, b1, l2, r2, t2, b2`` is one crop pair, boxes in pixels with the
right and bottom edges exclusive (PIL's ``crop``).

Image paths follow the MegaDepth release that CroCo's guide reads: ``<scene>/images/<name>.jpg``
under the dataset root. In demo-megadepth that root is its ``Undistorted_SfM/`` folder (see
:func:`vcat.demo.megadepth.release_path`), so CroCo's ``--root-dir`` is
``<demo-megadepth>/Undistorted_SfM``.

Pairs are taken between views close along the street (each even view with the next and the
third next), where they overlap enough, with up to two crops each: a few hundred crop pairs.

Box 1 is a random square in image 1; box 2 is the square around where box 1's pixels land in
image 2 through the exact depth and poses, kept only when most of box 1 is seen in image 2
and most of box 2 comes back into box 1. The rotation is how far image 1's x axis is turned
clockwise in image 2 (degrees): CroCo turns crop 2 counter-clockwise by it (PIL's
``ROTATE_90`` for 90), rounded to a multiple of 90 and ignored within +-60. Only the
training scenes are listed: the held-out scene never appears (the upstream release has
MegaDepth-1500 test scenes in its training crops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vcat.demo.megadepth import published_depth, release_path
from vcat.demo.publish import atomic_output
from vcat.demo.scenes import (
    TEST_SCENES,
    TRAIN_SCENES,
    Camera,
    DepthMap,
    get_scene,
    mat_vec,
    overlap,
    transfer,
    transpose,
    visible,
)

CROPS_PATH = Path("MegaDepth") / "crops_release.txt"
CROP_SEED = 2023
MIN_PAIR_OVERLAP = 0.3  # pairs that share less are not listed
CROPS_PER_PAIR = 2
PARTNER_STEPS = (1, 3)  # view i (even) is paired with views i + 1 and i + 3
ATTEMPTS_PER_PAIR = 24
SIDE = (96, 192)  # box 1's side in pixels, inclusive
MIN_SIDE = 48  # box 2 smaller than this is rejected
MIN_SEEN = 0.7  # of box 1's pixels with depth, the fraction image 2 must see
MIN_RETURNED = 0.5  # of box 2's pixels with depth, the fraction landing in box 1, seen
SAMPLE_STRIDE = 4

Box = tuple[int, int, int, int]  # left, right, top, bottom; right and bottom exclusive


@dataclass(frozen=True)
class CropPair:
    """A pair header and its crop lines."""

    image1: str
    image2: str
    rotation: int
    crops: tuple[tuple[Box, Box], ...]


def relative_rotation(first: Camera, second: Camera) -> int:
    """Degrees, clockwise on screen, that ``first``'s x axis is turned by in ``second``'s
    image: turning crop 2 counter-clockwise by this (as CroCo does) aligns it with crop 1."""
    x_axis = mat_vec(transpose(first.rotation), (1.0, 0.0, 0.0))
    in_second = mat_vec(second.rotation, x_axis)
    # image y points down, so atan2(y, x) is the clockwise angle on screen
    return round(math.degrees(math.atan2(in_second[1], in_second[0])))


def _box_samples(box: Box) -> tuple[np.ndarray, np.ndarray]:
    left, right, top, bottom = box
    rows = np.arange(top + SAMPLE_STRIDE // 2, bottom, SAMPLE_STRIDE)
    cols = np.arange(left + SAMPLE_STRIDE // 2, right, SAMPLE_STRIDE)
    row_grid, col_grid = np.meshgrid(rows, cols, indexing="ij")
    return row_grid.ravel(), col_grid.ravel()


def _landing(
    box: Box, source: Camera, source_depth: DepthMap, target: Camera, target_depth: DepthMap
) -> tuple[int, np.ndarray, np.ndarray]:
    """How many sampled pixels of ``box`` have depth, and where those ``target`` sees land."""
    rows, cols = _box_samples(box)
    z = source_depth[rows, cols]
    keep = z > 0
    x, y, zt = transfer(source, target, cols[keep], rows[keep], z[keep])
    seen = visible(target_depth, x, y, zt)
    return int(np.count_nonzero(keep)), x[seen], y[seen]


def box_around(x: np.ndarray, y: np.ndarray) -> Box:
    """The square around the bounding box of the points ``(x, y)`` (image coordinates)."""
    side = math.ceil(max(float(x.max() - x.min()), float(y.max() - y.min())))
    left = math.floor((float(x.min()) + float(x.max()) - side) / 2)
    top = math.floor((float(y.min()) + float(y.max()) - side) / 2)
    return left, left + side, top, top + side


def fraction_in_box(
    box: Box,
    source: Camera,
    source_depth: DepthMap,
    target: Camera,
    target_depth: DepthMap,
    into: Box,
) -> float:
    """Of ``box``'s sampled pixels with depth, the fraction ``target`` sees inside ``into``."""
    total, x, y = _landing(box, source, source_depth, target, target_depth)
    left, right, top, bottom = into
    inside = (x >= left) & (x < right) & (y >= top) & (y < bottom)
    return int(np.count_nonzero(inside)) / total if total else 0.0


def _crop(
    rng: np.random.Generator,
    first: Camera,
    first_depth: DepthMap,
    second: Camera,
    second_depth: DepthMap,
) -> tuple[Box, Box] | None:
    """One attempt at a crop pair; None when the drawn box does not make a good one."""
    side = int(rng.integers(SIDE[0], SIDE[1] + 1))
    left = int(rng.integers(0, first.width - side + 1))
    top = int(rng.integers(0, first.height - side + 1))
    box1 = (left, left + side, top, top + side)
    total, x, y = _landing(box1, first, first_depth, second, second_depth)
    if total == 0 or x.size < MIN_SEEN * total:
        return None
    box2 = box_around(x, y)
    l2, r2, t2, b2 = box2
    if r2 - l2 < MIN_SIDE or l2 < 0 or t2 < 0 or r2 > second.width or b2 > second.height:
        return None
    back = fraction_in_box(box2, second, second_depth, first, first_depth, box1)
    return (box1, box2) if back >= MIN_RETURNED else None


def scene_crops(scene_id: str, scene_index: int) -> list[CropPair]:
    """The crop pairs of one scene: each even view with its partners, where they overlap
    enough."""
    scene = get_scene(scene_id)
    cameras = scene.cameras
    depths = [published_depth(scene_id, camera.name) for camera in cameras]
    pairs = []
    for i in range(0, len(cameras), 2):
        first = cameras[i]
        for j in (i + step for step in PARTNER_STEPS):
            if j >= len(cameras):
                continue
            second = cameras[j]
            if overlap(first, depths[i], second, depths[j], stride=8) < MIN_PAIR_OVERLAP:
                continue
            rng = np.random.default_rng([CROP_SEED, scene_index, i, j])
            crops: list[tuple[Box, Box]] = []
            for _ in range(ATTEMPTS_PER_PAIR):
                crop = _crop(rng, first, depths[i], second, depths[j])
                if crop is not None:
                    crops.append(crop)
                    if len(crops) == CROPS_PER_PAIR:
                        break
            if crops:
                pairs.append(
                    CropPair(
                        release_path(scene_id, first.name),
                        release_path(scene_id, second.name),
                        relative_rotation(first, second),
                        tuple(crops),
                    )
                )
    return pairs


def crops_text(pairs: list[CropPair]) -> str:
    """``pairs`` in the ``crops_release.txt`` format."""
    lines = [
        f"# CroCo crop pairs of the demo-megadepth scenes {', '.join(TRAIN_SCENES)}; "
        f"{', '.join(TEST_SCENES)} is held out",
        "# pair: img1, img2, rotation (paths <scene>/images/<name>.jpg, relative to"
        " demo-megadepth's Undistorted_SfM/; degrees)",
        "# crop: l1, r1, t1, b1, l2, r2, t2, b2 (pixels; right and bottom exclusive)",
    ]
    for pair in pairs:
        lines.append(f"{pair.image1}, {pair.image2}, {pair.rotation}")
        for box1, box2 in pair.crops:
            lines.append(", ".join(str(value) for value in (*box1, *box2)))
    return "\n".join(lines) + "\n"


def build_croco_metadata(out: Path) -> None:
    """Write ``MegaDepth/crops_release.txt`` (training scenes only) under the empty ``out``."""
    pairs = []
    for index, scene_id in enumerate(TRAIN_SCENES):
        pairs += scene_crops(scene_id, index)
    with atomic_output(out / CROPS_PATH) as stream:
        stream.write(crops_text(pairs).encode("utf-8"))
