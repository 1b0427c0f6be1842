"""The images of a features run and how each reaches the network.

Two inputs are accepted (:func:`find_items`):

- a MegaDepth root (``scene_info/<scene>.npz``, read by :mod:`vcat.geometry.megadepth`): the
  used images of every scene file, with their camera, pose and depth file;
- a plain folder of images: every file with an image extension under it, without geometry.

Items are named by their path relative to the root (POSIX separators), which is the key of
their group in the features file, and are sorted by that name.

:func:`prepare` reads one item the way VOP's dump does: the image decoded by OpenCV (RGB),
resized so its long side is the network's input size (the short side rounded, as
LightGlue's ``load_image`` does), then zero-padded (black) at the bottom and right to a
square; depth resized with nearest neighbours to the same size and padded with zeros; the
intrinsics scaled by the resize (VOP's ``scale_intrinsics``: ``diag(sx, sy, 1) @ K``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from vcat.geometry import megadepth
from vcat.geometry.overlap import GeometryError
from vcat.images import FORMATS_BY_SUFFIX
from vcat.regular import NotRegularFile, read_regular

MAX_IMAGE_BYTES = 256 << 20
INTERPOLATIONS = {
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
}


class InputError(ValueError):
    """The input root cannot be used; the message names it and says what to do."""


@dataclass(frozen=True)
class Geometry:
    """An image's camera (COLMAP conventions) and depth file, where the dataset has them."""

    K: NDArray[np.float64]
    world_to_camera: NDArray[np.float64]
    depth_file: Path


@dataclass(frozen=True)
class Item:
    """One image to describe: its name (group key), file and geometry (None: a plain image)."""

    name: str
    path: Path
    geometry: Geometry | None = None


@dataclass
class Prepared:
    """An item read for the network: the padded square image (uint8 HxWx3, RGB) and every
    dataset of its group but the network's outputs; or the reason it could not be read."""

    name: str
    image: NDArray[np.uint8] | None
    arrays: dict[str, NDArray] = field(default_factory=dict)
    failure: str | None = None


def _megadepth_items(root: Path, allow_pickle: bool) -> list[Item]:
    items = []
    for scene_file in megadepth.find_scenes(root):
        try:
            images = megadepth.read_scene_info(scene_file, root, allow_pickle=allow_pickle)
        except GeometryError as exc:
            raise InputError(str(exc)) from None
        for image in images:
            geometry = Geometry(image.K, image.world_to_camera, image.depth_file)
            items.append(Item(image.image_path, root / image.image_path, geometry))
    return items


def _folder_items(root: Path) -> list[Item]:
    items = []
    for path in root.rglob("*"):
        if path.suffix.lower().lstrip(".") in FORMATS_BY_SUFFIX and path.is_file():
            items.append(Item(path.relative_to(root).as_posix(), path))
    return items


def find_items(root: Path, *, allow_pickle: bool = False) -> list[Item]:
    """The images under ``root`` sorted by name (module docstring); InputError when there are
    none, or when two rows name the same image."""
    if not root.is_dir():
        raise InputError(f"{root}: not a folder; give a MegaDepth root or a folder of images")
    is_megadepth = (root / megadepth.INFO_FOLDER).is_dir()
    items = _megadepth_items(root, allow_pickle) if is_megadepth else _folder_items(root)
    if not items:
        what = "no used image in its scene files" if is_megadepth else "no image file"
        raise InputError(f"{root}: {what}; give a MegaDepth root or a folder of images")
    items.sort(key=lambda item: item.name)
    for before, after in itertools.pairwise(items):
        if before.name == after.name:
            raise InputError(f"{root}: the image {after.name} is listed twice")
    return items


def resized_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the long side ``size`` and the other rounded, at least 1."""
    scale = size / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def nearest_resize(array: NDArray, width: int, height: int) -> NDArray:
    """``array`` (H x W) resized by nearest neighbour: source index ``floor(i * in / out)``,
    as torch's ``nearest`` mode (no value is blended, so depth stays measured depth)."""
    rows = np.minimum(np.arange(height) * array.shape[0] // height, array.shape[0] - 1)
    cols = np.minimum(np.arange(width) * array.shape[1] // width, array.shape[1] - 1)
    return array[rows[:, None], cols[None, :]]


def pad_square(array: NDArray, size: int) -> NDArray:
    """``array`` in the top-left corner of a ``size`` x ``size`` canvas of zeros."""
    out = np.zeros((size, size, *array.shape[2:]), dtype=array.dtype)
    out[: array.shape[0], : array.shape[1]] = array
    return out


def decode(path: Path) -> NDArray[np.uint8]:
    """The image file ``path`` as RGB uint8 (H x W x 3); ValueError naming the problem."""
    try:
        data = read_regular(path, MAX_IMAGE_BYTES)
    except NotRegularFile as exc:
        raise ValueError(f"{exc.kind}, not a regular file") from None
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    if len(data) > MAX_IMAGE_BYTES:
        raise ValueError(f"larger than {MAX_IMAGE_BYTES:,} bytes")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("does not decode as an image")
    return np.ascontiguousarray(image[..., ::-1])


def prepare(item: Item, size: int, interpolation: str, store_depth: bool) -> Prepared:
    """``item`` read and resized for a ``size`` x ``size`` network input (module docstring),
    with the arrays of its group: ``image_size`` and ``original_image_size`` ``[w, h]`` int64
    (resized before padding; as read), and for an item with geometry ``scales`` (float32
    ``[w'/w, h'/h]``), ``K`` (float32, scaled), ``original_K`` (float64), ``T_w2cam``
    (float32 4x4) and, with ``store_depth``, ``depth`` (float32 ``size`` x ``size``).
    A file that cannot be read gives a ``Prepared`` with its ``failure``."""
    try:
        image = decode(item.path)
    except ValueError as exc:
        return Prepared(item.name, None, failure=f"{item.path}: {exc}")
    height, width = image.shape[:2]
    new_w, new_h = resized_size(width, height, size)
    if (new_w, new_h) != (width, height):
        image = cv2.resize(image, (new_w, new_h), interpolation=INTERPOLATIONS[interpolation])
    arrays: dict[str, NDArray] = {
        "image_size": np.array([new_w, new_h], dtype=np.int64),
        "original_image_size": np.array([width, height], dtype=np.int64),
    }
    if item.geometry is not None:
        scales = np.array([new_w / width, new_h / height], dtype=np.float32)
        K = np.diag([*scales.astype(np.float64), 1.0]) @ item.geometry.K
        arrays["scales"] = scales
        arrays["K"] = K.astype(np.float32)
        arrays["original_K"] = item.geometry.K.astype(np.float64)
        arrays["T_w2cam"] = item.geometry.world_to_camera.astype(np.float32)
        if store_depth:
            try:
                depth = megadepth.read_depth_h5(item.geometry.depth_file)
            except GeometryError as exc:
                return Prepared(item.name, None, failure=str(exc))
            arrays["depth"] = pad_square(nearest_resize(depth, new_w, new_h), size)
    return Prepared(item.name, pad_square(image, size), arrays)
