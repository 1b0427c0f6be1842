"""Fetching one catalog source into a dataset root: download, verify, place, record.

A source ends in one of three states, each written to its record: ``verified`` (size and
checksum match the catalog), ``fetched`` (placed, but the catalog publishes nothing to
check it against) or ``failed`` (the file is quarantined with its failure class).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vcat.archive import ExtractLimits, detect_archive_kind
from vcat.catalog.fields import parse_checksum
from vcat.catalog.schema import ArchiveKind, Source
from vcat.failures import FailureClass, FetchFailure, file_is_html
from vcat.fetch.download import Expected, PartialFile, RetryPolicy, download, verify_file
from vcat.fetch.limits import TransferLimits
from vcat.fetch.pages import ServedPage
from vcat.fetch.placing import (
    Outcome,
    Progress,
    Rejected,
    adoption_expected,
    file_target,
    is_current,
    make_record,
    place_archive,
    place_file,
    record_file,
    refuse_links_on_the_way,
)
from vcat.fetch.transport import Transport, transport_for
from vcat.fetch.workspace import SourceRecord, Workspace


@dataclass(frozen=True)
class FetchOptions:
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    limits: ExtractLimits = field(default_factory=ExtractLimits)
    keep_archives: bool = True
    force: bool = False  # place every source again, even one whose files are intact
    transfer: TransferLimits = field(default_factory=TransferLimits)
    cancel: threading.Event | None = None


def expected_of(source: Source) -> Expected:
    return Expected(source.size, parse_checksum(source.checksum), source.etag)


def fetch_source(
    source: Source,
    workspace: Workspace,
    *,
    options: FetchOptions = FetchOptions(),
    transport: Transport | None = None,
    progress: Progress = lambda phase, done, total: None,
    note: Callable[[str], None] = lambda line: None,
) -> Outcome:
    """Bring ``source`` into ``workspace.root``; failures are recorded and returned.
    ``note(line)`` hears of failed attempts as they happen.

    Raises only ``Cancelled`` (bytes so far are kept for the next run).
    """
    previous = workspace.read_record(source.name)
    if not options.force and is_current(previous, source, workspace.root):
        assert previous is not None
        return Outcome(source.name, "up-to-date", f"{previous.state} earlier, unchanged")
    owned = previous.owned if previous is not None else []
    expected = expected_of(source)
    partial = workspace.partial(source.name)
    archive = workspace.archive_path(source.filename)
    try:
        refuse_links_on_the_way(source, workspace.root)
        in_place = file_target(source, workspace.root)
        if source.archive == ArchiveKind.NONE and in_place.is_file() and not in_place.is_symlink():
            kept = adoption_expected(expected, previous, source)
            adopted = _adopt(source, workspace, in_place, kept, owned, progress)
            if adopted is not None:
                return adopted
        if source.archive != ArchiveKind.NONE and _archive_verified(previous, source, archive):
            assert previous is not None
            digests, downloaded, etag = previous.digests, archive, previous.etag
        else:
            _download(source, partial, expected, transport, options, progress, note)
            etag = meta.etag if (meta := partial.meta()) is not None else None
            digests = _verify(partial.path, source.filename, expected, progress)
            downloaded = partial.path
        kind = ArchiveKind(source.archive)
        if kind == ArchiveKind.AUTO:
            kind = detect_archive_kind(downloaded)
        if kind == ArchiveKind.NONE:
            placed = place_file(source, workspace, downloaded, digests, expected, owned)
            return _keep_etag(workspace, placed, etag)
        if downloaded != archive:
            archive.parent.mkdir(parents=True, exist_ok=True)
            os.replace(downloaded, archive)
            partial.discard()
            record = make_record(source, "unpacking", digests, archive, owned)
            workspace.write_record(source.name, record)
        outcome = place_archive(
            source, workspace, archive, kind, digests, expected, owned, options.limits, progress
        )
        if not options.keep_archives:
            archive.unlink()
        return _keep_etag(workspace, outcome, etag)
    except FetchFailure as failure:
        return _fail(source, workspace, failure, owned)


def _keep_etag(workspace: Workspace, outcome: Outcome, etag: str | None) -> Outcome:
    """Keep the server's ETag of the download in the record (`vcat catalog record` reads it)."""
    record = workspace.read_record(outcome.source)
    if etag and record is not None and record.etag != etag:
        workspace.write_record(outcome.source, record.model_copy(update={"etag": etag}))
    return outcome


def _adopt(
    source: Source,
    workspace: Workspace,
    path: Path,
    expected: Expected,
    owned: list[str],
    progress: Progress,
) -> Outcome | None:
    """Check a file already at its final path (e.g. restored by ``dvc pull``) instead of
    downloading it again. A file that fails is quarantined and None returned: download it."""
    try:
        digests = _verify(path, source.filename, expected, progress)
        if expected.checksum is None and file_is_html(path):
            page = FetchFailure(FailureClass.HTML_INSTEAD_OF_FILE, f"{path.name} is a web page")
            raise Rejected(page, path)
    except Rejected as rejected:
        workspace.quarantine(source.name, path, source.filename, rejected, source.url)
        return None
    how = "already in place; "
    return record_file(source, workspace, path, digests, expected, owned, how)


def _download(
    source: Source,
    partial: PartialFile,
    expected: Expected,
    transport: Transport | None,
    options: FetchOptions,
    progress: Progress,
    note: Callable[[str], None],
) -> None:
    def report(done: int, total: int | None) -> None:
        progress("download", done, total)

    download(
        source.url,
        expected,
        partial,
        transport or transport_for(source.url, options.transfer),
        policy=options.policy,
        limits=options.transfer,
        on_progress=report,
        on_note=note,
        cancel=options.cancel,
    )


def _verify(path: Path, name: str, expected: Expected, progress: Progress) -> dict[str, str]:
    size = path.stat().st_size
    progress("verify", 0, size)
    try:
        digests = verify_file(path, expected, name)
    except FetchFailure as failure:
        raise Rejected(failure, path) from None
    progress("verify", size, size)
    return digests


def _archive_verified(record: SourceRecord | None, source: Source, archive: Path) -> bool:
    """Whether the kept archive is the verified download of this catalog version."""
    return (
        record is not None
        and record.state != "failed"
        and record.checksum == source.checksum
        and record.url == source.url
        and archive.is_file()
        and record.size == archive.stat().st_size
    )


def _fail(source: Source, workspace: Workspace, failure: FetchFailure, owned: list[str]) -> Outcome:
    """Quarantine what failed (the file, or the page served instead of it) and record it."""
    quarantined = None
    rejected = failure.path if isinstance(failure, Rejected) else None
    if rejected is not None or isinstance(failure, ServedPage):
        folder = workspace.quarantine(source.name, rejected, source.filename, failure, source.url)
        workspace.partial(source.name).discard()
        quarantined = str(folder)
    latest = workspace.read_record(source.name)  # may own items moved before the failure
    record = SourceRecord(
        state="failed",
        url=source.url,
        checksum=source.checksum,
        owned=sorted(set(owned) | set(latest.owned if latest is not None else [])),
        failure=str(failure.failure),
        reason=failure.reason,
        quarantined=quarantined,
    )
    workspace.write_record(source.name, record)
    where = f" (kept in {quarantined})" if quarantined else ""
    return Outcome(source.name, "failed", failure.describe() + where, failure)
