"""How bytes are read from a URL, whatever the scheme: the contract every transport keeps.

A transport opens a URL at a byte offset and returns a ``Body``. It may start the body
earlier than asked (at 0) when the server cannot resume or the file changed; the caller
then restarts cleanly. Permanent failures raise ``FetchFailure``; failures worth retrying
raise ``TransientError``.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlsplit

from vcat.failures import FailureClass, FetchFailure

if TYPE_CHECKING:
    from vcat.fetch.limits import TransferLimits

BLOCK_SIZE = 1 << 20


@dataclass(frozen=True)
class RemoteInfo:
    """What the server says about the whole file."""

    size: int | None
    etag: str | None
    validator: str | None  # sent back to resume only if the file is unchanged
    last_modified: str | None = None


class TransientError(FetchFailure):
    """A failure that may go away on retry (connection reset, 5xx, 429, short body).

    ``slow``: the transfer stalled or crawled, so the few bytes it brought do not make the
    attempt count as progress (a server that trickles would otherwise be retried forever).
    """

    def __init__(
        self,
        failure: FailureClass,
        reason: str,
        retry_after: float | None = None,
        *,
        slow: bool = False,
    ) -> None:
        super().__init__(failure, reason)
        self.retry_after = retry_after
        self.slow = slow


class Body(Protocol):
    info: RemoteInfo
    start: int  # offset in the file of the first byte ``chunks`` yields

    def chunks(self) -> Iterator[bytes]: ...

    def close(self) -> None: ...

    def abort(self) -> None:
        """Make a read of ``chunks`` blocked in another thread return soon (with an error)."""
        ...


class Transport(Protocol):
    def open(self, url: str, offset: int, validator: str | None) -> Body:
        """The file's bytes from ``offset`` on (or from 0 when it cannot resume).

        ``validator`` is the version the bytes before ``offset`` came from; a transport
        sends it so the server restarts at 0 when the file changed since (``If-Range``,
        ``If-Match``). The caller still checks ``Body.info`` against what it recorded.
        """
        ...


@dataclass
class BytesBody:
    """A body that yields blocks from an iterator and closes a resource when done."""

    info: RemoteInfo
    start: int
    blocks: Iterator[bytes]
    closer: object | None = None

    def chunks(self) -> Iterator[bytes]:
        return self.blocks

    def close(self) -> None:
        close = getattr(self.closer, "close", None)
        if close is not None:
            close()

    def abort(self) -> None:
        """Wake a read of ``chunks`` blocked in another thread (Ctrl-C while the server is
        silent) by shutting the connection's socket down, which closing it does not do."""
        sock = _socket_of(getattr(self.closer, "raw", self.closer))
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _socket_of(raw: object) -> socket.socket | None:
    """The socket under a urllib3 response: its connection's, or, when the server closes
    after the answer (HTTP/1.0), the one http.client's response reads from."""
    candidates = (
        getattr(getattr(raw, "connection", None), "sock", None),
        getattr(
            getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None), "_sock", None
        ),
    )
    return next((sock for sock in candidates if isinstance(sock, socket.socket)), None)


def transport_for(url: str, limits: TransferLimits | None = None) -> Transport:
    """A new transport for ``url``'s scheme (http, https, s3 or file) that keeps ``limits``
    (default ``TransferLimits()``) on every read."""
    scheme = urlsplit(url).scheme.lower()
    if scheme in ("http", "https"):
        from vcat.fetch.http import HttpTransport

        return HttpTransport(limits=limits)
    if scheme == "s3":
        from vcat.fetch.s3 import S3Transport

        return S3Transport(limits)
    if scheme == "file":
        from vcat.fetch.local import LocalTransport

        return LocalTransport()
    raise FetchFailure(FailureClass.UNREACHABLE, f"no transport for {scheme!r} URLs: {url}")
