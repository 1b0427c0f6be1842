"""Whether the files a fetch placed are still as it left them.

A fetch records, per source, what it placed: a plain file's size, md5 and stamp in the
source's record, an archive's files (and links) in ``manifests/<source>.md5.manifest.tsv``
with their stamps beside it. ``check_placed`` compares the tree with that, never following a
link and never opening anything but regular files:

- ``stamps``: nothing is read; a file whose size, times or inode differ is *changed*;
- ``changed``: such files are hashed, and only those whose content differs fail;
- ``full``: every file is hashed.

Files found intact get fresh stamps, so a file whose times changed (a copy, ``touch``) is
read once, not at every check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vcat.catalog.schema import Source
from vcat.fetch.workspace import FileStamp, SourceRecord, Workspace
from vcat.verify.manifest import (
    STATUSES,
    CheckMode,
    FileResult,
    Manifest,
    ManifestError,
    ManifestRecord,
    ManifestReport,
    ProgressCallback,
    compare,
    list_tree,
    read_manifest,
)
from vcat.verify.stamps import Stamp, read_stamps, write_stamps

ALGORITHM = "md5"  # what fetches record (DVC's digest)


@dataclass(frozen=True)
class Placed:
    """What a fetch says it placed for one source."""

    manifest_path: Path  # where it came from, for messages
    manifest: Manifest
    stamps: dict[str, Stamp]
    items: list[str]  # the paths under the root it placed (top-level items of an archive)


def placed_by(record: SourceRecord, source: str, workspace: Workspace) -> Placed | None:
    """What ``record`` says was placed, or None when it placed nothing or its manifest cannot
    be read (an area written by an older version, or damaged)."""
    if not record.placed:
        return None
    if record.stamp is not None:  # a plain file
        digest = record.digests.get(ALGORITHM)
        if digest is None or record.size is None:
            return None
        path = record.placed[0]
        stamps = {}
        if record.stamp.ctime_ns is not None:
            stamp = record.stamp
            stamps[path] = Stamp(stamp.size, stamp.mtime_ns, stamp.ctime_ns, stamp.inode)
        manifest = Manifest(ALGORITHM, [ManifestRecord(path, record.size, digest)])
        return Placed(workspace.record_path(source), manifest, stamps, [path])
    manifest_path = workspace.manifest_path(source)
    try:
        manifest = read_manifest(manifest_path)
    except ManifestError:
        return None
    stamps = read_stamps(workspace.stamps_path(source))
    return Placed(manifest_path, manifest, stamps, list(record.placed))


def check_placed(
    source: Source,
    record: SourceRecord,
    workspace: Workspace,
    mode: CheckMode = "changed",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ManifestReport | None:
    """Compare what ``record`` placed with the tree; None when there is nothing to compare
    with (see ``placed_by``). Raises ``TreeError`` when a folder cannot be read."""
    placed = placed_by(record, source.name, workspace)
    if placed is None:
        return None
    root = workspace.root
    listing = list_tree(root, only=placed.items, with_stamps=True)
    report = compare(
        root,
        placed.manifest_path,
        placed.manifest,
        listing,
        stamps=placed.stamps,
        mode=mode,
        workers=workers,
        progress=progress,
    )
    _refresh(record, source.name, workspace, placed, report)
    return report


def _refresh(
    record: SourceRecord, source: str, workspace: Workspace, placed: Placed, report: ManifestReport
) -> None:
    """Record the stamps of files proven intact whose stamps were stale or missing."""
    fresh = {
        path: stamp for path, stamp in report.proven.items() if placed.stamps.get(path) != stamp
    }
    if not fresh:
        return
    if record.stamp is not None:
        path = record.placed[0]
        stamp = fresh[path]
        latest = workspace.read_record(source)
        if latest is not None and latest.stamp == record.stamp:  # nobody replaced it meanwhile
            new = FileStamp(
                size=stamp.size, mtime_ns=stamp.mtime_ns, inode=stamp.inode, ctime_ns=stamp.ctime_ns
            )
            workspace.write_record(source, latest.model_copy(update={"stamp": new}))
        return
    write_stamps({**placed.stamps, **fresh}, workspace.stamps_path(source))


def record_archive_stamps(workspace: Workspace, source: str, placed: list[str]) -> None:
    """Stamp every file an archive source just placed (no file is read)."""
    listing = list_tree(workspace.root, only=placed, with_stamps=True)
    write_stamps(listing.stamps, workspace.stamps_path(source))


@dataclass
class EntryCheck:
    """The files of every source a fetch recorded under one root, checked together."""

    sources: list[str] = field(default_factory=list)  # the sources whose files were compared
    problems: list[str] = field(default_factory=list)  # sources not finished, or out of date
    failures: list[FileResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    hashed: int = 0
    bytes_hashed: int = 0

    @property
    def recorded(self) -> bool:
        """Whether any fetch record was found (else there was nothing to check)."""
        return bool(self.sources or self.problems)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.failures


def check_entry(
    name: str,
    sources: list[Source],
    workspace: Workspace,
    mode: CheckMode = "changed",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> EntryCheck:
    """Check the files of each of ``sources`` that a fetch into ``workspace.root`` recorded
    (sources never fetched there are left to the layout check). A source whose last fetch
    failed, was interrupted, or fetched another catalog version is a problem; an interrupted
    one's files are still compared with what its archive holds, to name what is missing.
    Raises ``TreeError`` when a folder cannot be read."""
    check = EntryCheck()
    for source in sources:
        record = workspace.read_record(source.name)
        if record is None:
            continue
        if record.state == "failed":
            check.problems.append(
                f"source {source.name!r}: the last fetch failed ({record.failure}): "
                f"{record.reason or ''}; run `vcat fetch {name}` again"
            )
            continue
        if record.state == "unpacking":
            check.problems.append(
                f"source {source.name!r}: unpacking was interrupted, the tree is incomplete; "
                f"`vcat fetch {name}` finishes it"
            )
        elif record.url != source.url or record.checksum != source.checksum:
            check.problems.append(
                f"source {source.name!r}: the catalog entry changed since it was fetched; "
                f"`vcat fetch {name}` brings the new version"
            )
            continue
        report = check_placed(source, record, workspace, mode, workers, progress)
        if report is None:
            if record.state != "unpacking":
                check.problems.append(
                    f"source {source.name!r}: its fetch left no list of the files it placed; "
                    f"`vcat fetch {name}` checks them and records one"
                )
            continue
        check.sources.append(source.name)
        check.failures.extend(report.failures)
        for status, count in report.counts.items():
            check.counts[status] += count
        check.hashed += report.hashed
        check.bytes_hashed += report.bytes_hashed
    check.failures.sort(key=lambda failure: failure.path)
    return check
