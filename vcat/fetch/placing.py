"""Putting verified bytes at their final paths under a dataset root, and recording it.

A plain file is renamed into place. An archive is unpacked into the work area, then each
of its top-level items is renamed into the target folder; an item already there is replaced
only when this source put it there (``SourceRecord.owned``) or when it is identical to what
the archive holds (a tree restored by ``dvc pull``). Digests taken while downloading and
unpacking are written to manifests, so no file is read again to prove it later.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vcat.archive import ExtractLimits, extract_archive
from vcat.catalog.schema import ArchiveKind, Source
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.download import DVC_ALGORITHM, Expected
from vcat.fetch.workspace import FileStamp, RecordState, SourceRecord, Workspace
from vcat.hashing import hash_file
from vcat.verify.manifest import Manifest, ManifestRecord, read_manifest, write_manifest

Progress = Callable[[str, int, int | None], None]  # (phase, done, total)


@dataclass
class Outcome:
    """What fetching one source did."""

    source: str
    state: str  # verified | fetched | failed | up-to-date
    message: str
    failure: FetchFailure | None = None
    md5s: dict[Path, str] = field(default_factory=dict)  # placed file -> md5, for DVC


class Rejected(FetchFailure):
    """A failure of a file that is on disk and must be moved aside."""

    def __init__(self, failure: FetchFailure, path: Path) -> None:
        super().__init__(failure.failure, failure.reason)
        self.path = path


def file_target(source: Source, root: Path) -> Path:
    """Where a non-archive source is placed."""
    return root / (source.unpack_to or ".") / source.filename


def archive_target(source: Source, root: Path) -> Path:
    """The folder an archive source is unpacked in."""
    return root / (source.unpack_to or ".")


def is_current(record: SourceRecord | None, source: Source, root: Path) -> bool:
    """Whether ``record`` still describes what is on disk for this catalog version."""
    if record is None or record.state not in ("verified", "fetched"):
        return False
    if record.url != source.url or record.checksum != source.checksum:
        return False
    if not record.placed or not all((root / path).exists() for path in record.placed):
        return False
    if record.stamp is not None:
        return FileStamp.of(root / record.placed[0]) == record.stamp
    return True


def state_for(expected: Expected) -> RecordState:
    return "verified" if expected.checksum is not None else "fetched"


def make_record(
    source: Source,
    state: RecordState,
    digests: dict[str, str],
    file: Path,
    owned: list[str],
    placed: list[str] | None = None,
    stamp: FileStamp | None = None,
) -> SourceRecord:
    return SourceRecord(
        state=state,
        url=source.url,
        checksum=source.checksum,
        size=file.stat().st_size,
        digests=digests,
        placed=placed or [],
        owned=sorted(set(owned) | set(placed or [])),
        stamp=stamp,
    )


def record_file(
    source: Source,
    workspace: Workspace,
    target: Path,
    digests: dict[str, str],
    expected: Expected,
    owned: list[str],
    how: str = "",
) -> Outcome:
    """Record ``target`` (already at its final path) as this source's file."""
    state = state_for(expected)
    relative = target.relative_to(workspace.root).as_posix()
    stamp = FileStamp.of(target)
    record = make_record(source, state, digests, target, owned, [relative], stamp)
    workspace.write_record(source.name, record)
    message = how + placed_message(state, digests)
    return Outcome(source.name, state, message, md5s={target: digests[DVC_ALGORITHM]})


