"""The state of every source and subset of an entry, read from disk without fetching.

States: ``absent``, ``partial`` (resumable, bytes so far in ``detail``), ``fetched``
(present, nothing or nobody verified it), ``verified``, ``changed`` (files whose size, times
or inode differ from when they were placed; their content was not read), ``damaged`` (files
missing, added, of another kind or with other content), ``failed:<class>``, and for trees a
person downloads by hand ``manual:missing`` / ``manual:present``.

``verified`` and ``fetched`` are said only of files that are still as the fetch left them:
by default their stamps are compared (nothing is read), with ``full`` every file is hashed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vcat.catalog.loader import Entry
from vcat.catalog.schema import AccessKind, ArchiveKind, DatasetEntry, Source
from vcat.fetch.integrity import check_placed
from vcat.fetch.placing import archive_target, file_target
from vcat.fetch.workspace import SourceRecord, Workspace
from vcat.verify.layout import NoLayout, check_layout
from vcat.verify.manifest import ManifestReport, TreeError

#: Paths a status detail names before "and N more".
NAMED = 3


@dataclass(frozen=True)
class StatusRow:
    entry: str
    part: str  # "source", "subset" or "tree"
    name: str
    state: str
    detail: str = ""


def source_state(source: Source, workspace: Workspace, full: bool = False) -> tuple[str, str]:
    """(state, detail) of one source under ``workspace.root``; ``full`` hashes every file
    the source placed instead of comparing stamps."""
    record = workspace.read_record(source.name)
    partial = workspace.partial(source.name)
    if _finished(record, source):
        assert record is not None
        try:
            report = check_placed(source, record, workspace, "full" if full else "stamps")
        except TreeError as exc:
            return "damaged", str(exc)
        if report is not None:
            if report.ok:
                return record.state, _digest_detail(record.digests)
            return _damage(report)
    if partial.size() > 0:
        meta = partial.meta()
        total = meta.size if meta is not None and meta.size else source.size
        of = f" of {total:,}" if total else ""
        failed = f"; last try failed: {record.failure}" if record and record.failure else ""
        return "partial", f"{partial.size():,}{of} bytes, resumable{failed}"
    if record is not None and record.state == "unpacking":
        return "partial", "the archive is verified; unpacking was interrupted: `vcat fetch` ends it"
    if record is not None and record.state == "failed":
        return f"failed:{record.failure}", record.reason or ""
    if _present(source, workspace.root):
        return (
            "fetched",
            "present (e.g. from `dvc pull`), not verified here: `vcat fetch` checks it",
        )
    return "absent", ""


def _finished(record: SourceRecord | None, source: Source) -> bool:
    """Whether ``record`` says this catalog version of ``source`` was placed."""
    return (
        record is not None
        and record.state in ("verified", "fetched")
        and record.url == source.url
        and record.checksum == source.checksum
    )


def _damage(report: ManifestReport) -> tuple[str, str]:
    """(state, detail) of a source whose files differ from what its fetch placed."""
    repair = "`vcat fetch` repairs it"
    if report.failures:
        named = ", ".join(f"{f.path} ({f.failure})" for f in report.failures[:NAMED])
        more = f" and {len(report.failures) - NAMED:,} more" if len(report.failures) > NAMED else ""
        return "damaged", f"{len(report.failures):,} file(s) differ: {named}{more}; {repair}"
    named = ", ".join(report.changed[:NAMED])
    more = f" and {len(report.changed) - NAMED:,} more" if len(report.changed) > NAMED else ""
    return (
        "changed",
        f"{len(report.changed):,} file(s) changed since the fetch (size, time or inode): "
        f"{named}{more}; `vcat verify` hashes them, {repair}",
    )


def _present(source: Source, root: Path) -> bool:
    if source.archive == ArchiveKind.NONE:
        return file_target(source, root).is_file()
    target = archive_target(source, root)
    return target.is_dir() and next(target.iterdir(), None) is not None


def _digest_detail(digests: dict[str, str]) -> str:
    return " ".join(f"{name}:{value}" for name, value in sorted(digests.items()))


def _tree_state(entry: Entry, spec: DatasetEntry, root: Path) -> StatusRow:
    if not root.is_dir():
        return StatusRow(entry.name, "tree", "layout", "manual:missing", f"no folder at {root}")
    try:
        report = check_layout(root, spec, extras_listed=0)
    except NoLayout as exc:
        return StatusRow(entry.name, "tree", "layout", "manual:missing", str(exc))
    if report.ok:
        return StatusRow(entry.name, "tree", "layout", "manual:present", f"{report.files:,} files")
    bad = [r.spec.glob for r in report.rules if not r.ok]
    detail = f"{len(bad)} rule(s) not met: {', '.join(bad[:3])}" + ("..." if len(bad) > 3 else "")
    return StatusRow(entry.name, "tree", "layout", "manual:missing", detail)


def entry_status(entry: Entry, root: Path, full: bool = False) -> list[StatusRow]:
    """One row per source and subset of ``entry`` (plus its tree, for manual datasets);
    ``full`` hashes the fetched files instead of comparing their stamps."""
    spec = entry.spec
    workspace = Workspace(root)
    rows: list[StatusRow] = []
    states: dict[str, tuple[str, str]] = {}
    for source in spec.all_sources():
        states[source.name] = source_state(source, workspace, full)
        rows.append(StatusRow(entry.name, "source", source.name, *states[source.name]))
    if not isinstance(spec, DatasetEntry):
        return rows
    tree = None
    if spec.access.kind != AccessKind.PUBLIC and spec.layout is not None:
        tree = _tree_state(entry, spec, root)
        rows.append(tree)
    for subset in spec.subsets:
        if subset.list_file is not None:
            state, detail = states[subset.list_file.source]
            rows.append(StatusRow(entry.name, "subset", subset.name, state, detail))
        elif tree is not None:
            rows.append(
                StatusRow(entry.name, "subset", subset.name, tree.state, "part of the tree")
            )
    return rows
