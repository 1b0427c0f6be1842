"""Class labels taken from each path's parent folder, as Full ImageNet's are.

The label of ``n01440764/n01440764_10026.JPEG`` is the index of ``n01440764`` in the sorted set
of the parent-folder names of the whole list: the source project's rule (``sorted(set(...))``
of ``path.split('/')[-2]``). Names sort by code point, which for UTF-8 bytes is byte order, so
numpy's sort of the raw bytes and Python's sort of the names agree.

Labels are gathered per block (or per part of a sharded run) against the block's own sorted
names, and :func:`combine` maps them onto the names of the whole list; how the list was cut
never changes the result.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import NDArray

from vcat.lists.reading import ListFormatError

_SLASH = ord("/")
Labelled = tuple[list[str], NDArray[np.int64]]  # sorted class names, labels into them


def parent_folders(
    rows: NDArray[np.uint8], lengths: NDArray[np.intp]
) -> tuple[NDArray[np.bytes_], NDArray[np.bool_]]:
    """The parent-folder name of each path (bytes), and whether it has a non-empty one.

    ``rows`` are NUL-padded paths of ``lengths`` bytes (NUL bytes are not part of any path).
    """
    count, width = rows.shape
    found = np.flatnonzero(rows == _SLASH)  # row-major: each row's slashes in order
    row, column = np.divmod(found, width)
    is_last = np.ones(found.size, dtype=bool)
    is_last[:-1] = row[1:] != row[:-1]
    lasts = np.flatnonzero(is_last)
    last = np.full(count, -1)
    last[row[lasts]] = column[lasts]
    previous = np.full(count, -1)
    before = lasts - 1
    paired = (before >= 0) & (row[np.maximum(before, 0)] == row[lasts])
    previous[row[lasts[paired]]] = column[before[paired]]
    start = previous + 1
    size = np.where(last >= 0, last - start, 0)
    named = size > 0
    longest = max(1, int(size.max(initial=0)))
    flat = np.concatenate([rows.ravel(), np.zeros(longest, dtype=np.uint8)])
    names = sliding_window_view(flat, longest)[np.arange(count) * width + start]
    names = names * (np.arange(longest) < size[:, None])
    return np.ascontiguousarray(names, dtype=np.uint8).view(f"S{longest}").ravel(), named


def block_labels(
    rows: NDArray[np.uint8], lengths: NDArray[np.intp], where: Callable[[int], str]
) -> Labelled:
    """The sorted parent-folder names of a block and each path's index into them; a path
    without a parent folder is a ListFormatError at ``where(i)``."""
    names, named = parent_folders(rows[:, : max(1, int(lengths.max(initial=0)))], lengths)
    if not named.all():
        index = int(np.flatnonzero(~named)[0])
        raise ListFormatError(
            f"{where(index)}: the path has no parent folder to take its label from"
        )
    # lists often hold a folder's files together: sort one name per run, not every name
    run_starts = np.flatnonzero(np.concatenate([[True], names[1:] != names[:-1]]))
    classes, inverse = np.unique(names[run_starts], return_inverse=True)
    runs = np.diff(np.append(run_starts, names.size))
    labels = np.repeat(inverse.astype(np.int64).ravel(), runs)
    return [bytes(name).decode("utf-8") for name in classes], labels


def combine(pieces: Sequence[Labelled]) -> Labelled:
    """The labels of consecutive pieces mapped onto the sorted union of their class names."""
    classes = sorted(set().union(*(names for names, _ in pieces)))
    index = {name: position for position, name in enumerate(classes)}
    mapped = [
        np.array([index[name] for name in names], dtype=np.int64)[labels]
        for names, labels in pieces
        if labels.size
    ]
    return classes, np.concatenate(mapped) if mapped else np.zeros(0, dtype=np.int64)
