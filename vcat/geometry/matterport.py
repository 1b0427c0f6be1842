"""Matterport3D's undistorted camera files and depth images, as LoCUS reads them.

``<scan>/undistorted_camera_parameters/<scan>.conf`` is a text file of lines::

    dataset matterport
    n_images <n>
    depth_directory undistorted_depth_images
    color_directory undistorted_color_images
    intrinsics_matrix <fx> 0 <cx> 0 <fy> <cy> 0 0 1
    scan <depth.png> <color.jpg> <16 numbers: camera-to-world, row-major>
    ...

Each ``scan`` line takes the intrinsics of the last ``intrinsics_matrix`` line before it.
Matterport3D documents the camera-to-world matrix for a canonical camera that looks down -z
with y up (OpenGL's), and image origins at the bottom-left, so ``cy`` is measured from the
bottom row. :meth:`ScanImage.view` converts both to :mod:`vcat.geometry`'s conventions, as
LoCUS's loader does: the pose times ``diag(1, -1, -1, 1)`` on the right, then inverted; and
``cy`` replaced by ``height - cy`` (with pixel centres at ``+0.5`` the flip is exact). Every
array returned is new: no image shares its intrinsics with another.

Depth images (``undistorted_depth_images/*.png``) are 16-bit PNGs in units of 0.25 mm
(4000 per metre), 0 where unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

from vcat.geometry.overlap import GeometryError, View
from vcat.regular import open_regular

CAMERA_FOLDER = "undistorted_camera_parameters"
DEPTH_FOLDER = "undistorted_depth_images"
COLOR_FOLDER = "undistorted_color_images"
DEPTH_UNITS_PER_METRE = 4000.0
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])
_HEADER_KEYS = ("dataset", "n_images", "depth_directory", "color_directory")
_RIGID_TOLERANCE = 1e-4


@dataclass(frozen=True, eq=False)
class ScanImage:
    """One ``scan`` line: file names, the intrinsics and camera-to-world matrix as written."""

    line: int
    depth_name: str
    color_name: str
    intrinsics: NDArray[np.float64]  # principal point from the bottom-left, as in the file
    camera_to_world: NDArray[np.float64]  # OpenGL camera, as in the file

    def view(self, width: int, height: int) -> View:
        """The image as a :class:`View` (top-left origin, OpenCV camera) for a depth map of
        ``width`` x ``height`` pixels, the size the file's intrinsics refer to."""
        K = np.array(self.intrinsics, dtype=np.float64, copy=True)
        K[1, 2] = height - K[1, 2]
        camera_to_world = self.camera_to_world @ GL_TO_CV
        rotation = camera_to_world[:3, :3]
        world_to_camera = np.eye(4)
        world_to_camera[:3, :3] = rotation.T
        world_to_camera[:3, 3] = -rotation.T @ camera_to_world[:3, 3]
        return View(self.color_name, K, world_to_camera, width, height)


def _numbers(path: Path, number: int, fields: list[str], what: str) -> list[float]:
    try:
        values = [float(field) for field in fields]
    except ValueError:
        raise GeometryError(f"{path}:{number}: {what} holds a field that is not a number") from None
    if not all(math.isfinite(value) for value in values):
        raise GeometryError(f"{path}:{number}: {what} holds a value that is not finite")
    return values


def _file_name(path: Path, number: int, name: str) -> str:
    if "/" in name or "\\" in name or name in (".", "..") or not name.isprintable():
        raise GeometryError(f"{path}:{number}: {name!r} is not a plain file name")
    return name