def place_file(
    source: Source,
    workspace: Workspace,
    path: Path,
    digests: dict[str, str],
    expected: Expected,
    owned: list[str],
) -> Outcome:
    """Rename the verified download ``path`` to the source's final path."""
    target = file_target(source, workspace.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    workspace.partial(source.name).discard()
    return record_file(source, workspace, target, digests, expected, owned)


def place_archive(
    source: Source,
    workspace: Workspace,
    archive: Path,
    kind: ArchiveKind,
    digests: dict[str, str],
    expected: Expected,
    owned: list[str],
    limits: ExtractLimits,
    progress: Progress,
) -> Outcome:
    """Unpack the verified ``archive`` beside the root, then move its items into place."""
    workspace.clear_extract(source.name)
    staging = workspace.extract_dir(source.name)
    staging.parent.mkdir(parents=True, exist_ok=True)
    written = 0

    def report(count: int) -> None:
        nonlocal written
        written += count
        progress("extract", written, None)

    try:
        extracted = extract_archive(archive, kind, staging, limits=limits, progress=report)
    except FetchFailure as failure:
        raise Rejected(failure, archive) from None
    target = archive_target(source, workspace.root)
    target.mkdir(parents=True, exist_ok=True)
    placed: list[str] = []
    for name in sorted(entry.name for entry in staging.iterdir()):
        destination = target / name
        relative = destination.relative_to(workspace.root).as_posix()
        if destination.exists() or destination.is_symlink():
            if relative not in owned and not _same_tree(
                staging / name, destination, extracted.md5s
            ):
                workspace.clear_extract(source.name)
                raise FetchFailure(
                    FailureClass.UNSAFE_ARCHIVE,
                    f"{source.filename} would replace {relative}, which differs from what the "
                    "archive holds and was put there by another source or by hand; move it "
                    "away or give this source its own 'unpack_to'",
                )
            _remove(destination)
        placed.append(relative)
        # recorded before the move, so a crash leaves a record owning everything it moved
        record = make_record(source, "unpacking", digests, archive, owned, placed)
        workspace.write_record(source.name, record)
        os.replace(staging / name, destination)
    workspace.clear_extract(source.name)
    md5s = {target / path: md5 for path, md5 in extracted.md5s.items()}
    manifest = _write_source_manifest(workspace, source, md5s)
    state = state_for(expected)
    workspace.write_record(source.name, make_record(source, state, digests, archive, owned, placed))
    message = (
        f"{placed_message(state, digests)}; unpacked {extracted.files:,} file(s), "
        f"listed in {manifest.name}"
    )
    return Outcome(source.name, state, message, md5s=md5s)


def _write_source_manifest(workspace: Workspace, source: Source, md5s: dict[Path, str]) -> Path:
    """The manifest of what an archive placed, from the digests taken while unpacking it."""
    records = [
        ManifestRecord(path.relative_to(workspace.root).as_posix(), path.stat().st_size, md5)
        for path, md5 in md5s.items()
    ]
    out = workspace.manifest_path(source.name)
    write_manifest(Manifest(DVC_ALGORITHM, sorted(records)), out)
    return out


def write_tree_manifest(sources: list[Source], workspace: Workspace) -> Path | None:
    """One manifest of every file the current sources placed under the root, from the digests
    taken while fetching; ``vcat verify NAME --manifest`` checks the tree against it later.
    Returns its path, or None when nothing is placed."""
    records: list[ManifestRecord] = []
    for source in sources:
        record = workspace.read_record(source.name)
        if not is_current(record, source, workspace.root):
            continue
        assert record is not None
        if record.stamp is not None:
            md5 = record.digests[DVC_ALGORITHM]
            records.append(ManifestRecord(record.placed[0], record.size or 0, md5))
        else:
            records.extend(read_manifest(workspace.manifest_path(source.name)).records)
    if not records:
        return None
    out = workspace.tree_manifest_path()
    write_manifest(Manifest(DVC_ALGORITHM, sorted(records)), out)
    return out


def _same_tree(unpacked: Path, existing: Path, md5s: dict[str, str]) -> bool:
    """Whether ``existing`` holds exactly the files just unpacked to ``unpacked`` (a tree
    restored by ``dvc pull``, say), compared by md5 without re-reading the unpacked side."""
    if unpacked.is_symlink() or existing.is_symlink():
        return False
    if unpacked.is_file():
        return existing.is_file() and hash_file(existing)[DVC_ALGORITHM] == md5s.get(unpacked.name)
    if not existing.is_dir():
        return False
    prefix = unpacked.name + "/"
    mine = {path for path in md5s if path.startswith(prefix)}
    theirs = {
        f"{prefix}{path.relative_to(existing).as_posix()}"
        for path in existing.rglob("*")
        if path.is_file() or path.is_symlink()
    }
    if mine != theirs:
        return False
    return all(
        hash_file(existing / path.removeprefix(prefix))[DVC_ALGORITHM] == md5s[path]
        for path in sorted(mine)
    )


def placed_message(state: str, digests: dict[str, str]) -> str:
    if state == "verified":
        return "size and checksum match the catalog"
    return (
        "placed, but the catalog publishes no checksum to verify it against; to verify future "
        f"downloads add `checksum: md5:{digests[DVC_ALGORITHM]}` to the source"
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
