"""Writing a built demo file's size and md5 into its catalog entry, keeping everything else.

Only the ``size:`` and ``checksum:`` lines of the one source change; comments, order and
formatting of the entry stay as they were, and the file is replaced atomically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from vcat.catalog.loader import Catalog, load_entry

_VALUE = re.compile(r"^(?P<indent>\s*)(?P<key>size|checksum):\s*\S.*$")


class RecordError(Exception):
    """Raised when an entry cannot be updated in place (the message names file and line)."""


def record_source(catalog: Catalog, entry_name: str, source_name: str, size: int, md5: str) -> Path:
    """Set ``size`` and ``checksum: md5:<md5>`` of one source of a catalog entry file."""
    # read the file again: an earlier call may have moved this entry's lines
    entry = load_entry(catalog.get(entry_name).path)
    names = [source.name for source in entry.spec.all_sources()]
    if source_name not in names:
        raise RecordError(f"{entry.path}: no source named {source_name!r} ({', '.join(names)})")
    index = names.index(source_name)
    lines = entry.path.read_text(encoding="utf-8").splitlines(keepends=True)
    checksum_line = entry.lines.lines.get(("sources", index, "checksum"))
    if checksum_line is None:
        raise RecordError(f"{entry.path}: source {source_name!r} has no checksum line to update")
    _replace_value(entry.path, lines, checksum_line, "checksum", f"md5:{md5}")
    size_line = entry.lines.lines.get(("sources", index, "size"))
    if size_line is not None:
        _replace_value(entry.path, lines, size_line, "size", str(size))
    else:
        indent = _VALUE.match(lines[checksum_line - 1].rstrip("\n"))["indent"]  # type: ignore[index]
        lines.insert(checksum_line - 1, f"{indent}size: {size}\n")
    partial = entry.path.with_name(f".{entry.path.name}.partial")
    partial.write_text("".join(lines), encoding="utf-8")
    os.replace(partial, entry.path)
    return entry.path


def _replace_value(path: Path, lines: list[str], line: int, key: str, value: str) -> None:
    match = _VALUE.match(lines[line - 1].rstrip("\n"))
    if match is None or match["key"] != key:
        raise RecordError(
            f"{path}:{line}: expected a one-line '{key}: ...' here; write the value by hand"
        )
    lines[line - 1] = f"{match['indent']}{key}: {value}\n"
