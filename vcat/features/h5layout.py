"""VOP's ``overlap_feats.h5``: one group per image, written so equal values give equal bytes.

The file holds one HDF5 group per image, keyed by the image's relative path (its ``/`` make
nested groups, as VOP's ``create_group(image_path)`` does), with the datasets ``keypoints``
(P, 2) float32, ``descriptors`` (P, D) float32, ``global_descriptor`` (D,) float32,
``image_size`` and ``original_image_size`` [w, h] int64 and, for MegaDepth, ``scales``,
``K``, ``original_K``, ``T_w2cam`` and ``depth`` (:mod:`vcat.features.images`). Only numeric
datasets are stored: VOP's readers turn every dataset of a group into a tensor. Root
attributes: ``vcat_features`` (JSON: what made it), ``vcat_failures`` (JSON: images that
could not be read), ``vcat_images`` (how many groups) and ``vcat_names_sha256`` (of the
sorted names, one a line), so a run can tell the file is up to date without walking it.

:func:`assemble` writes the groups in name order into a fresh file with fixed settings (file
format versions pinned, no modification times, contiguous datasets, no creation order).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

SIGNATURE_ATTR = "vcat_features"
FAILURES_ATTR = "vcat_failures"
COUNT_ATTR = "vcat_images"
NAMES_ATTR = "vcat_names_sha256"
FORMAT = "vcat.features/1"
#: The fixed file settings (v108: attributes may be larger than 64 KiB).
_FILE_SETTINGS: dict[str, Any] = {"libver": ("v108", "v110"), "track_order": False}


def signature_text(signature: Mapping[str, Any]) -> str:
    return json.dumps({"format": FORMAT, **signature}, sort_keys=True)


def names_digest(names: Iterable[str]) -> str:
    return hashlib.sha256("".join(f"{name}\n" for name in sorted(names)).encode()).hexdigest()


def _create_group(parent: h5py.Group, name: str) -> h5py.Group:
    """The group ``name`` (and its parents) created without modification times."""
    group = parent
    for part in name.split("/"):
        if part in group:
            group = group[part]
            continue
        plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        plist.set_obj_track_times(False)
        group = h5py.Group(h5py.h5g.create(group.id, part.encode("utf-8"), gcpl=plist))
    return group


def assemble(
    output: Path,
    signature: str,
    names: Iterable[str],
    read: Callable[[str], Mapping[str, NDArray]],
    failures: Iterable[tuple[str, str]] = (),
) -> None:
    """The group ``read(name)`` of every name, in sorted order, into ``output`` (datasets in
    sorted order), with the root attributes; written under a temporary name and renamed."""
    ordered = sorted(names)
    temporary = output.with_name(f".{output.name}.tmp")
    try:
        with h5py.File(temporary, "w", **_FILE_SETTINGS) as file:
            file.attrs[SIGNATURE_ATTR] = signature
            file.attrs[FAILURES_ATTR] = json.dumps([list(f) for f in failures])
            file.attrs[COUNT_ATTR] = len(ordered)
            file.attrs[NAMES_ATTR] = names_digest(ordered)
            for name in ordered:
                group = _create_group(file, name)
                datasets = read(name)
                for key in sorted(datasets):
                    data = np.asarray(datasets[key])
                    group.create_dataset(key, data=data, track_times=False)
        os.replace(temporary, output)
    finally:
        temporary.unlink(missing_ok=True)


def read_attrs(path: Path) -> dict[str, Any] | None:
    """The root attributes of a features file; None when it is missing or unreadable."""
    try:
        with h5py.File(path, "r") as file:
            return {key: file.attrs[key] for key in file.attrs}
    except (OSError, FileNotFoundError):
        return None


def image_names(path: Path) -> list[str]:
    """The image groups of a features file (those with ``keypoints``), sorted; this walks
    the whole file."""
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset) and name.endswith("/keypoints"):
            names.append(name.rpartition("/")[0])

    with h5py.File(path, "r") as file:
        file.visititems(visit)
    return sorted(names)
