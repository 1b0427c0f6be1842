"""What the leakage audit costs: hashing images, and searching hashes, measured in one run.

    python bench/audit.py [--quick] [--repeat N] [--sizes 10000,100000,1000000]

Hashing: real photos (scikit-image's, resized to 1600 x 1200 and 320 x 240, the demo's
MegaDepth size, with seeded noise) as JPEG quality 90 files; hashes/s of
:func:`vcat.phash.hash_bytes` (greyscale drafted decode, matrix DCT) against
``imagehash.phash`` on the fully decoded image (the reference), on one core, then
:func:`vcat.audit.hashing.hash_files` on one process per core.

Search: N random training hashes (the queries) against 10,000 random held-out hashes with 100
planted near-duplicates at 0-12 bits, for each N in --sizes: at radius 8 (the default),
:func:`vcat.audit.near.within` (faiss's exhaustive IndexBinaryFlat) against the numpy brute
force (XOR and popcount of every pair, in blocks); at radius 3, IndexBinaryFlat against
IndexBinaryMultiHash (4 substrings of 16 bits), which the audit uses for large problems at
radii up to 3. The pairs found must be identical. Each timing is the best of --repeat runs
(the brute force runs once).
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from vcat.audit import near
from vcat.audit.hashing import hash_files
from vcat.phash import hash_bytes

HELD_OUT = 10_000
RADIUS = 8


def best(function: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def photos(count: int, size: tuple[int, int]) -> list[bytes]:
    from skimage import data

    rng = np.random.default_rng(3)
    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"]
    sources = [Image.fromarray(np.asarray(getattr(data, name)())[..., :3]) for name in names]
    encoded = []
    for index in range(count):
        base = np.asarray(sources[index % len(sources)].resize(size), dtype=np.int16)
        pixels = np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
        encoded.append(buffer.getvalue())
    return encoded


def bench_hashing(count: int, repeat: int) -> None:
    import imagehash

    print(f"hashing {count} JPEGs per size, one core unless said (hashes/s)")
    print(f"{'size':>10} {'imagehash':>10} {'vcat':>10} {'ratio':>7} {'vcat, all cores':>16}")
    for size in ((1600, 1200), (320, 240)):
        images = photos(count, size)

        def reference(images: list[bytes] = images) -> None:
            for data in images:
                imagehash.phash(Image.open(io.BytesIO(data)))

        def ours(images: list[bytes] = images) -> None:
            for data in images:
                hash_bytes(data, "jpg")

        slow, fast = best(reference, repeat), best(ours, repeat)
        with tempfile.TemporaryDirectory() as folder:
            names = []
            for index, data in enumerate(images):
                (Path(folder) / f"{index}.jpg").write_bytes(data)
                names.append(f"{index}.jpg")
            jobs = len(os.sched_getaffinity(0))
            pooled = best(partial(hash_files, Path(folder), names, jobs=jobs), repeat)
        print(
            f"{size[0]}x{size[1]:<5} {count / slow:10.0f} {count / fast:10.0f} "
            f"{slow / fast:6.1f}x {count / pooled:10.0f} ({jobs} processes)"
        )


def planted(queries: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    database = rng.integers(0, 256, (HELD_OUT, 8), dtype=np.uint8)
    training = rng.integers(0, 256, (queries, 8), dtype=np.uint8)
    for row in range(min(100, queries)):
        training[row * (queries // 100 or 1)] = database[row * 97]
        for bit in rng.choice(64, size=row % 13, replace=False):
            training[row * (queries // 100 or 1), bit // 8] ^= 1 << (7 - bit % 8)
    return database, training


def _search(
    database: np.ndarray,
    training: np.ndarray,
    radius: int,
    found: list[list[tuple[int, int, int]]],
) -> None:
    found.append(list(near.within(database, training, radius)))


def _timed(database: np.ndarray, training: np.ndarray, radius: int, flat: bool, repeat: int):
    near.FLAT_LIMIT = 1 << 62 if flat else 0
    found: list[list[tuple[int, int, int]]] = []
    seconds = best(partial(_search, database, training, radius, found), repeat)
    return seconds, found[-1]


def bench_search(sizes: list[int], repeat: int) -> None:
    print(f"\nsearch: N training hashes against {HELD_OUT:,} held-out hashes (seconds)")
    print(
        f"{'N':>10} {'numpy r8':>9} {'flat r8':>8} {'ratio':>6} {'pairs':>6} | "
        f"{'flat r3':>8} {'multihash r3':>13} {'ratio':>6} {'pairs':>6}"
    )
    rng = np.random.default_rng(5)
    for size in sizes:
        database, training = planted(size, rng)
        start = time.perf_counter()
        reference = near.within_brute_force(database, training, RADIUS)
        brute = time.perf_counter() - start
        flat, found = _timed(database, training, RADIUS, True, repeat)
        assert found == reference, f"faiss differs from the brute force at {size}"
        close = [pair for pair in reference if pair[2] <= 3]
        flat3, found3 = _timed(database, training, 3, True, repeat)
        multi3, multi_found3 = _timed(database, training, 3, False, repeat)
        assert found3 == close == multi_found3, f"radius 3 differs at {size}"
        print(
            f"{size:>10,} {brute:9.2f} {flat:8.3f} {brute / flat:5.0f}x {len(reference):>6} | "
            f"{flat3:8.3f} {multi3:13.3f} {flat3 / multi3:5.1f}x {len(close):>6}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images, sizes up to 100k")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="")
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",") if size] or (
        [10_000, 100_000] if arguments.quick else [10_000, 100_000, 1_000_000]
    )
    bench_hashing(40 if arguments.quick else 200, arguments.repeat)
    bench_search(sizes, arguments.repeat)


if __name__ == "__main__":
    main()
