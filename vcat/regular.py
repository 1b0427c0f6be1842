"""Opening a file found in a tree only when it is a regular file.

A tree that vcat walks may hold a FIFO, a socket, a device or a symlink to one (``/dev/zero``,
a named pipe left by a tool). Opening a FIFO for reading blocks until a writer appears, which
is never; reading ``/dev/zero`` never ends. So readers of trees ask here first: the file is
checked with ``stat`` before it is opened, opened non-blocking, and checked again on the open
descriptor, so a file swapped for a FIFO in between is still refused rather than waited on.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


#: Errors that say the process or system ran out of something, not that a file is bad: a walk
#: that meets one stops (and says so) rather than recording file after file as unreadable.
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM})


def out_of_resources(error: OSError) -> bool:
    """Whether ``error`` is about the process's limits rather than about the file."""
    return error.errno in RESOURCE_ERRNOS


class NotRegularFile(OSError):
    """A path that is not a regular file (after following symlinks); ``str()`` names it."""

    def __init__(self, path: Path, kind: str) -> None:
        super().__init__(errno.EINVAL, f"{kind}, not a regular file", str(path))
        self.path = path
        self.kind = kind

    def __str__(self) -> str:
        return (
            f"{self.path}: {self.kind}, not a regular file; put a regular file there or remove it"
        )


def kind_of(mode: int) -> str | None:
    """What a ``st_mode`` is, in words, when it is not a regular file; None for one."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a regular file"


def require_regular(path: Path) -> os.stat_result:
    """``path``'s stat (symlinks followed); NotRegularFile unless it is a regular file."""
    info = os.stat(path)
    kind = kind_of(info.st_mode)
    if kind is not None:
        raise NotRegularFile(path, kind)
    return info


def open_regular(path: Path) -> BinaryIO:
    """``path`` opened for binary reading, refused (never waited on) unless regular."""
    require_regular(path)
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        kind = kind_of(os.fstat(descriptor).st_mode)
        if kind is not None:
            raise NotRegularFile(path, kind)
        os.set_blocking(descriptor, True)
        return os.fdopen(descriptor, "rb")
    except BaseException:
        os.close(descriptor)
        raise


def read_regular_text(path: Path, encoding: str = "utf-8") -> str:
    """The text of the regular file ``path``; NotRegularFile (never a wait) for a FIFO or
    device, UnicodeDecodeError for bytes that are not ``encoding``."""
    with open_regular(path) as stream:
        return stream.read().decode(encoding)


def read_regular(path: Path, max_bytes: int) -> bytes:
    """The content of the regular file ``path``, reading at most ``max_bytes + 1`` bytes (so a
    caller sees that a file is larger than ``max_bytes`` without reading all of it)."""
    with open_regular(path) as stream:
        return stream.read(max_bytes + 1)
