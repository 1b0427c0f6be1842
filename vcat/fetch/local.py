"""``file:`` sources: a local or mounted file read like any remote one."""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.transport import BLOCK_SIZE, BytesBody, RemoteInfo
from vcat.localfiles import policy_for
from vcat.project import CATALOG_ENV, ProjectNotFound, default_catalog_dir


def path_of(url: str, project_root: Path | None = None) -> Path:
    """The real local path a ``file:`` URL names, once ``vcat.localfiles`` allows it.

    ``file:///abs/path`` (or ``file:/abs/path``) is absolute; ``file:rel/path`` is relative
    to the project root (``project_root``, else the project enclosing the catalog in use).
    The path is percent-decoded once and resolved (``..`` and symlinks); one outside the
    allowed local roots, or inside ``.dvc``, ``.git`` or ``.vcat``, raises ``FetchFailure``
    of class ``forbidden``.
    """
    if project_root is None:
        project_root = _project_of(os.getcwd(), os.environ.get(CATALOG_ENV))
    return policy_for(project_root).resolve(url)


@lru_cache(maxsize=8)
def _project_of(cwd: str, catalog_env: str | None) -> Path | None:
    """The project of the catalog in use, looked up once per working directory and
    ``$VCAT_CATALOG`` (a list of a million images asks a million times)."""
    try:
        return default_catalog_dir().resolve().parent
    except ProjectNotFound:
        return None


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    while block := stream.read(BLOCK_SIZE):
        yield block


class LocalTransport:
    """Reads ``file://`` URLs that ``vcat.localfiles`` allows; the validator is the file's
    mtime and size."""

    def open(self, url: str, offset: int, validator: str | None) -> BytesBody:
        path = path_of(url)
        handle = _open_regular(url, path)
        stat = os.fstat(handle)
        stream = os.fdopen(handle, "rb")
        tag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
        start = offset if validator == tag and offset <= stat.st_size else 0
        stream.seek(start)
        return BytesBody(RemoteInfo(stat.st_size, tag, tag), start, _blocks(stream), stream)


def _open_regular(url: str, path: Path) -> int:
    """A descriptor of the regular file at ``path``, the very file the policy allowed.

    The last component is not followed if it became a symlink since, a FIFO or device is
    refused without blocking on it, and where ``/proc`` tells, a folder on the way that was
    swapped for a symlink after the check is noticed.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        handle = os.open(path, flags)
    except FileNotFoundError:
        raise FetchFailure(FailureClass.NOT_FOUND, f"{path} does not exist") from None
    except PermissionError:
        raise FetchFailure(FailureClass.FORBIDDEN, f"{path} is not readable") from None
    except IsADirectoryError:
        raise FetchFailure(FailureClass.NOT_FOUND, f"{path} is a folder, not a file") from None
    except OSError as exc:  # ELOOP: the file became a symlink after the check
        raise FetchFailure(
            FailureClass.FORBIDDEN, f"{url}: {path} cannot be opened safely ({exc.strerror})"
        ) from None
    try:
        mode = os.fstat(handle).st_mode
        if stat_module.S_ISDIR(mode):
            raise FetchFailure(FailureClass.NOT_FOUND, f"{path} is a folder, not a file")
        if not stat_module.S_ISREG(mode):
            raise FetchFailure(
                FailureClass.FORBIDDEN, f"{path} is not a regular file (a FIFO, socket or device)"
            )
        opened = _opened_path(handle)
        if opened is not None and opened != path:
            raise FetchFailure(
                FailureClass.FORBIDDEN,
                f"{url}: {path} changed into a link to {opened} while it was being opened",
            )
        os.set_blocking(handle, True)
    except BaseException:
        os.close(handle)
        raise
    return handle


def _opened_path(handle: int) -> Path | None:
    """The path the kernel says ``handle`` is open at (Linux), else None."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{handle}"))
    except OSError:
        return None
