"""``file:`` sources: a local or mounted file read like any remote one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.transport import BLOCK_SIZE, BytesBody, RemoteInfo
from vcat.project import default_catalog_dir


def path_of(url: str, project_root: Path | None = None) -> Path:
    """The local path a ``file:`` URL names.

    ``file:///abs/path`` (or ``file:/abs/path``) is absolute; ``file:rel/path`` is relative
    to the project root (``project_root``, else the project enclosing the catalog in use).
    """
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise FetchFailure(FailureClass.UNREACHABLE, f"file URL names another host: {url}")
    path = Path(url2pathname(parts.path))
    if parts.path.startswith("/"):
        return path
    return (project_root or default_catalog_dir().resolve().parent) / path


def _blocks(stream: BinaryIO) -> Iterator[bytes]:
    while block := stream.read(BLOCK_SIZE):
        yield block


class LocalTransport:
    """Reads ``file://`` URLs; the validator is the file's mtime and size."""

    def open(self, url: str, offset: int, validator: str | None) -> BytesBody:
        path = path_of(url)
        try:
            stat = path.stat()
            stream = path.open("rb")
        except FileNotFoundError:
            raise FetchFailure(FailureClass.NOT_FOUND, f"{path} does not exist") from None
        except PermissionError:
            raise FetchFailure(FailureClass.FORBIDDEN, f"{path} is not readable") from None
        except IsADirectoryError:
            raise FetchFailure(FailureClass.NOT_FOUND, f"{path} is a folder, not a file") from None
        tag = f"{stat.st_mtime_ns:x}-{stat.st_size:x}"
        start = offset if validator == tag and offset <= stat.st_size else 0
        stream.seek(start)
        return BytesBody(RemoteInfo(stat.st_size, tag, tag), start, _blocks(stream), stream)
