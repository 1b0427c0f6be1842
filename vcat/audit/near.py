"""Pairs of 64-bit hashes within a Hamming distance, with faiss's binary indexes.

The database side (the held-out images) is indexed and every query (a training image) is
range-searched. The exhaustive ``IndexBinaryFlat`` (popcounts in SIMD, every core) is used
unless the problem is large and the radius small enough that ``max_distance + 1`` disjoint
substrings of at least 16 bits exist (radius <= 3): then ``IndexBinaryMultiHash`` holds them,
and since two hashes at most ``max_distance`` bits apart agree on at least one whole substring
(pigeonhole), the search stays exact while comparing only the entries that share a bucket with
the query. At the default radius of 8 the substrings would be 7 bits, whose buckets hold
1/128 of the database; measured (bench/audit.py), the multi-hash index is then 10-50x slower
than the exhaustive search, and so is 4 x 16 bits with 2 bit flips per probe.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vcat.phash import HASH_BYTES, hamming

HASH_BITS = 8 * HASH_BYTES
FLAT_LIMIT = 1_000_000_000  # database x queries up to which the exhaustive search is used
MIN_PIECE_BITS = 16  # shorter substrings make buckets too full for the multi-hash index to pay
QUERY_BATCH = 65_536
BRUTE_FORCE_PAIRS = 1 << 24  # pairs compared per block of the brute force (memory bound)


def multi_hash_pieces(max_distance: int) -> int | None:
    """The substrings the multi-hash index splits hashes into for ``max_distance``, or None
    when they would be shorter than MIN_PIECE_BITS."""
    pieces = max_distance + 1
    return pieces if HASH_BITS // pieces >= MIN_PIECE_BITS else None


def _index(database: np.ndarray, max_distance: int, queries: int):  # -> faiss.IndexBinary
    import faiss  # a large import, needed only here

    pieces = multi_hash_pieces(max_distance)
    if pieces is None or len(database) * queries <= FLAT_LIMIT:
        index = faiss.IndexBinaryFlat(HASH_BITS)
    else:
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
        rows = np.repeat(np.arange(len(batch)), np.diff(limits.astype(np.int64)))
        order = np.lexsort((labels, rows))
        for row, label, distance in zip(
            rows[order].tolist(), labels[order].tolist(), distances[order].tolist(), strict=True
        ):
            yield start + row, int(label), int(distance)


def within_brute_force(
    database: np.ndarray, queries: np.ndarray, max_distance: int
) -> list[tuple[int, int, int]]:
    """What :func:`within` finds, by comparing every pair (the reference it is checked
    against), in blocks of queries of about BRUTE_FORCE_PAIRS pairs."""
    found: list[tuple[int, int, int]] = []
    block = max(1, BRUTE_FORCE_PAIRS // max(1, len(database)))
    for start in range(0, len(queries), block):
        distances = hamming(queries[start : start + block], database)
        rows, columns = np.nonzero(distances <= max_distance)
        found += [
            (start + int(row), int(column), int(distances[row, column]))
            for row, column in zip(rows, columns, strict=True)
        ]
    return found