def read_camera_file(path: Path) -> list[ScanImage]:
    """The images of a camera file, in the file's order; GeometryError naming ``path:line``
    for a line that is not in the format (module docstring), a scan line before any
    intrinsics, a matrix that is not a rigid transform, a repeated file name or an
    ``n_images`` that does not match the scan lines."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise GeometryError(f"{path}: not a text camera file (not UTF-8)") from None
    except OSError as exc:
        raise GeometryError(f"{path}: cannot read the camera file: {exc.strerror}") from None
    images: list[ScanImage] = []
    intrinsics: NDArray[np.float64] | None = None
    declared: tuple[int, int] | None = None
    names: set[str] = set()
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        key = fields[0]
        if key == "intrinsics_matrix":
            values = _numbers(path, number, fields[1:], "intrinsics_matrix")
            if len(values) != 9:
                raise GeometryError(
                    f"{path}:{number}: intrinsics_matrix needs 9 numbers "
                    f"(fx 0 cx 0 fy cy 0 0 1), found {len(values)}"
                )
            K = np.array(values).reshape(3, 3)
            if K[1, 0] != 0 or list(K[2]) != [0, 0, 1] or K[0, 0] <= 0 or K[1, 1] <= 0:
                raise GeometryError(
                    f"{path}:{number}: intrinsics_matrix must read fx 0 cx 0 fy cy 0 0 1 "
                    "with positive focal lengths"
                )
            intrinsics = K
        elif key == "scan":
            if len(fields) != 19:
                raise GeometryError(
                    f"{path}:{number}: a scan line needs a depth file, a colour file and 16 "
                    f"numbers, found {len(fields) - 1} fields"
                )
            if intrinsics is None:
                raise GeometryError(f"{path}:{number}: scan line before any intrinsics_matrix")
            depth_name = _file_name(path, number, fields[1])
            color_name = _file_name(path, number, fields[2])
            for name in (depth_name, color_name):
                if name in names:
                    raise GeometryError(f"{path}:{number}: {name} appears on an earlier line")
                names.add(name)
            matrix = np.array(_numbers(path, number, fields[3:], "the scan line")).reshape(4, 4)
            rotation = matrix[:3, :3]
            rigid = np.allclose(rotation.T @ rotation, np.eye(3), atol=_RIGID_TOLERANCE)
            if not rigid or not np.allclose(matrix[3], [0, 0, 0, 1], atol=_RIGID_TOLERANCE):
                raise GeometryError(
                    f"{path}:{number}: the camera-to-world matrix is not a rotation and a "
                    "translation (last row 0 0 0 1)"
                )
            images.append(ScanImage(number, depth_name, color_name, intrinsics.copy(), matrix))
        elif key in _HEADER_KEYS:
            if key == "n_images":
                if len(fields) != 2 or not fields[1].isdigit():
                    raise GeometryError(f"{path}:{number}: n_images needs one whole number")
                declared = (int(fields[1]), number)
        else:
            raise GeometryError(
                f"{path}:{number}: unknown line {key!r} (expected intrinsics_matrix, scan or "
                f"one of {', '.join(_HEADER_KEYS)})"
            )
    if declared is not None and declared[0] != len(images):
        raise GeometryError(
            f"{path}:{declared[1]}: n_images says {declared[0]} but the file has "
            f"{len(images)} scan lines; the file is cut short or edited"
        )
    return images


def read_depth_png(path: Path) -> NDArray[np.float32]:
    """A Matterport depth image in metres (float32, value / 4000 as LoCUS computes it; 0
    where unknown)."""
    try:
        with open_regular(path) as stream, Image.open(stream) as image:
            pixels = np.asarray(image)
    except FileNotFoundError:
        raise GeometryError(f"{path}: depth image missing") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise GeometryError(f"{path}: not a readable PNG ({exc})") from None
    if pixels.ndim != 2 or pixels.dtype.kind not in "ui" or pixels.dtype.itemsize > 4:
        raise GeometryError(
            f"{path}: a depth image must be one 16-bit channel, not {pixels.dtype} {pixels.shape}"
        )
    return pixels.astype(np.float32) / np.float32(DEPTH_UNITS_PER_METRE)


def camera_file(scan_dir: Path) -> Path:
    """``<scan>/undistorted_camera_parameters/<scan>.conf``."""
    return scan_dir / CAMERA_FOLDER / f"{scan_dir.name}.conf"


def find_scans(root: Path) -> list[Path]:
    """The scan folders under ``root`` that hold a camera file, sorted by name."""
    return sorted(
        path.parent.parent
        for path in root.glob(f"*/{CAMERA_FOLDER}/*.conf")
        if path.stem == path.parent.parent.name
    )
