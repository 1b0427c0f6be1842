"""Writing a built demo file's size and md5 into its catalog entry, keeping everything else.

Only the ``size:`` and ``checksum:`` lines of the one source change; comments, order and
formatting of the entry stay as they were, and the file is replaced atomically (see
``vcat.catalog.edit``). The demo world's checksums need no ``checksum_source``: vcat builds
and publishes those files itself.
"""

from __future__ import annotations

from pathlib import Path

from vcat.catalog.edit import EditError, set_source_values
from vcat.catalog.loader import Catalog, load_entry


class RecordError(Exception):
    """Raised when an entry cannot be updated in place (the message names file and line)."""


def record_source(catalog: Catalog, entry_name: str, source_name: str, size: int, md5: str) -> Path:
    """Set ``size`` and ``checksum: md5:<md5>`` of one source of a catalog entry file."""
    # read the file again: an earlier call may have changed this entry
    entry = load_entry(catalog.get(entry_name).path)
    located = {source.name: loc for loc, source in entry.spec.located_sources()}
    if source_name not in located:
        names = ", ".join(located)
        raise RecordError(f"{entry.path}: no source named {source_name!r} ({names})")
    try:
        set_source_values(
            entry.path, located[source_name], {"size": size, "checksum": f"md5:{md5}"}
        )
    except EditError as exc:
        raise RecordError(str(exc)) from exc
    return entry.path
