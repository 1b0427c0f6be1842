"""The training artifacts the audit reads, and how each is read.

``croco-crops``
    A croco-crops output: its ``provenance.tsv`` names the two source images of every pair,
    as the crop list names them (paths under ``under`` of the entry's root).
``images``
    A folder of WebDataset shards (:mod:`vcat.shards`): every member whose extension is an
    image format is an image a model trains on, hashed for near-duplicates.

``params.yaml``'s ``audit.training`` maps a name to ``{kind, path, entry, under,
scene_path_component}``; a folder given on the command line is read by what it holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from vcat.audit import AuditError
from vcat.audit.held_out import is_image_name
from vcat.croco.provenance import PROVENANCE_NAME, ProvenanceError, read_provenance
from vcat.shards import INDEX_NAME, ShardError, ShardReader
from vcat.stage import merge_conf

KINDS = ("croco-crops", "images")
artifact_defaults: dict[str, Any] = {
    "kind": "images",  # croco-crops or images
    "path": "",  # the artifact's folder (relative to the params file's folder)
    "entry": "",  # the catalog entry its sources come from ("": any entry)
    "under": "",  # croco-crops: the folder under the entry's root the list's paths start from
    "scene_path_component": 0,  # croco-crops: which component of a source path is its scene
}


@dataclass(frozen=True)
class TrainingArtifact:
    name: str
    kind: str
    path: Path
    entry: str | None = None
    under: str = ""
    scene_path_component: int = 0

    def entry_path(self, source: str) -> str:
        """A source path as a path under the entry's root."""
        return str(PurePosixPath(self.under, source)) if self.under else source


@dataclass(frozen=True)
class SourceRecord:
    """One source image of one training item."""

    item: str  # the pair's stem
    member: str  # which image of the pair: "1" or "2"
    source: str  # as the crop list names it


def artifact_from_params(
    name: str, values: Mapping[str, Any], base: Path, locate: Any
) -> TrainingArtifact:
    """One ``audit.training`` entry, checked; relative paths are taken from ``base``."""
    settings = merge_conf(
        artifact_defaults, values, locate=lambda key: locate(f"training.{name}.{key}")
    )
    where = locate(f"training.{name}")
    if settings.kind not in KINDS:
        raise AuditError(f"{where}.kind is {settings.kind!r}; it must be one of {', '.join(KINDS)}")
    if not settings.path:
        raise AuditError(f"{where}.path is missing: give the artifact's folder")
    if int(settings.scene_path_component) < 0:
        raise AuditError(f"{where}.scene_path_component cannot be negative")
    return TrainingArtifact(
        name=name,
        kind=str(settings.kind),
        path=base / str(settings.path),
        entry=str(settings.entry) or None,
        under=str(settings.under).strip("/"),
        scene_path_component=int(settings.scene_path_component),
    )


def artifact_from_folder(folder: Path) -> TrainingArtifact:
    """A folder named on the command line, read by what it holds (any entry's splits)."""
    if (folder / PROVENANCE_NAME).is_file():
        return TrainingArtifact(name=str(folder), kind="croco-crops", path=folder)
    if (folder / INDEX_NAME).is_file():
        return TrainingArtifact(name=str(folder), kind="images", path=folder)
    raise AuditError(
        f"{folder}: neither a croco-crops output ({PROVENANCE_NAME}) nor a shard folder "
        f"({INDEX_NAME}); give a training artifact's folder or a name from params.yaml's "
        "audit.training"
    )


def check_present(artifact: TrainingArtifact) -> None:
    """AuditError unless the artifact's folder holds what its kind is read from."""
    needed = PROVENANCE_NAME if artifact.kind == "croco-crops" else INDEX_NAME
    if not (artifact.path / needed).is_file():
        hint = (
            " (outputs made before croco-crops wrote provenance: run the stage again)"
            if artifact.kind == "croco-crops" and (artifact.path / INDEX_NAME).is_file()
            else ""
        )
        raise AuditError(
            f"{artifact.path / needed}: not found, so training artifact {artifact.name!r} "
            f"cannot be audited{hint}; build it (dvc repro) or correct its path"
        )


def source_records(artifact: TrainingArtifact) -> Iterator[SourceRecord]:
    """Every source image of every pair of a croco-crops artifact, in index order."""
    try:
        for record in read_provenance(artifact.path / PROVENANCE_NAME):
            yield SourceRecord(record.stem, "1", record.source_1)
            yield SourceRecord(record.stem, "2", record.source_2)
    except (ProvenanceError, UnicodeDecodeError) as exc:
        raise AuditError(str(exc)) from None


def image_members(artifact: TrainingArtifact) -> list[tuple[str, str]]:
    """``(key, ext)`` of every image member of an image shard folder, in shard order."""
    try:
        with ShardReader(artifact.path) as reader:
            return [
                (key, ext)
                for key, location in reader.index.samples.items()
                for ext in location.members
                if is_image_name(f"x.{ext}")
            ]
    except (ShardError, ValueError, OSError) as exc:
        raise AuditError(f"{artifact.path}: cannot read the shard index: {exc}") from None


def member_path(reader: ShardReader, key: str, ext: str) -> str:
    """Where a member lies, for a person: ``<folder>/<shard>.tar:<key>.<ext>``."""
    shard = reader.index.shards[reader.index.samples[key].shard].name
    return f"{reader.folder / shard}:{key}.{ext}"
