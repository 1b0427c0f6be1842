"""Streaming checksums: one read of a file feeds every digest that is asked for."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

Algorithm = str  # "md5" or "sha256", as in the catalog's checksum text
ALGORITHMS: tuple[Algorithm, ...] = ("md5", "sha256")
BLOCK_SIZE = 1 << 20  # large enough that hashlib releases the GIL and syscalls are few


class MultiHasher:
    """Feeds the same bytes to several hash objects; ``hexdigests()`` reads them all."""

    def __init__(self, algorithms: Iterable[Algorithm]) -> None:
        names = dict.fromkeys(algorithms)  # ordered and unique
        unknown = [name for name in names if name not in ALGORITHMS]
        if unknown:
            raise ValueError(f"unsupported checksum algorithm(s): {', '.join(unknown)}")
        self._hashes = {name: hashlib.new(name) for name in names}

    def update(self, data: bytes | memoryview) -> None:
        for digest in self._hashes.values():
            digest.update(data)

    def hexdigests(self) -> dict[Algorithm, str]:
        return {name: digest.hexdigest() for name, digest in self._hashes.items()}


def hash_file(path: Path, algorithms: Iterable[Algorithm] = ("md5",)) -> dict[Algorithm, str]:
    """Hex digests of ``path``'s content, read once in ``BLOCK_SIZE`` blocks."""
    hasher = MultiHasher(algorithms)
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    with path.open("rb", buffering=0) as stream:
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            hasher.update(view[:count])
    return hasher.hexdigests()
