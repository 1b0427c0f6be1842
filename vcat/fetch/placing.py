"""Putting verified bytes at their final paths under a dataset root, and recording it.

A plain file is renamed into place. An archive is unpacked into the work area, then each
of its top-level items is renamed into the target folder; an item already there is replaced
only when this source put it there (``SourceRecord.owned``) or when it is identical to what
the archive holds (a tree restored by ``dvc pull``). Digests taken while downloading and
unpacking are written to manifests (an archive's before its items move, so an interrupted
move can say what is missing), and each placed file's stamp after, so a later check can tell
an untouched file without reading it (``vcat.fetch.integrity``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from vcat.archive import ExtractLimits, extract_archive
from vcat.catalog.fields import Checksum, parse_checksum
from vcat.catalog.schema import ArchiveKind, Source
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.download import DVC_ALGORITHM, Expected
from vcat.fetch.integrity import check_placed, placed_by, record_archive_stamps
from vcat.fetch.workspace import FileStamp, RecordState, SourceRecord, Workspace
from vcat.hashing import hash_file
from vcat.verify.manifest import (
    CheckMode,
    Manifest,
    ManifestRecord,
    TreeError,
    list_tree,
    write_manifest,
)

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


def refuse_links_on_the_way(source: Source, root: Path) -> None:
    """Raise ``FetchFailure`` when a folder between ``root`` and where ``source`` places its
    files is a symbolic link: placing, replacing or reading through it would act outside
    the root (the root itself may be a link)."""
    current = root
    for part in PurePosixPath(source.unpack_to or ".").parts:
        current = current / part
        if current.is_symlink():
            raise FetchFailure(
                FailureClass.NOT_A_FILE,
                f"{current.relative_to(root)} is a symbolic link to {os.readlink(current)}; "
                f"files are placed only inside {root}: remove the link (or put a folder "
                "there), then fetch again",
            )


def is_current(
    record: SourceRecord | None, source: Source, root: Path, mode: CheckMode = "changed"
) -> bool:
    """Whether ``record`` finished placing this catalog version and every file it placed is
    still there, unchanged: nothing missing, added, replaced by a link, FIFO or device, or
    with other content. ``mode`` (see ``vcat.fetch.integrity``) says whether files whose
    stamps changed are hashed (``changed``, the default), all are (``full``), or none is
    (``stamps``: a changed stamp is enough to say no)."""
    if record is None or record.state not in ("verified", "fetched"):
        return False
    if record.url != source.url or record.checksum != source.checksum:
        return False
    workspace = Workspace(root)
    if placed_by(record, source.name, workspace) is None:
        return False  # nothing to prove the tree by: place it again
    try:
        report = check_placed(source, record, workspace, mode)
    except (TreeError, OSError):
        return False
    return report is not None and report.ok


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
    """Record ``target`` (already at its final path) as this source's file; ``verified`` only
    when the catalog publishes its checksum (``expected`` may hold one the last fetch
    recorded, see ``adoption_expected``)."""
    state: RecordState = "verified" if parse_checksum(source.checksum) is not None else "fetched"
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
    manifest = _write_source_manifest(workspace, source, staging, target, extracted.md5s)
    workspace.stamps_path(source.name).unlink(missing_ok=True)  # of an older version
    names = sorted(entry.name for entry in staging.iterdir())
    placed = [(target / name).relative_to(workspace.root).as_posix() for name in names]
    for name, relative in zip(names, placed, strict=True):
        destination = target / name
        present = destination.exists() or destination.is_symlink()
        if (
            present
            and relative not in owned
            and not _same_tree(staging / name, destination, extracted.md5s)
        ):
            workspace.clear_extract(source.name)
            raise FetchFailure(
                FailureClass.UNSAFE_ARCHIVE,
                f"{source.filename} would replace {relative}, which differs from what the "
                "archive holds and was put there by another source or by hand; move it "
                "away or give this source its own 'unpack_to'",
            )
    # Recorded once, before any move (not once per item, which grows with the square of the
    # item count), so a crash leaves a record owning everything it may have moved.
    workspace.write_record(
        source.name, make_record(source, "unpacking", digests, archive, owned, placed)
    )
    for name in names:
        destination = target / name
        if destination.exists() or destination.is_symlink():
            _remove(destination)
        os.replace(staging / name, destination)
    workspace.clear_extract(source.name)
    md5s = {target / path: md5 for path, md5 in extracted.md5s.items()}
    record_archive_stamps(workspace, source.name, placed)
    state = state_for(expected)
    workspace.write_record(source.name, make_record(source, state, digests, archive, owned, placed))
    message = (
        f"{placed_message(state, digests)}; unpacked {extracted.files:,} file(s), "
        f"listed in {manifest.name}"
    )
    return Outcome(source.name, state, message, md5s=md5s)


def _write_source_manifest(
    workspace: Workspace, source: Source, staging: Path, target: Path, md5s: dict[str, str]
) -> Path:
    """The manifest of what an archive is about to place from ``staging`` into ``target``:
    its files with the digests taken while unpacking them, and its links."""
    listing = list_tree(staging)
    prefix = target.relative_to(workspace.root).as_posix()
    prefix = "" if prefix == "." else prefix + "/"
    records = [ManifestRecord(prefix + path, size, md5s[path]) for path, size in listing.files]
    records += [ManifestRecord(prefix + path, 0, "", link) for path, link in listing.links.items()]
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
        placed = placed_by(record, source.name, workspace)
        assert placed is not None  # is_current says so
        records.extend(placed.manifest.records)
    if not records:
        return None
    out = workspace.tree_manifest_path()
    write_manifest(Manifest(DVC_ALGORITHM, sorted(records)), out)
    return out


def _same_tree(unpacked: Path, existing: Path, md5s: dict[str, str]) -> bool:
    """Whether ``existing`` holds exactly what was just unpacked to ``unpacked`` (a tree
    restored by ``dvc pull``, say): the same files by md5 (the unpacked side is not read
    again) and the same links; no link is followed, nothing but files is opened."""
    if unpacked.is_symlink() or existing.is_symlink():
        return False
    try:
        if unpacked.is_file():
            return existing.is_file() and hash_file(existing)[DVC_ALGORITHM] == md5s.get(
                unpacked.name
            )
        if not existing.is_dir():
            return False
        mine, theirs = list_tree(unpacked), list_tree(existing)
        if theirs.others or mine.links != theirs.links:
            return False
        if [path for path, _ in mine.files] != [path for path, _ in theirs.files]:
            return False
        prefix = unpacked.name + "/"
        return all(
            hash_file(existing / path)[DVC_ALGORITHM] == md5s[prefix + path]
            for path, _ in theirs.files
        )
    except (OSError, TreeError):
        return False


def adoption_expected(expected: Expected, record: SourceRecord | None, source: Source) -> Expected:
    """What a file already at its final path must be to be kept: ``expected``, or when the
    catalog publishes no checksum, the md5 the last fetch of the same URL recorded, so a file
    changed in place is fetched again instead of adopted."""
    if expected.checksum is not None or record is None or record.url != source.url:
        return expected
    digest = record.digests.get(DVC_ALGORITHM)
    if digest is None:
        return expected
    return replace(expected, checksum=Checksum(DVC_ALGORITHM, digest))


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
