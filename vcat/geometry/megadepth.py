"""MegaDepth's ``scene_info/<scene>.npz`` (D2-Net's preprocessing) as glue-factory reads it.

A scene file holds, one row per image: ``image_paths`` (relative to the dataset root, or None
for an image without a usable reconstruction), ``depth_paths`` (None likewise), and per image
``intrinsics`` (3x3) and ``poses`` (4x4, world to camera) in COLMAP's conventions, which are
:mod:`vcat.geometry`'s: stacked arrays, or in the original files object arrays whose rows are
None where the image is not used. The depth of an image is read where glue-factory reads it:
``<root>/depth_undistorted/<scene>/<image stem>.h5``, dataset ``depth`` (the ``depth_paths``
of the original release point into the MegaDepth_v1 tree instead). An image is used when both
its paths are given; the views keep the file's order.

The original files store the paths as object arrays, which only load with pickle; pickle runs
code from the file, so :func:`read_scene_info` refuses them unless ``allow_pickle`` is set
for files from a trusted source (vcat's demo writes fixed-width strings instead).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import h5py
import numpy as np
from numpy.typing import NDArray

from vcat.geometry.overlap import GeometryError, View
from vcat.regular import require_regular

INFO_FOLDER = "scene_info"
DEPTH_FOLDER = "depth_undistorted"
_KEYS = ("image_paths", "depth_paths", "intrinsics", "poses")


@dataclass(frozen=True, eq=False)
class SceneImage:
    """One used row of a scene file: its image path (the view's name), depth file and
    camera."""

    image_path: str
    depth_file: Path
    K: NDArray[np.float64]
    world_to_camera: NDArray[np.float64]

    def view(self, width: int, height: int) -> View:
        return View(self.image_path, self.K.copy(), self.world_to_camera.copy(), width, height)


def _present(value: object) -> bool:
    return value is not None and str(value) not in ("", "None")


def _matrix(
    path: Path, row: int, key: str, value: object, shape: tuple[int, int]
) -> NDArray[np.float64]:
    """Row ``row`` of ``key`` as a new float64 matrix of ``shape`` (the original files hold
    one object per row, the demo's a stacked array)."""
    try:
        matrix = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape != shape or not np.isfinite(matrix).all():
        raise GeometryError(
            f"{path}: {key}[{row}] is not a finite {shape[0]}x{shape[1]} matrix; the image has "
            "paths, so it needs a camera"
        )
    return matrix


def read_scene_info(
    path: Path, root: Path, *, allow_pickle: bool = False, depth_folder: str = DEPTH_FOLDER
) -> list[SceneImage]:
    """The used images of the scene file ``path`` under the dataset ``root``, in file order."""
    scene = path.stem
    try:
        require_regular(path)  # np.load would wait forever on a FIFO
        with np.load(path, allow_pickle=allow_pickle) as data:
            missing = [key for key in _KEYS if key not in data.files]
            if missing:
                raise GeometryError(f"{path}: lacks {', '.join(missing)}; not a scene_info file")
            arrays = {key: data[key] for key in _KEYS}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise GeometryError(
                f"{path}: stores paths as Python objects, which need pickle to load; set "
                "overlap.allow_pickle: true in params.yaml if the file comes from a source you "
                "trust (the original MegaDepth release)"
            ) from None
        raise GeometryError(f"{path}: not a readable .npz ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        if isinstance(exc, GeometryError):
            raise
        raise GeometryError(f"{path}: not a readable .npz ({exc})") from None
    count = len(arrays["image_paths"])
    if arrays["depth_paths"].shape != (count,):
        raise GeometryError(
            f"{path}: depth_paths has shape {arrays['depth_paths'].shape}, expected ({count},)"
        )
    for key in ("intrinsics", "poses"):
        if len(arrays[key]) != count:
            raise GeometryError(
                f"{path}: {key} has {len(arrays[key])} rows, expected {count} (one per image)"
            )
    images = []
    for k in range(count):
        image_path = arrays["image_paths"][k]
        if not (_present(image_path) and _present(arrays["depth_paths"][k])):
            continue
        image_path = str(image_path)
        pure = PurePosixPath(image_path)
        if pure.is_absolute() or ".." in pure.parts:
            raise GeometryError(f"{path}: image path {image_path!r} is not inside the root")
        K = _matrix(path, k, "intrinsics", arrays["intrinsics"][k], (3, 3))
        pose = _matrix(path, k, "poses", arrays["poses"][k], (4, 4))
        depth_file = root / depth_folder / scene / f"{pure.stem}.h5"
        images.append(SceneImage(image_path, depth_file, K, pose))
    names = [image.image_path for image in images]
    if len(set(names)) != len(names):
        raise GeometryError(f"{path}: an image path appears twice")
    return images


def read_depth_h5(path: Path) -> NDArray[np.float32]:
    """The ``depth`` dataset of a MegaDepth depth file, float32."""
    try:
        require_regular(path)  # h5py would wait forever on a FIFO
        with h5py.File(path, "r") as h5:
            if "depth" not in h5:
                raise GeometryError(f"{path}: has no dataset 'depth'")
            depth = np.asarray(h5["depth"], dtype=np.float32)
    except FileNotFoundError:
        raise GeometryError(f"{path}: depth file missing") from None
    except OSError as exc:
        raise GeometryError(f"{path}: not a readable HDF5 file ({exc})") from None
    if depth.ndim != 2:
        raise GeometryError(f"{path}: depth must be 2-D, not {depth.shape}")
    return depth


def find_scenes(root: Path) -> list[Path]:
    """The scene files ``<root>/scene_info/*.npz``, sorted by name."""
    return sorted((root / INFO_FOLDER).glob("*.npz"))
