"""The listing and CroCo's folder tree of pairs, as CroCo's loader reads them.

CroCo's ``datasets/pairs_dataset.py`` reads ``<folder>/listing.txt``, skips lines starting with
``#`` and takes each other line as a stem whose pair is ``<folder>/<stem>_1.jpg`` and
``<folder>/<stem>_2.jpg``. The listing written here is ``# pair_path`` then one stem per line
in index order (CroCo's script writes them in whatever order its pool finishes).

:func:`write_tree` unpacks a pairs shard folder (samples keyed by stem, members ``1.jpg`` and
``2.jpg``) into that tree. It is built in a hidden folder beside the destination and renamed
onto it when complete; an interrupted build is resumed there (each file is renamed into place
once written, so a file present is complete). A hidden ``.vcat-tree.json`` in the tree names
the shards it came from, so writing the same tree again does nothing.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from vcat.shards import ShardError, ShardReader

LISTING_NAME = "listing.txt"
LISTING_HEADER = "# pair_path"
MARKER_NAME = ".vcat-tree.json"
MEMBERS = {"1.jpg": "_1.jpg", "2.jpg": "_2.jpg"}


def listing_text(stems: Iterable[str]) -> str:
    """The content of ``listing.txt`` for these stems, in the order given."""
    return "".join(f"{line}\n" for line in (LISTING_HEADER, *stems))


def write_atomic(path: Path, data: bytes) -> None:
    """``data`` at ``path``, written under a temporary name and renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # a full disk leaves no half-written file


def _read_marker(folder: Path) -> object:
    try:
        return json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_tree(shards: Path, dest: Path, *, overwrite: bool = False) -> int:
    """The pairs of the shard folder ``shards`` as CroCo's tree at ``dest``; returns the number
    of pairs. A ``dest`` made from other shards is replaced only with ``overwrite``."""
    with ShardReader(shards) as reader:
        marker = {"shards": [shard.md5 for shard in reader.index.shards]}
        stems = list(reader.index.samples)
        if dest.exists():
            if _read_marker(dest) == marker and (dest / LISTING_NAME).is_file():
                return len(stems)
            if not overwrite:
                raise ShardError(
                    f"{dest} exists and was not made from {shards}; remove it or overwrite"
                )
        staging = dest.with_name(f".{dest.name}.building")
        if _read_marker(staging) != marker:
            shutil.rmtree(staging, ignore_errors=True)
            write_atomic(staging / MARKER_NAME, json.dumps(marker).encode() + b"\n")
        for stem, location in reader.index.samples.items():
            if set(location.members) != set(MEMBERS):
                raise ShardError(
                    f"{shards}: sample {stem!r} holds {sorted(location.members)}, not a pair "
                    f"({sorted(MEMBERS)}); is this a croco-crops output?"
                )
            for ext, suffix in MEMBERS.items():
                target = staging / f"{stem}{suffix}"
                if target.is_file() and target.stat().st_size == location.members[ext][1]:
                    continue
                write_atomic(target, reader.read_member(stem, ext))
    write_atomic(staging / LISTING_NAME, listing_text(stems).encode("utf-8"))
    if dest.exists():
        old = dest.with_name(f".{dest.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old)
    else:
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging, dest)
    return len(stems)
