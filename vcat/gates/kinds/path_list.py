"""Path lists: a list folder of the path-list stage, a bare ``.memmap`` list, or a text list.

Rows of the ``entries`` table, one per path: its 0-based index, length in bytes, the room
left in its fixed-width field (a memmap path that fills its field may have been cut; text
lists have no field; a bare ``.memmap`` records no width: the ``not_cut`` check's ``width``
gives it, 120 by default), and, when the ``present`` check names a ``root``, whether the path is
there: a file under a folder, or a member ``<key>.<ext>`` of a shard folder (``index.json``).
Memmaps are read in blocks, never whole.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vcat.gates.checks import (
    Check,
    Expect,
    Params,
    mostly_of,
    row_count,
    values_between,
    values_unique,
)
from vcat.gates.kinds.images import load_index
from vcat.gates.profile import Profile, ProfileError, Table
from vcat.lists.layout import META_NAME
from vcat.lists.memmap import DEFAULT_WIDTH, PathList, PathListError
from vcat.regular import NotRegularFile, open_regular
from vcat.shards import INDEX_NAME

KIND = "path-list"
DESCRIPTION = "path lists: a path-list folder (list.json), a .memmap list or a text list"
TEXT_SUFFIXES = (".txt", ".lst")
BLOCK_ENTRIES = 1 << 16


def _present(params: Params) -> list[Expect]:
    if not params.get("root"):
        return []
    kwargs = {"column": "present", "value_set": [True], **mostly_of(params)}
    return [Expect("ExpectColumnValuesToBeInSet", kwargs)]


CHECKS: list[Check] = [
    row_count("count", "entries", "paths: exactly {equal}, or between {min} and {max}"),
    values_unique("unique", "entries", "item", "no path is listed twice"),
    values_between(
        "not_empty", "entries", "length", "every path has at least {min_length} byte(s)",
        low="min_length", high=None, defaults={"min_length": 1},
    ),
    values_between(
        "max_length", "entries", "length", "no path is longer than {max_length} bytes",
        low=None, high="max_length", defaults={"max_length": 4096},
    ),
    values_between(
        "not_cut", "entries", "room", "no memmap path fills its whole field (it may be cut)",
        low="min_room", high=None, defaults={"min_room": 1, "width": DEFAULT_WIDTH},
    ),
    Check(
        "present", "entries", "every path is in {root}", {"root": None, "max_bad_fraction": 0.0},
        _present, "present",
    ),
]  # fmt: skip


def detect(artifact: Path) -> bool:
    if artifact.is_dir():
        return (artifact / META_NAME).is_file()
    return artifact.suffix in (".memmap", *TEXT_SUFFIXES)


def _memmap_of(artifact: Path, width: int) -> tuple[Path, int] | None:
    """The memmap file and its width (a list folder's own; ``width`` for a bare ``.memmap``,
    which does not record it), or None for a text list."""
    if not (artifact.is_dir() or artifact.suffix == ".memmap"):
        return None
    try:
        listed = PathList(artifact, None if artifact.is_dir() else width)
    except (PathListError, OSError) as exc:
        raise ProfileError(str(exc)) from None
    return listed.path, listed.width


def _memmap_paths(path: Path, width: int) -> Iterator[tuple[bytes, int]]:
    """Each entry of the memmap (``PathList`` checked its size) without its padding, and its
    room left."""
    size = path.stat().st_size
    entries = np.memmap(path, dtype=f"S{width}", mode="r") if size else np.array([], f"S{width}")
    for start in range(0, len(entries), BLOCK_ENTRIES):
        for raw in entries[start : start + BLOCK_ENTRIES].tolist():
            yield raw, width - len(raw)


def _text_paths(path: Path) -> Iterator[tuple[bytes, float]]:
    try:
        stream = open_regular(path)
    except (OSError, NotRegularFile) as exc:
        raise ProfileError(f"{path}: cannot read it ({exc})") from None
    with stream:
        for line in stream:
            yield line.rstrip(b"\r\n"), float("nan")


def _members(root: Path) -> set[str]:
    index = load_index(root)
    return {f"{key}.{ext}" for key, location in index.samples.items() for ext in location.members}


def _is_present(root: Path | None) -> Any:
    if root is None:
        return lambda path: None
    if (root / INDEX_NAME).is_file():
        members = _members(root)
        return lambda path: path in members
    if not root.is_dir():
        raise ProfileError(f"{root}: the present check's root is not a folder; fix 'root'")
    return lambda path: os.path.lexists(os.path.join(root, path))


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    import pandas as pd

    if not artifact.exists():
        raise ProfileError(f"{artifact}: no such file or folder")
    root_param = (params or {}).get("present", {}).get("root")
    present = _is_present(Path(root_param) if root_param else None)
    memmap = _memmap_of(
        artifact, int((params or {}).get("not_cut", {}).get("width", DEFAULT_WIDTH))
    )
    entries = _memmap_paths(*memmap) if memmap else _text_paths(artifact)
    rows = []
    for index, (raw, room) in enumerate(entries):
        path = raw.decode("utf-8", errors="replace")
        rows.append((path, index, len(raw), room, present(path)))
    frame = pd.DataFrame.from_records(rows, columns=["item", "index", "length", "room", "present"])
    facts = {"paths": len(frame), "width": memmap[1] if memmap else None}
    return Profile(KIND, artifact, {"entries": Table(frame, "item")}, facts)
