"""Fetching one catalog source into a dataset root: download, verify, place, record.

A source ends in one of three states, each written to its record: ``verified`` (size and
checksum match the catalog), ``fetched`` (placed, but the catalog publishes nothing to
check it against) or ``failed`` (the file is quarantined with its failure class).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vcat.archive import ExtractLimits, detect_archive_kind, extract_archive
from vcat.catalog.fields import parse_checksum
from vcat.catalog.schema import ArchiveKind, Source
from vcat.failures import FailureClass, FetchFailure, looks_like_html
from vcat.fetch.download import (
    DVC_ALGORITHM,
    Expected,
    PartialFile,
    RetryPolicy,
    download,
    verify_file,
)
from vcat.fetch.pages import ServedPage
from vcat.fetch.transport import Transport, transport_for
from vcat.fetch.workspace import FileStamp, RecordState, SourceRecord, Workspace
from vcat.hashing import hash_file
from vcat.verify.manifest import Manifest, ManifestRecord, read_manifest, write_manifest

Progress = Callable[[str, int, int | None], None]  # (phase, done, total)


@dataclass(frozen=True)
class FetchOptions:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    keep_archives: bool = True
    cancel: threading.Event | None = None


@dataclass
class Outcome:
    """What fetching one source did."""

    source: str
    state: str  # verified | fetched | failed | up-to-date
    message: str
    failure: FetchFailure | None = None
    md5s: dict[Path, str] = field(default_factory=dict)  # placed file -> md5, for DVC


def expected_of(source: Source) -> Expected:
    return Expected(source.size, parse_checksum(source.checksum), source.etag)


def file_target(source: Source, root: Path) -> Path:
    """Where a non-archive source is placed."""
    return root / (source.unpack_to or ".") / source.filename


def archive_target(source: Source, root: Path) -> Path:
    """The folder an archive source is unpacked in."""
    return root / (source.unpack_to or ".")


def is_current(record: SourceRecord | None, source: Source, root: Path) -> bool:
    """Whether ``record`` still describes what is on disk for this catalog version."""
    if record is None or record.state == "failed":
        return False
    if record.url != source.url or record.checksum != source.checksum:
        return False
    if not record.placed or not all((root / path).exists() for path in record.placed):
        return False
    if record.stamp is not None:
        return FileStamp.of(root / record.placed[0]) == record.stamp
    return True


def fetch_source(
    source: Source,
    workspace: Workspace,
    *,
    options: FetchOptions = FetchOptions(),
    transport: Transport | None = None,
    progress: Progress = lambda phase, done, total: None,
) -> Outcome:
    """Bring ``source`` into ``workspace.root``; failures are recorded and returned.

    Raises only ``Cancelled`` (bytes so far are kept for the next run).
    """
    previous = workspace.read_record(source.name)
    if is_current(previous, source, workspace.root):
        assert previous is not None
        return Outcome(source.name, "up-to-date", f"{previous.state} earlier, unchanged")
    expected = expected_of(source)
    partial = workspace.partial(source.name)
    archive = workspace.archive_path(source.filename)
    try:
        in_place = file_target(source, workspace.root)
        if source.archive == ArchiveKind.NONE and in_place.is_file():
            adopted = _adopt(source, workspace, in_place, expected, progress)
            if adopted is not None:
                return adopted
        if source.archive != ArchiveKind.NONE and _archive_verified(previous, source, archive):
            assert previous is not None
            digests, downloaded = previous.digests, archive
        else:
            _download(source, partial, expected, transport, options, progress)
            digests = _verify(partial.path, source.filename, expected, progress)
            downloaded = partial.path
        kind = ArchiveKind(source.archive)
        if kind == ArchiveKind.AUTO:
            kind = detect_archive_kind(downloaded)
        if kind == ArchiveKind.NONE:
            return _place_file(source, workspace, downloaded, digests, expected)
        if downloaded != archive:
            archive.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, archive)
            partial.discard()
            workspace.write_record(source.name, _record(source, "fetched", digests, archive))
        return _place_archive(
            source, workspace, archive, kind, digests, expected, options, progress
        )
    except FetchFailure as failure:
        return _fail(source, workspace, failure)


def _adopt(
    source: Source, workspace: Workspace, path: Path, expected: Expected, progress: Progress
) -> Outcome | None:
    """Check a file already at its final path (e.g. restored by ``dvc pull``) instead of
    downloading it again. A file that fails is quarantined and None returned: download it."""
    try:
        digests = _verify(path, source.filename, expected, progress)
        if expected.checksum is None and _is_page(path):
            raise _Rejected(
                FetchFailure(FailureClass.HTML_INSTEAD_OF_FILE, f"{source.filename} is a web page"),
                path,
            )
    except _Rejected as rejected:
        workspace.quarantine(source.name, path, source.filename, rejected, source.url)
        return None
    state = _state_for(expected)
    relative = path.relative_to(workspace.root).as_posix()
    workspace.write_record(
        source.name, _record(source, state, digests, path, [relative], FileStamp.of(path))
    )
    message = "already in place; " + _placed_message(state, digests)
    return Outcome(source.name, state, message, md5s={path: digests[DVC_ALGORITHM]})


def _is_page(path: Path) -> bool:
    with path.open("rb") as stream:
        return looks_like_html(stream.read(1024))


class _Rejected(FetchFailure):
    """A failure of a file that is on disk and must be moved aside."""

    def __init__(self, failure: FetchFailure, path: Path) -> None:
        super().__init__(failure.failure, failure.reason)
        self.path = path


def _download(
    source: Source,
    partial: PartialFile,
    expected: Expected,
    transport: Transport | None,
    options: FetchOptions,
    progress: Progress,
) -> None:
    def report(done: int, total: int | None) -> None:
        progress("download", done, total)

    download(
        source.url,
        expected,
        partial,
        transport or transport_for(source.url),
        policy=options.policy,
        on_progress=report,
        cancel=options.cancel,
    )


def _verify(path: Path, name: str, expected: Expected, progress: Progress) -> dict[str, str]:
    size = path.stat().st_size
    progress("verify", 0, size)
    try:
        digests = verify_file(path, expected, name)
    except FetchFailure as failure:
        raise _Rejected(failure, path) from None
    progress("verify", size, size)
    return digests


def _archive_verified(record: SourceRecord | None, source: Source, archive: Path) -> bool:
    return (
        record is not None
        and record.state != "failed"
        and record.checksum == source.checksum
        and record.url == source.url
        and archive.is_file()
        and record.size == archive.stat().st_size
    )


def _state_for(expected: Expected) -> RecordState:
    return "verified" if expected.checksum is not None else "fetched"


def _record(
    source: Source,
    state: RecordState,
    digests: dict[str, str],
    file: Path,
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
        stamp=stamp,
    )


def _place_file(
    source: Source, workspace: Workspace, path: Path, digests: dict[str, str], expected: Expected
) -> Outcome:
    target = file_target(source, workspace.root)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, target)
    workspace.partial(source.name).discard()
    state = _state_for(expected)
    relative = target.relative_to(workspace.root).as_posix()
    record = _record(source, state, digests, target, [relative], FileStamp.of(target))
    workspace.write_record(source.name, record)
    message = _placed_message(state, digests)
    return Outcome(source.name, state, message, md5s={target: digests[DVC_ALGORITHM]})


def _place_archive(
    source: Source,
    workspace: Workspace,
    archive: Path,
    kind: ArchiveKind,
    digests: dict[str, str],
    expected: Expected,
    options: FetchOptions,
    progress: Progress,
) -> Outcome:
    """Extract beside the root, then move each top-level member into place."""
    workspace.clear_extract(source.name)
    staging = workspace.extract_dir(source.name)
    staging.parent.mkdir(parents=True, exist_ok=True)
    written = 0

    def report(count: int) -> None:
        nonlocal written
        written += count
        progress("extract", written, None)

    try:
        extracted = extract_archive(archive, kind, staging, limits=options.limits, progress=report)
    except FetchFailure as failure:
        raise _Rejected(failure, archive) from None
    target = archive_target(source, workspace.root)
    previous = workspace.read_record(source.name)
    ours = set(previous.placed) if previous is not None else set()
    target.mkdir(parents=True, exist_ok=True)
    placed: list[str] = []
    for name in sorted(entry.name for entry in staging.iterdir()):
        destination = target / name
        relative = destination.relative_to(workspace.root).as_posix()
        if destination.exists() or destination.is_symlink():
            if relative not in ours and not _same_tree(staging / name, destination, extracted.md5s):
                workspace.clear_extract(source.name)
                raise FetchFailure(
                    FailureClass.UNSAFE_ARCHIVE,
                    f"{source.filename} would replace {relative}, which differs from what the "
                    "archive holds and was put there by another source or by hand; move it "
                    "away or give this source its own 'unpack_to'",
                )
            _remove(destination)
        placed.append(relative)
        # recorded before the move, so a crash leaves a record naming everything placed
        workspace.write_record(source.name, _record(source, "fetched", digests, archive, placed))
        os.replace(staging / name, destination)
    workspace.clear_extract(source.name)
    md5s = {target / path: md5 for path, md5 in extracted.md5s.items()}
    manifest = _write_manifest(workspace, source, md5s)
    state = _state_for(expected)
    workspace.write_record(source.name, _record(source, state, digests, archive, placed))
    if not options.keep_archives:
        archive.unlink()
    message = (
        f"{_placed_message(state, digests)}; unpacked {extracted.files:,} file(s), "
        f"listed in {manifest.name}"
    )
    return Outcome(source.name, state, message, md5s=md5s)


def _write_manifest(workspace: Workspace, source: Source, md5s: dict[Path, str]) -> Path:
    """The manifest of what an archive placed, from the digests taken while unpacking it, so
    ``vcat verify NAME --manifest`` can later prove the tree unchanged without the archive."""
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
            records.append(
                ManifestRecord(record.placed[0], record.size or 0, record.digests["md5"])
            )
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
        return existing.is_file() and hash_file(existing)[DVC_ALGORITHM] == md5s.get(
            unpacked.relative_to(unpacked.parent).as_posix()
        )
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


def _placed_message(state: str, digests: dict[str, str]) -> str:
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


def _fail(source: Source, workspace: Workspace, failure: FetchFailure) -> Outcome:
    """Quarantine what failed (the file, or the page served instead of it) and record it."""
    quarantined = None
    rejected = failure.path if isinstance(failure, _Rejected) else None
    if rejected is not None or isinstance(failure, ServedPage):
        folder = workspace.quarantine(source.name, rejected, source.filename, failure, source.url)
        workspace.partial(source.name).discard()
        quarantined = str(folder)
    record = SourceRecord(
        state="failed",
        url=source.url,
        checksum=source.checksum,
        failure=str(failure.failure),
        reason=failure.reason,
        quarantined=quarantined,
    )
    workspace.write_record(source.name, record)
    where = f" (kept in {quarantined})" if quarantined else ""
    return Outcome(source.name, "failed", failure.describe() + where, failure)
