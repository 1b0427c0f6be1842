"""The files of a stage's input folders, for a shard that has fetched only some of them.

A ``data: remote`` shard whose stage names the files its block reads (``block_inputs``)
gets only those; the rest of each input folder is absent from its scratch folder. A stage
that walks an input folder to number its items (every image under SOURCES, sorted) must
still see every file, or its blocks would not be the submitter's: it asks
:func:`listed_files`, which answers from the run's listing of every input file there, and
``None`` everywhere else (walk the folder as usual).
"""

from __future__ import annotations

import bisect
import functools
import json
import os
from pathlib import Path

#: Set by the worker of a ``data: remote`` shard: the run's listing in its scratch folder.
LISTING_ENV = "VCAT_INPUT_LISTING"
LISTING_NAME = ".vcat-listing.json"


def listed_files(folder: Path) -> list[Path] | None:
    """In a shard that fetched only its block's inputs: every input file under ``folder``
    (a path the stage was given), present or not, in sorted order of their paths; None in
    any other process."""
    listing = os.environ.get(LISTING_ENV)
    if not listing:
        return None
    base = Path(listing).parent
    names = _names(listing)
    prefix = Path(os.path.relpath(os.path.abspath(folder), base)).as_posix()
    if prefix == ".":
        return [folder / name for name in names]
    start = bisect.bisect_left(names, prefix + "/")
    end = bisect.bisect_left(names, prefix + "0")  # "0" follows "/" in code point order
    return [folder / name[len(prefix) + 1 :] for name in names[start:end]]


@functools.cache
def _names(listing: str) -> list[str]:
    return sorted(json.loads(Path(listing).read_text(encoding="utf-8")))
