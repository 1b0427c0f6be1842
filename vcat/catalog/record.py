"""Recording in a catalog entry what a fetch established about its files: the exact size, the
md5 taken while downloading, and the server's ETag, with where the checksum came from.

The values come from the work area's records of the fetch (``vcat.fetch.workspace``), never
from hashing the file again: a file changed after its download must not become the reference.
A checksum the entry already has is never replaced by another one; every source is checked
before any is written, so a refusal leaves the entry as it was.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from vcat.catalog.edit import set_source_values
from vcat.catalog.fields import parse_checksum
from vcat.catalog.loader import Entry
from vcat.catalog.schema import ChecksumOrigin, Source
from vcat.catalog.yaml_source import Location
from vcat.fetch.download import DVC_ALGORITHM
from vcat.fetch.workspace import SourceRecord, Workspace

#: What ``recorded_from`` says when the user does not say more.
FIRST_DOWNLOAD = "first trusted download"


class RecordRefused(Exception):
    """A source cannot be recorded; the message says why and what to run."""


@dataclass(frozen=True)
class Recorded:
    """The values written into one source (empty when it already said all of them)."""

    source: str
    values: dict[str, Any]


def record_fetched(
    entry: Entry,
    workspace: Workspace,
    only: Sequence[str] = (),
    day: date | None = None,
    recorded_from: str = FIRST_DOWNLOAD,
) -> list[Recorded]:
    """Write the fetched size, md5 and ETag of ``entry``'s sources (``only`` these, if given)
    into its file, with ``checksum_source`` kind ``recorded`` on ``day`` (default: today)."""
    located = {source.name: (loc, source) for loc, source in entry.spec.located_sources()}
    unknown = [name for name in only if name not in located]
    if unknown:
        raise RecordRefused(
            f"{entry.name} has no source named {', '.join(map(repr, unknown))} "
            f"(its sources: {', '.join(located)})"
        )
    provenance = {
        "kind": ChecksumOrigin.RECORDED.value,
        "date": (day or date.today()).isoformat(),
        "recorded_from": recorded_from,
    }
    plans: list[tuple[Location, Recorded]] = []
    for name in only or list(located):
        loc, source = located[name]
        record = _fetched_record(entry, workspace, source)
        plans.append((loc, Recorded(name, _values(entry, source, record, provenance))))
    for loc, recorded in plans:
        if recorded.values:
            set_source_values(entry.path, loc, recorded.values)
    return [recorded for _, recorded in plans]


def _fetched_record(entry: Entry, workspace: Workspace, source: Source) -> SourceRecord:
    record = workspace.read_record(source.name)
    again = f"run `vcat fetch {entry.name} --source {source.name}`"
    if record is None or record.state not in ("verified", "fetched"):
        state = "has not been fetched" if record is None else f"is {record.state}"
        raise RecordRefused(f"source {source.name!r} {state} in {workspace.root}: {again} first")
    if record.url != source.url:
        raise RecordRefused(
            f"source {source.name!r} was fetched from {record.url}, but the entry now says "
            f"{source.url}: {again} again"
        )
    if DVC_ALGORITHM not in record.digests or record.size is None:
        raise RecordRefused(f"the fetch of {source.name!r} recorded no md5 or size: {again} again")
    return record


def _values(
    entry: Entry, source: Source, record: SourceRecord, provenance: dict[str, str]
) -> dict[str, Any]:
    """The keys to set in ``source`` so that it states what ``record`` established."""
    md5 = record.digests[DVC_ALGORITHM]
    current = parse_checksum(source.checksum)
    values: dict[str, Any] = {}
    if current is None:
        if record.checksum != source.checksum:
            raise RecordRefused(
                f"source {source.name!r} was fetched when the entry said checksum "
                f"{record.checksum}: run `vcat fetch {entry.name} --source {source.name}` again"
            )
        values = {"checksum": f"md5:{md5}", "checksum_source": provenance}
    else:
        fetched = record.digests.get(current.algorithm)
        if fetched != current.hexdigest:
            seen = f"{current.algorithm}:{fetched}" if fetched else f"md5:{md5}"
            raise RecordRefused(
                f"source {source.name!r}: the fetched file has {seen}, but the entry states "
                f"{source.checksum}; a stated checksum is never overwritten: fetch it again, "
                "or correct the entry by hand if upstream changed the file"
            )
        if source.checksum_source is None:
            values["checksum_source"] = provenance
    if source.size != record.size:
        values["size"] = record.size
    if record.etag and source.etag != record.etag:
        values["etag"] = record.etag
    return values
