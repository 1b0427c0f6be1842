"""Stamps: each file's size, times and inode when its digest was last proven, so a later check
can tell an untouched file without reading it.

A stamp is local to one tree on one machine (a copy has other times and inodes), so stamps
are kept in the work area beside a tree, never in a manifest. Format (UTF-8 text, one line
per file, paths escaped as in manifests)::

    # vcat-stamps 1
    <size><TAB><mtime_ns><TAB><ctime_ns><TAB><inode><TAB><path>

The change time is part of the stamp because no program can set it back: a file rewritten
with the same size whose modification time was then restored still shows as changed.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from vcat.regular import open_regular
from vcat.verify.paths import escape_path, unescape_path

MAGIC = "# vcat-stamps 1"


class Stamp(NamedTuple):
    size: int
    mtime_ns: int
    ctime_ns: int
    inode: int

    @classmethod
    def of(cls, result: os.stat_result) -> Stamp:
        return cls(result.st_size, result.st_mtime_ns, result.st_ctime_ns, result.st_ino)


def stamp_of(path: Path) -> Stamp:
    """The stamp of ``path`` itself (a link is not followed)."""
    return Stamp.of(os.lstat(path))


def write_stamps(stamps: Mapping[str, Stamp], out: Path) -> None:
    """Write ``stamps`` (relative path -> stamp) to ``out`` atomically, sorted by path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(MAGIC + "\n")
            stream.writelines(
                f"{s.size}\t{s.mtime_ns}\t{s.ctime_ns}\t{s.inode}\t{escape_path(path)}\n"
                for path, s in sorted(stamps.items())
            )
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def read_stamps(path: Path) -> dict[str, Stamp]:
    """The stamps in ``path``; empty when it is absent or unreadable in any way, since a
    missing stamp only means the file is hashed again."""
    stamps: dict[str, Stamp] = {}
    try:
        with io.TextIOWrapper(open_regular(path), encoding="utf-8", newline="\n") as stream:
            if stream.readline().rstrip("\n") != MAGIC:
                return {}
            for line in stream:
                size, mtime, ctime, inode, escaped = line.rstrip("\n").split("\t")
                stamps[unescape_path(escaped)] = Stamp(
                    int(size), int(mtime), int(ctime), int(inode)
                )
    except (OSError, UnicodeDecodeError, ValueError):
        return {}
    return stamps
