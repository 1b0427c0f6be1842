"""Run the leakage audit: every training artifact against every held-out split.

Checks, per artifact kind:

- ``croco-crops``: each source image of each pair (``provenance.tsv``) whose scene (component
  ``scene_path_component`` of its path, as the crop list names it) is a held-out scene of the
  artifact's entry is a **scene** hit; one whose path under the entry's root is a declared
  held-out image is an **image** hit.
- ``images``: each image member is hashed (:mod:`vcat.phash`) and every held-out image file
  within ``max_distance`` bits is a **near-duplicate** hit, with the distance.

A hit names both sides: the training artifact, item and path, and the held-out entry, split,
item and path. An image that cannot be hashed (either side) stops the audit (AuditError): a
gate cannot vouch for what it did not see.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from vcat.audit import AuditError
from vcat.audit.artifacts import (
    TrainingArtifact,
    check_present,
    image_members,
    member_path,
    source_records,
)
from vcat.audit.hashing import HashFailure, hash_files, hash_members
from vcat.audit.held_out import HeldOut, HeldOutSplit
from vcat.audit.near import within
from vcat.phash import HASH_BYTES
from vcat.shards import ShardReader

REPORT_FORMAT = "vcat.audit.leakage/1"
SCENE, IMAGE, NEAR = "scene", "image", "near-duplicate"
SHOWN_FAILURES = 5

#: (description, total) -> a function that advances that bar by a number of steps
Progress = Callable[[str, int], Callable[[int], None]]


def _no_progress(description: str, total: int) -> Callable[[int], None]:
    return lambda steps: None


@dataclass(frozen=True)
class Hit:
    kind: str  # scene, image or near-duplicate
    artifact: str
    item: str  # the training item: a pair's stem and member, or a shard member
    item_path: str  # where the training side's image is
    entry: str
    split: str
    held_item: str  # the held-out scene id or image path (under the entry's root)
    held_path: str  # where the held-out side is
    distance: int | None = None  # near-duplicates: differing bits


@dataclass
class ArtifactCounts:
    name: str
    kind: str
    path: str
    sources_checked: int = 0
    images_hashed: int = 0
    hits: int = 0


@dataclass
class Report:
    max_distance: int
    held_out: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[ArtifactCounts] = field(default_factory=list)
    hits: list[Hit] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": REPORT_FORMAT,
            "max_distance": self.max_distance,
            "held_out": self.held_out,
            "artifacts": [asdict(counts) for counts in self.artifacts],
            "hits": [asdict(hit) for hit in self.hits],
            "notes": self.notes,
        }

    def metrics(self) -> dict[str, Any]:
        """The summary numbers a gate records (DVC metrics)."""
        by_kind = {kind: sum(hit.kind == kind for hit in self.hits) for kind in (SCENE, IMAGE)}
        return {
            "hits": len(self.hits),
            "hits_scene": by_kind[SCENE],
            "hits_image": by_kind[IMAGE],
            "hits_near_duplicate": sum(hit.kind == NEAR for hit in self.hits),
            "held_out_images_hashed": sum(len(split["files"]) for split in self.held_out),
            "training_sources_checked": sum(a.sources_checked for a in self.artifacts),
            "training_images_hashed": sum(a.images_hashed for a in self.artifacts),
            "artifacts": len(self.artifacts),
        }


def _failed(what: str, failures: list[HashFailure], where: Callable[[str], str]) -> AuditError:
    shown = "; ".join(
        f"{where(item.item)}: {item.failure}: {item.message}" for item in failures[:SHOWN_FAILURES]
    )
    more = f" and {len(failures) - SHOWN_FAILURES} more" if len(failures) > SHOWN_FAILURES else ""
    return AuditError(
        f"{len(failures)} {what} cannot be hashed: {shown}{more}; replace or remove them (or "
        "run the artifact's quality gate, which lists bad images) and audit again"
    )


def _scene_of(artifact: TrainingArtifact, source: str) -> str | None:
    parts = PurePosixPath(source).parts
    component = artifact.scene_path_component
    return parts[component] if len(parts) > component else None


def _identifier_hits(
    artifact: TrainingArtifact, splits: Sequence[HeldOutSplit], counts: ArtifactCounts
) -> list[Hit]:
    scenes = {scene: split for split in reversed(splits) for scene in split.scenes}
    images = {image: split for split in reversed(splits) for image in split.images}
    hits: list[Hit] = []
    for record in source_records(artifact):
        counts.sources_checked += 1
        relative = artifact.entry_path(record.source)
        scene = _scene_of(artifact, record.source)
        if scene in scenes:
            split, kind, held_item = scenes[scene], SCENE, scene
        elif relative in images:
            split, kind, held_item = images[relative], IMAGE, relative
        else:
            continue
        hits.append(
            Hit(
                kind=kind,
                artifact=artifact.name,
                item=f"{record.item} (image {record.member})",
                item_path=record.source,
                entry=split.entry,
                split=split.split,
                held_item=held_item,
                held_path=split.path_of(relative),
            )
        )
    return hits


@dataclass
class _HeldHashes:
    codes: np.ndarray
    owners: list[tuple[HeldOutSplit, str]]  # (split, relative path) of each row


def _hash_held_out(held: HeldOut, jobs: int, progress: Progress) -> _HeldHashes:
    codes: list[np.ndarray] = [np.zeros((0, HASH_BYTES), np.uint8)]
    owners: list[tuple[HeldOutSplit, str]] = []
    for split in held.splits:
        if split.root is None or not split.files:
            continue
        advance = progress(f"hashing {split.entry}/{split.split}", len(split.files))
        hashed = hash_files(split.root, split.files, jobs=jobs, advance=advance)
        if hashed.failures:
            raise _failed("held-out image(s)", hashed.failures, split.path_of)
        codes.append(hashed.codes)
        owners += [(split, name) for name in hashed.items]
    return _HeldHashes(np.concatenate(codes), owners)


def _near_hits(
    artifact: TrainingArtifact,
    held: _HeldHashes,
    max_distance: int,
    jobs: int,
    progress: Progress,
    counts: ArtifactCounts,
) -> list[Hit]:
    members = image_members(artifact)
    advance = progress(f"hashing {artifact.name}", len(members))
    hashed = hash_members(artifact.path, members, jobs=jobs, advance=advance)
    with ShardReader(artifact.path) as reader:

        def where(name: str) -> str:
            key, _, ext = name.rpartition(".")
            return member_path(reader, key, ext)

        if hashed.failures:
            raise _failed(f"image(s) of {artifact.name}", hashed.failures, where)
        counts.images_hashed = len(hashed.items)
        hits = []
        for query, row, distance in within(held.codes, hashed.codes, max_distance):
            split, name = held.owners[row]
            hits.append(
                Hit(
                    kind=NEAR,
                    artifact=artifact.name,
                    item=hashed.items[query],
                    item_path=where(hashed.items[query]),
                    entry=split.entry,
                    split=split.split,
                    held_item=name,
                    held_path=split.path_of(name),
                    distance=distance,
                )
            )
    return hits


def audit(
    held: HeldOut,
    artifacts: Sequence[TrainingArtifact],
    *,
    max_distance: int = 8,
    jobs: int = 1,
    progress: Progress = _no_progress,
) -> Report:
    """Check ``artifacts`` against ``held``; AuditError when it cannot run."""
    if not artifacts:
        raise AuditError(
            "no training artifact to audit: name folders or params.yaml audit.training names "
            "on the command line, or list them under audit.training"
        )
    for artifact in artifacts:
        check_present(artifact)
    report = Report(max_distance)
    for entry, split in held.undeclared:
        report.notes.append(
            f"{entry}/{split} is held out but lists no scenes or images: not checked"
        )
    for split in held.splits:
        if split.root is None:
            report.notes.append(
                f"{split.entry}: its data is not on this machine; {split.split}'s images are "
                "checked by identifier only, not by hash"
            )
        report.held_out.append(
            {
                "entry": split.entry,
                "split": split.split,
                "scenes": sorted(split.scenes),
                "images": sorted(split.images),
                "root": None if split.root is None else str(split.root),
                "files": list(split.files),
            }
        )
    hashes: _HeldHashes | None = None
    for artifact in artifacts:
        counts = ArtifactCounts(artifact.name, artifact.kind, str(artifact.path))
        if artifact.kind == "croco-crops":
            splits = held.of_entry(artifact.entry)
            hits = _identifier_hits(artifact, splits, counts)
        else:
            if hashes is None:
                hashes = _hash_held_out(held, jobs, progress)
            hits = _near_hits(artifact, hashes, max_distance, jobs, progress, counts)
        counts.hits = len(hits)
        report.artifacts.append(counts)
        report.hits += hits
    return report
