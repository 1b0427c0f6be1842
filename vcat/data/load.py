"""``load``: a prepared artifact of a catalog entry as a torch Dataset.

Where an artifact lives is the project's layout, the one ``dvc.yaml`` writes:
``data/prepared/<stage>/<entry>`` (``artifact="croco-crops"``), or a part of it
(``artifact="flickr-images/0.1k"`` is ``data/prepared/flickr-images/<entry>/0.1k``). What
the location holds picks the reader (:func:`open_artifact`). A split is taken from the
entry's catalog file: its ``scenes`` and ``images`` select items (:mod:`vcat.data.splits`);
a split that names only a ``subset`` selects the artifact's part of that name.

How source paths name scenes and images comes from ``params.yaml``, the stage's own settings:
``<stage>.scene_path_component`` (else 0) and, for images, ``<stage>.lists.<entry>.images``
(the folder the stage read, ``<entry>/<under>``); ``scene_component`` overrides the former.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from vcat.catalog.loader import load_around
from vcat.data.arrays import HDF5_SUFFIXES, Hdf5Dataset, NpzFolderDataset, npz_files
from vcat.data.base import ArtifactDataset, Item
from vcat.data.errors import DataError
from vcat.data.lists import PathListDataset
from vcat.data.shards import ShardDataset
from vcat.data.splits import SplitFilter
from vcat.lists.layout import META_NAME
from vcat.project import ProjectNotFound, find_project_root
from vcat.shards import INDEX_NAME

PREPARED = Path("data", "prepared")
MEMMAP_SUFFIX = ".memmap"


def reader_for(location: Path) -> type[ArtifactDataset] | None:
    """The dataset class that reads ``location``, by what it holds; None when none does."""
    if location.is_file():
        if location.suffix == MEMMAP_SUFFIX:
            return PathListDataset
        if location.suffix in HDF5_SUFFIXES:
            return Hdf5Dataset
        return None
    if not location.is_dir():
        return None
    if (location / INDEX_NAME).is_file():
        return ShardDataset
    if (location / META_NAME).is_file():
        return PathListDataset
    if npz_files(location):
        return NpzFolderDataset
    return None


def artifact_parts(location: Path) -> list[str]:
    """The names of the readable artifacts directly in folder ``location``, sorted."""
    if not location.is_dir():
        return []
    return sorted(
        child.name
        for child in location.iterdir()
        if not child.name.startswith(".") and reader_for(child) is not None
    )


def open_artifact(
    location: Path,
    *,
    split: SplitFilter | None = None,
    rank: int = 0,
    world_size: int = 1,
    decode: str = "bytes",
    transform: Callable[[Item], Any] | None = None,
) -> ArtifactDataset:
    """The dataset over the artifact at ``location`` (a shard folder, a path list folder or
    ``.memmap`` file, a folder of ``.npz``, an HDF5 file); DataError naming its parts when it
    is a folder of several artifacts, or saying what it lacks."""
    reader = reader_for(location)
    if reader is None:
        if not location.exists():
            raise DataError(f"{location} does not exist: run `dvc repro` or `dvc pull` for it")
        parts = artifact_parts(location)
        if parts:
            raise DataError(
                f"{location} holds several artifacts: {', '.join(parts)}; load one of them"
            )
        raise DataError(
            f"{location} is no artifact vcat can read: not a shard folder ({INDEX_NAME}), a "
            f"path list ({META_NAME} or {MEMMAP_SUFFIX}), .npz files or an HDF5 file"
        )
    return reader(
        location,
        split=split,
        rank=rank,
        world_size=world_size,
        decode=decode,
        transform=transform,
    )


def artifact_location(project: Path, entry: str, artifact: str) -> Path:
    """``data/prepared/<stage>/<entry>[/<part>]`` of ``artifact = "<stage>[/<part>]"``."""
    stage, _, part = artifact.strip("/").partition("/")
    if not stage or ".." in Path(artifact).parts or not entry or "/" in entry:
        raise DataError(f"artifact {artifact!r} of entry {entry!r}: expected '<stage>[/<part>]'")
    folder = project / PREPARED / stage / entry
    if not folder.exists():
        made = sorted(
            path.parent.name for path in (project / PREPARED).glob(f"*/{entry}") if path.exists()
        )
        have = f"; it has {', '.join(made)}" if made else "; it has none here"
        raise DataError(
            f"no artifact {stage!r} of entry {entry!r} at {folder}{have}. Build it with "
            f"`dvc repro` or fetch it with `dvc pull`"
        )
    return folder / part if part else folder


def _stage_params(project: Path, stage: str) -> dict[str, Any]:
    path = project / "params.yaml"
    if not path.is_file():
        return {}
    values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = values.get(stage) if isinstance(values, dict) else None
    return section if isinstance(section, dict) else {}


def _under(params: dict[str, Any], entry: str) -> str:
    lists = params.get("lists")
    item = lists.get(entry) if isinstance(lists, dict) else None
    images = item.get("images") if isinstance(item, dict) else None
    if isinstance(images, str) and images.startswith(f"{entry}/"):
        return images[len(entry) + 1 :]
    return ""


def catalog_split(project: Path, entry: str, name: str) -> Any:
    """The split ``name`` of catalog entry ``entry``; DataError naming the splits it has."""
    catalog = load_around(project / "catalog", entry)
    try:
        found = catalog.get(entry)
    except KeyError as exc:
        problems = "; ".join(str(problem) for problem in catalog.problems)
        raise DataError(f"{exc.args[0]}{' ' + problems if problems else ''}") from None
    splits = getattr(found.spec, "splits", None)
    if splits is None:
        raise DataError(f"catalog entry {entry!r} is a {found.kind}, which has no splits")
    for split in splits:
        if split.name == name:
            return split
    names = ", ".join(split.name for split in splits) or "none"
    raise DataError(f"catalog entry {entry!r} has no split {name!r}; its splits: {names}")


def load(
    entry: str,
    artifact: str,
    split: str | None = None,
    *,
    project: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    decode: str = "bytes",
    transform: Callable[[Item], Any] | None = None,
    scene_component: int | None = None,
) -> ArtifactDataset:
    """Artifact ``artifact`` (``"<stage>"`` or ``"<stage>/<part>"``) of catalog entry
    ``entry`` as a map-style torch Dataset: the items of ``split`` (all when None), every
    ``world_size``-th from ``rank``, decoded as ``decode`` says (``"bytes"``, ``"pil"``,
    ``"numpy"``, ``"tensor"``), then through ``transform``. ``project`` is the checkout (by
    default the one around the working directory). See the module docstring for layout."""
    try:
        root = Path(project) if project is not None else find_project_root()
    except ProjectNotFound as exc:
        raise DataError(str(exc)) from None
    location = artifact_location(root, entry, artifact)
    chosen: SplitFilter | None = None
    if split is not None:
        spec = catalog_split(root, entry, split)
        stage = artifact.strip("/").partition("/")[0]
        if spec.scenes or spec.images:
            params = _stage_params(root, stage)
            component = scene_component
            if component is None:
                component = int(params.get("scene_path_component", 0))
            chosen = SplitFilter.of(
                split,
                spec.scenes,
                spec.images,
                scene_component=component,
                under=_under(params, entry),
            )
        elif spec.subset and (location / spec.subset).exists():
            location = location / spec.subset
        else:
            raise DataError(
                f"split {split!r} of catalog entry {entry!r} lists no scenes or images"
                + (f" and {location} has no part {spec.subset!r}" if spec.subset else "")
                + ": nothing says which items are in it; list them in the entry"
            )
    parts = artifact_parts(location) if reader_for(location) is None else []
    if parts:
        choices = ", ".join(f"{artifact.rstrip('/')}/{part}" for part in parts)
        raise DataError(
            f"entry {entry!r} has several {artifact!r} artifacts: load one of {choices}"
        )
    return open_artifact(
        location,
        split=chosen,
        rank=rank,
        world_size=world_size,
        decode=decode,
        transform=transform,
    )
