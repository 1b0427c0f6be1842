"""Streaming checksums: one read of a file feeds every digest that is asked for.

Files are opened with ``open_regular``: a symbolic link, FIFO, socket or device at the path
is refused before a byte is read (a FIFO would block the reader, a link could lead anywhere).
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

Algorithm = str  # "md5" or "sha256", as in the catalog's checksum text
ALGORITHMS: tuple[Algorithm, ...] = ("md5", "sha256")
BLOCK_SIZE = 1 << 20  # large enough that hashlib releases the GIL and syscalls are few
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class NotARegularFile(OSError):
    """The path is a symbolic link, FIFO, socket or device, not a file; it was not read."""

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"a {kind}, not a regular file", str(path))
        self.kind = kind


def kind_of(mode: int) -> str:
    """What a ``st_mode`` describes, in words: ``file``, ``folder``, ``symbolic link``,
    ``FIFO``, ``socket``, ``character device``, ``block device``."""
    for test, name in (
        (stat.S_ISREG, "file"),
        (stat.S_ISDIR, "folder"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
    ):
        if test(mode):
            return name
    return "special file"


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of the regular file at ``path``.

    Raises ``NotARegularFile`` for a symbolic link (never followed), FIFO, socket or device
    (never opened: a FIFO would block, a device may act on being opened), else ``OSError``.
    The checks are repeated on the open descriptor, so a path swapped meanwhile is refused.
    """
    mode = os.lstat(path).st_mode  # a device is never opened: opening some has effects
    if not stat.S_ISREG(mode):
        raise NotARegularFile(path, kind_of(mode))
    return _open_listed(path)


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
    """Hex digests of ``path``'s content, read once in ``BLOCK_SIZE`` blocks.

    Raises ``NotARegularFile`` when ``path`` is not a regular file (see ``open_regular``).
    """
    hasher = MultiHasher(algorithms)
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    with open(open_regular(path), "rb", buffering=0) as stream:
        while True:
            count = stream.readinto(buffer)
            if not count:
                break
            hasher.update(view[:count])
    return hasher.hexdigests()


#: ``hash_paths`` gives this size for a path that is no longer a regular file, or is gone.
NOT_READ = -1


def _open_listed(path: str | Path) -> int:
    """A read-only descriptor of ``path``, which the caller has just found a regular file.

    ``hash_paths`` calls it without ``open_regular``'s ``lstat``: per file on trees of small
    photos, every system call and object counts, as each holds the GIL that the other hashing
    threads wait for. A path replaced since is still refused: a link fails to open
    (``O_NOFOLLOW``), a FIFO opens without blocking (``O_NONBLOCK``), and the descriptor must
    be a regular file.
    """
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # replaced since by a link or a socket
            raise NotARegularFile(path, kind_of(os.lstat(path).st_mode)) from None
        raise
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        raise NotARegularFile(path, kind_of(mode))
    return descriptor


def hash_paths(
    root: str,
    paths: Sequence[str],
    algorithm: str,
    report: Callable[[int], None],
    report_every: int = 16 << 20,
) -> tuple[list[bytes], list[int]]:
    """The binary digest and the bytes read of each of ``paths`` under ``root``, in order.

    ``paths`` come from a listing of ``root`` that found them regular files. A path that is
    gone or is not a regular file when it is opened gets ``NOT_READ`` as its size and an
    empty digest, without being read. ``report(n)`` is called with the bytes read since the
    last call, about every ``report_every`` bytes and once at the end. Runs in any thread:
    hashlib and file reads release the GIL on 1 MiB blocks.
    """
    buffer = bytearray(BLOCK_SIZE)
    buffers = [buffer]
    view = memoryview(buffer)
    digests: list[bytes] = []
    sizes: list[int] = []
    unreported = 0
    new = getattr(hashlib, algorithm)
    readv = os.readv
    prefix = os.path.join(root, "")
    for relative in paths:
        try:
            descriptor = _open_listed(prefix + relative)
        except (NotARegularFile, FileNotFoundError, NotADirectoryError):
            digests.append(b"")
            sizes.append(NOT_READ)
            continue
        hasher = new()
        size = 0
        try:
            while count := readv(descriptor, buffers):
                hasher.update(view[:count])
                size += count
                unreported += count
                if unreported >= report_every:
                    report(unreported)
                    unreported = 0
        finally:
            os.close(descriptor)
        digests.append(hasher.digest())
        sizes.append(size)
    report(unreported)
    return digests, sizes
