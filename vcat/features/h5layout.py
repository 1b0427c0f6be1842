"""VOP's ``overlap_feats.h5``: one group per image, and how a run builds it resumably.

The finished file holds one HDF5 group per image, keyed by the image's relative path (its
``/`` make nested groups, as VOP's ``create_group(image_path)`` does), with the datasets
``keypoints`` (P, 2) float32, ``descriptors`` (P, D) float32, ``global_descriptor`` (D,)
float32, ``image_size`` and ``original_image_size`` [w, h] int64 and, for MegaDepth,
``scales``, ``K``, ``original_K``, ``T_w2cam`` and ``depth`` (:mod:`vcat.features.images`).
The root's attribute ``vcat_features`` is the JSON record of what made it (model, weights,
settings). Only numeric datasets are stored: VOP's readers turn every dataset of a group
into a tensor.

While a run works, each finished batch is a whole HDF5 file in ``<output>.partial/``, written
under a temporary name and renamed, so a kill never leaves a half-written group where a
resumed run would take it for done (an HDF5 file killed between flushes can be unreadable as
a whole). :func:`assemble` then writes the groups in sorted order into a fresh file with
fixed settings (earliest format, no timestamps, contiguous datasets), so the bytes depend
only on the values, not on how the run was cut into batches or stopped.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from numpy.typing import NDArray

SIGNATURE_ATTR = "vcat_features"
FORMAT = "vcat.features/1"
#: The fixed file settings; with these, equal values give equal bytes.
_FILE_SETTINGS: dict[str, Any] = {"libver": ("earliest", "v110"), "track_order": False}


def partial_folder(output: Path) -> Path:
    return output.with_name(f"{output.name}.partial")


def _create_group(parent: h5py.Group | h5py.File, name: str) -> h5py.Group:
    """The group ``name`` (and its parents) created without modification times."""
    group = parent
    for part in name.split("/"):
        if part in group:
            group = group[part]
            continue
        plist = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
        plist.set_obj_track_times(False)
        gid = h5py.h5g.create(group.id, part.encode("utf-8"), gcpl=plist)
        group = h5py.Group(gid)
    return group


def write_groups(file: h5py.File, groups: Iterable[tuple[str, Mapping[str, NDArray]]]) -> list[str]:
    """Each ``(name, datasets)`` written as a group (datasets in sorted order); the names."""
    names = []
    for name, datasets in groups:
        group = _create_group(file, name)
        for key in sorted(datasets):
            group.create_dataset(key, data=np.asarray(datasets[key]), track_times=False)
        names.append(name)
    return names


def signature_text(signature: Mapping[str, Any]) -> str:
    return json.dumps({"format": FORMAT, **signature}, sort_keys=True)


def write_part(
    folder: Path,
    index: int,
    signature: str,
    groups: Iterable[tuple[str, Mapping[str, NDArray]]],
    attrs: Mapping[str, str] | None = None,
) -> Path:
    """One batch's groups (and root ``attrs``) as ``folder/part-<index>.h5``, whole or not
    at all."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"part-{index:08d}.h5"
    temporary = folder / f".part-{index:08d}.h5.tmp"
    with h5py.File(temporary, "w", **_FILE_SETTINGS) as file:
        file.attrs[SIGNATURE_ATTR] = signature
        for key, value in (attrs or {}).items():
            file.attrs[key] = value
        write_groups(file, groups)
    os.replace(temporary, target)
    return target


def _image_groups(file: h5py.File) -> list[str]:
    """The names of the groups that hold datasets (images), not their parents."""
    names: list[str] = []

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            parent = name.rpartition("/")[0]
            if not names or names[-1] != parent:
                names.append(parent)

    file.visititems(visit)
    return sorted(set(names))


def finished_parts(folder: Path, signature: str) -> dict[str, Path]:
    """Which part file holds each image finished in ``folder``; parts of other settings, or
    that cannot be read, and leftover temporary files are deleted."""
    done: dict[str, Path] = {}
    if not folder.is_dir():
        return done
    for stray in folder.glob(".part-*.tmp"):
        stray.unlink()
    for part in sorted(folder.glob("part-*.h5")):
        try:
            with h5py.File(part, "r") as file:
                same = file.attrs.get(SIGNATURE_ATTR) == signature
                names = _image_groups(file) if same else []
        except OSError:
            same = False
        if not same:
            part.unlink()
            continue
        for name in names:
            done.setdefault(name, part)
    return done


def read_group(file: h5py.File, name: str) -> dict[str, NDArray]:
    group = file[name]
    return {key: group[key][()] for key in group}


def assemble(
    output: Path,
    signature: str,
    where: Mapping[str, Path],
    attrs: Mapping[str, str] | None = None,
) -> None:
    """The groups of ``where`` (image name -> part file), sorted by name, into ``output``
    with the root ``attrs``, written under a temporary name and renamed."""
    temporary = output.with_name(f".{output.name}.tmp")
    open_path: Path | None = None
    source: h5py.File | None = None
    try:
        with h5py.File(temporary, "w", **_FILE_SETTINGS) as file:
            file.attrs[SIGNATURE_ATTR] = signature
            for key, value in (attrs or {}).items():
                file.attrs[key] = value
            for name in sorted(where):
                if where[name] != open_path:
                    if source is not None:
                        source.close()
                    open_path = where[name]
                    source = h5py.File(open_path, "r")
                assert source is not None
                write_groups(file, [(name, read_group(source, name))])
        os.replace(temporary, output)
    finally:
        if source is not None:
            source.close()
        temporary.unlink(missing_ok=True)


def read_signature(path: Path) -> str | None:
    """The ``vcat_features`` record of a finished file, None when it has none or is unreadable."""
    try:
        with h5py.File(path, "r") as file:
            value = file.attrs.get(SIGNATURE_ATTR)
    except OSError:
        return None
    return value if isinstance(value, str) else None


def image_names(path: Path) -> list[str]:
    """The image groups of a features file, sorted."""
    with h5py.File(path, "r") as file:
        return _image_groups(file)


def remove_partial(output: Path) -> None:
    shutil.rmtree(partial_folder(output), ignore_errors=True)
