"""Pairs of 64-bit hashes within a Hamming distance, with faiss's binary indexes.

The database side (the held-out images) is indexed and every query (a training image) is
range-searched. A small problem is searched exhaustively (``IndexBinaryFlat``, popcounts at
memory speed); past ``FLAT_LIMIT`` distance computations the database goes into an
``IndexBinaryMultiHash`` of ``max_distance + 1`` disjoint substrings: two hashes at most
``max_distance`` bits apart agree on at least one whole substring (pigeonhole), so the
search stays exact while comparing only the entries that share a bucket with the query.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vcat.phash import HASH_BYTES, hamming

HASH_BITS = 8 * HASH_BYTES
FLAT_LIMIT = 2_000_000_000  # database x queries below which the exhaustive search is used
QUERY_BATCH = 65_536


def _index(database: np.ndarray, max_distance: int, queries: int):  # -> faiss.IndexBinary
    import faiss  # a large import, needed only here

    if len(database) * queries <= FLAT_LIMIT or max_distance + 1 > HASH_BITS // 2:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    else:
        pieces = max_distance + 1
        index = faiss.IndexBinaryMultiHash(HASH_BITS, pieces, HASH_BITS // pieces)
    index.add(np.ascontiguousarray(database, dtype=np.uint8))
    return index


def within(
    database: np.ndarray, queries: np.ndarray, max_distance: int
) -> Iterator[tuple[int, int, int]]:
    """``(query, database entry, distance)`` for every pair at most ``max_distance`` bits
    apart, by query then entry."""
    if not 0 <= max_distance < HASH_BITS:
        raise ValueError(f"max_distance must lie in [0, {HASH_BITS - 1}], not {max_distance}")
    if len(database) == 0 or len(queries) == 0:
        return
    index = _index(database, max_distance, len(queries))
    for start in range(0, len(queries), QUERY_BATCH):
        batch = np.ascontiguousarray(queries[start : start + QUERY_BATCH], dtype=np.uint8)
        limits, distances, labels = index.range_search(batch, max_distance + 1)  # radius: <
        for row in range(len(batch)):
            found = slice(int(limits[row]), int(limits[row + 1]))
            for label, distance in sorted(zip(labels[found], distances[found], strict=True)):
                yield start + row, int(label), int(distance)


def within_brute_force(
    database: np.ndarray, queries: np.ndarray, max_distance: int
) -> list[tuple[int, int, int]]:
    """What :func:`within` finds, by comparing every pair (the reference it is checked
    against; memory grows with ``len(queries) x len(database)``)."""
    found: list[tuple[int, int, int]] = []
    for start in range(0, len(queries), 1024):
        distances = hamming(queries[start : start + 1024], database)
        rows, columns = np.nonzero(distances <= max_distance)
        found += [
            (start + int(row), int(column), int(distances[row, column]))
            for row, column in zip(rows, columns, strict=True)
        ]
    return found
