"""Reading VOP's feature dump: one HDF5 group per image, keyed by the image's relative path.

A group holds ``keypoints (P, 2)`` (patch centres in pixels), ``descriptors (P, D)`` (patch
tokens), ``global_descriptor (D,)`` (the CLS token) and ``image_size`` (``[w, h]``); ``K``,
``T_w2cam`` and ``depth`` may be there too and are not read. A path with slashes is stored as
nested groups (h5py's way), so an image's key is the path of the group that holds its
``descriptors``. Names from elsewhere (the overlap stage's ``names``) are matched to keys by
path components: the same path, or one a whole-component suffix of the other (a dump keyed
relative to ``Undistorted_SfM/`` still matches ``Undistorted_SfM/demo01/images/x.jpg``), and
only when exactly one key matches.

The file is opened on first read in the process that reads (each DataLoader worker opens its
own handle), and a pickled :class:`FeatureStore` carries only its paths and key index.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

REQUIRED = ("keypoints", "descriptors", "global_descriptor", "image_size")


class FeatureError(ValueError):
    """A feature file, or an image in it, cannot be used as VOP's layout."""


@dataclass(frozen=True)
class ImageFeatures:
    """One image's arrays: keypoints (P, 2) and descriptors (P, D) float32, global (D,),
    image_size (2,) as ``[w, h]``."""

    keypoints: np.ndarray
    descriptors: np.ndarray
    global_descriptor: np.ndarray
    image_size: np.ndarray


def feature_files(path: Path) -> list[Path]:
    """``path`` itself when it is a file, else the ``*.h5`` / ``*.hdf5`` files under it, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FeatureError(f"{path}: no such feature file or folder")
    files = sorted(p for p in path.rglob("*") if p.suffix in (".h5", ".hdf5") and p.is_file())
    if not files:
        raise FeatureError(f"{path}: no .h5 feature file in this folder; run the features stage")
    return files


def _image_keys(path: Path) -> list[str]:
    import h5py

    keys: list[str] = []

    def visit(name: str, item: Any) -> None:
        if isinstance(item, h5py.Group) and "descriptors" in item:
            keys.append(name)

    try:
        with h5py.File(path, "r") as handle:
            handle.visititems(visit)
    except OSError as exc:
        raise FeatureError(f"{path}: not a readable HDF5 file ({exc})") from None
    return keys


class FeatureStore:
    """The images of one or more VOP feature files, found by name (module doc)."""

    def __init__(self, path: Path) -> None:
        self.files = feature_files(path)
        self._where: dict[str, int] = {}
        for number, file in enumerate(self.files):
            for key in _image_keys(file):
                if key in self._where:
                    raise FeatureError(
                        f"image {key!r} is in both {self.files[self._where[key]]} and {file}; "
                        "keep one feature file per image"
                    )
                self._where[key] = number
        if not self._where:
            raise FeatureError(f"{path}: no image group (with 'descriptors') in the features")
        self._by_tail: dict[tuple[str, ...], list[str]] = {}
        for key in self._where:
            parts = PurePosixPath(key).parts
            for start in range(len(parts)):
                self._by_tail.setdefault(parts[start:], []).append(key)
        self._handles: dict[int, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_handles": {}}

    def __len__(self) -> int:
        return len(self._where)

    def key_of(self, name: str) -> str:
        """The key of the image called ``name`` (module doc); FeatureError when none or several."""
        parts = PurePosixPath(name.strip("/")).parts
        if "/".join(parts) in self._where:
            return "/".join(parts)
        found = set(self._by_tail.get(parts, []))  # a key that ends with the whole name
        for start in range(1, len(parts)):  # the name ends with a whole key
            key = "/".join(parts[start:])
            if key in self._where:
                found.add(key)
        if len(found) == 1:
            return found.pop()
        if not found:
            raise FeatureError(
                f"image {name!r} has no features in {', '.join(map(str, self.files))}; "
                "extract features for every image of the scenes trained on"
            )
        raise FeatureError(f"image {name!r} matches several feature groups: {sorted(found)}")

    def keys_of(self, names: Iterable[str]) -> list[str]:
        return [self.key_of(name) for name in names]

    def read(self, key: str) -> ImageFeatures:
        """The arrays of the image stored under ``key`` (a key from :meth:`key_of`)."""
        number = self._where[key]
        handle = self._handles.get(number)
        if handle is None:
            import h5py

            handle = self._handles[number] = h5py.File(self.files[number], "r")
        group = handle[key]
        missing = [name for name in REQUIRED if name not in group]
        if missing:
            raise FeatureError(f"{self.files[number]}:{key} lacks {', '.join(missing)}")
        keypoints = np.asarray(group["keypoints"], dtype=np.float32)
        descriptors = np.asarray(group["descriptors"], dtype=np.float32)
        global_descriptor = np.asarray(group["global_descriptor"], dtype=np.float32)
        size = np.asarray(group["image_size"], dtype=np.float32).reshape(-1)
        if (
            keypoints.ndim != 2
            or keypoints.shape[1] != 2
            or descriptors.ndim != 2
            or len(descriptors) != len(keypoints)
            or global_descriptor.shape != (descriptors.shape[1],)
            or size.shape != (2,)
        ):
            raise FeatureError(
                f"{self.files[number]}:{key}: expected keypoints (P, 2), descriptors (P, D), "
                f"global_descriptor (D,), image_size [w, h]; got {keypoints.shape}, "
                f"{descriptors.shape}, {global_descriptor.shape}, {size.shape}"
            )
        return ImageFeatures(keypoints, descriptors, global_descriptor, size)

    def stack(self, keys: Sequence[str]) -> ImageFeatures:
        """The images of ``keys`` stacked along a first axis (they must have equal P and D)."""
        images = [self.read(key) for key in keys]
        shapes = {image.descriptors.shape for image in images}
        if len(shapes) != 1:
            raise FeatureError(f"images have different patch grids or widths: {sorted(shapes)}")
        return ImageFeatures(
            np.stack([i.keypoints for i in images]),
            np.stack([i.descriptors for i in images]),
            np.stack([i.global_descriptor for i in images]),
            np.stack([i.image_size for i in images]),
        )

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
