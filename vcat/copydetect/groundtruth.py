"""The DISC21 ground-truth CSV: ``query_id,reference_id``, one row per query.

A query that copies a reference names it; a distractor (a query that copies none) has an
empty reference, as DISC21's own file has it. In a training set every augmented copy
``<cls>_<j>`` is a query of the reference ``<cls>_0``.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path

from vcat.regular import read_regular_text

HEADER = ("query_id", "reference_id")


class GroundTruthError(ValueError):
    """A ground-truth file that does not have the DISC21 form; names the file and line."""


def dumps(rows: Iterable[tuple[str, str | None]]) -> str:
    """The CSV text of ``(query, reference or None)`` rows, with the header."""
    lines = [",".join(HEADER)]
    for query, reference in rows:
        for value in (query, reference or ""):
            if any(character in value for character in ',"\r\n'):
                raise ValueError(f"an id cannot hold a comma, a quote or a line break: {value!r}")
        lines.append(f"{query},{reference or ''}")
    return "\n".join(lines) + "\n"


def write(path: Path, rows: Iterable[tuple[str, str | None]]) -> None:
    """``rows`` written to ``path`` under a temporary name, then renamed."""
    text = dumps(rows)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="ascii", newline="")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def loads(text: str, origin: str = "ground truth") -> list[tuple[str, str | None]]:
    """The rows of a DISC21 ground-truth CSV; GroundTruthError naming ``origin`` and the line
    for a missing header, a row without two fields, an empty query or a query given twice."""
    rows: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    reader = csv.reader(io.StringIO(text))
    for number, fields in enumerate(reader, start=1):
        if number == 1:
            if tuple(field.strip() for field in fields) != HEADER:
                raise GroundTruthError(
                    f"{origin}:1: the header must be {','.join(HEADER)}, not {','.join(fields)}"
                )
            continue
        if len(fields) != 2:
            raise GroundTruthError(
                f"{origin}:{number}: expected 2 fields (query_id,reference_id), got {len(fields)}"
            )
        query, reference = (field.strip() for field in fields)
        if not query:
            raise GroundTruthError(f"{origin}:{number}: the query id is empty")
        if query in seen:
            raise GroundTruthError(f"{origin}:{number}: query {query!r} has a row already")
        seen.add(query)
        rows.append((query, reference or None))
    if not rows and not text.strip():
        raise GroundTruthError(f"{origin}:1: the file is empty; it needs at least the header")
    return rows


def read(path: Path) -> list[tuple[str, str | None]]:
    """The rows of the ground-truth file ``path`` (see :func:`loads`)."""
    return loads(read_regular_text(path), str(path))
