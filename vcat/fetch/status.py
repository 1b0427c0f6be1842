"""The state of every source and subset of an entry, read from disk without fetching.

States: ``absent``, ``partial`` (resumable, bytes so far in ``detail``), ``fetched``
(present, nothing or nobody verified it), ``verified``, ``failed:<class>``, and for trees a
person downloads by hand ``manual:missing`` / ``manual:present``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vcat.catalog.loader import Entry
from vcat.catalog.schema import AccessKind, ArchiveKind, DatasetEntry, Source
from vcat.fetch.placing import archive_target, file_target, is_current
from vcat.fetch.workspace import Workspace
from vcat.verify.layout import NoLayout, check_layout


@dataclass(frozen=True)
class StatusRow:
    entry: str
    part: str  # "source", "subset" or "tree"
    name: str
    state: str
    detail: str = ""


def source_state(source: Source, workspace: Workspace) -> tuple[str, str]:
    """(state, detail) of one source under ``workspace.root``."""
    record = workspace.read_record(source.name)
    partial = workspace.partial(source.name)
    if is_current(record, source, workspace.root):
        assert record is not None
        return record.state, _digest_detail(record.digests)
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


def entry_status(entry: Entry, root: Path) -> list[StatusRow]:
    """One row per source and subset of ``entry`` (plus its tree, for manual datasets)."""
    spec = entry.spec
    workspace = Workspace(root)
    rows: list[StatusRow] = []
    states: dict[str, tuple[str, str]] = {}
    for source in spec.all_sources():
        states[source.name] = source_state(source, workspace)
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
