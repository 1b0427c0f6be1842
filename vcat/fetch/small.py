"""Small files (an image of a list) fetched whole into memory, with retries.

For the millions of small downloads of an image list, where a partial file per image would
cost more than it saves: a broken transfer is simply asked for again from the start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from urllib.parse import urlsplit

from vcat.failures import FailureClass, FetchFailure, looks_like_html
from vcat.fetch.download import RetryPolicy
from vcat.fetch.hosts import HostPolicy, checked_session
from vcat.fetch.limits import DEFAULT_LIMITS, TransferLimits
from vcat.fetch.transport import Body, TransientError, Transport, transport_for

DEFAULT_MAX_BYTES = 64 << 20
DEFAULT_POLICY = RetryPolicy(attempts=3)


def fetch_bytes(
    url: str,
    *,
    policy: RetryPolicy = DEFAULT_POLICY,
    max_bytes: int = DEFAULT_MAX_BYTES,
    limits: TransferLimits = DEFAULT_LIMITS,
    hosts: HostPolicy | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> bytes:
    """The whole content of ``url``; raises ``FetchFailure`` (with its class) when it fails.

    Transient failures, and transfers that stall or crawl beyond ``limits``, are retried
    with the backoff of ``policy``; a body larger than ``max_bytes`` is ``oversized`` (refused
    before reading when the server announces it), a short one ``truncated``, a web page
    where a file was expected ``html_instead_of_file``. With ``hosts``, a URL that came from
    somebody else's data reaches only what that policy allows, redirects included
    (``forbidden`` otherwise; see ``vcat.fetch.hosts``).
    """
    transport = _transport(url, limits, hosts)
    failures = 0
    while True:
        try:
            return _read(url, transport.open(url, 0, None), max_bytes)
        except TransientError as exc:
            failures += 1
            if failures >= policy.attempts:
                raise FetchFailure(
                    exc.failure, f"{exc.reason} (gave up after {policy.attempts} attempts)"
                ) from None
            sleep(policy.delay(failures, exc.retry_after))


def _transport(url: str, limits: TransferLimits, hosts: HostPolicy | None) -> Transport:
    if hosts is None:
        return transport_for(url, limits)
    hosts.check(url)
    if urlsplit(url).scheme.lower() in ("http", "https"):
        from vcat.fetch.http import HttpTransport

        return HttpTransport(session=checked_session(hosts), limits=limits)
    return transport_for(url, limits)


def _read(url: str, body: Body, max_bytes: int) -> bytes:
    try:
        if body.info.size is not None and body.info.size > max_bytes:
            raise FetchFailure(
                FailureClass.OVERSIZED,
                f"{url} announces {body.info.size:,} bytes, more than {max_bytes:,}",
            )
        chunks: list[bytes] = []
        received = 0
        for chunk in body.chunks():
            received += len(chunk)
            if received > max_bytes:
                raise FetchFailure(
                    FailureClass.OVERSIZED, f"{url} is larger than {max_bytes:,} bytes"
                )
            chunks.append(chunk)
    finally:
        body.close()
    data = b"".join(chunks)
    expected = body.info.size
    if expected is not None and len(data) < expected:
        raise TransientError(
            FailureClass.TRUNCATED, f"{url} closed the connection at {len(data):,} of {expected:,}"
        )
    if looks_like_html(data[:1024]):
        raise FetchFailure(FailureClass.HTML_INSTEAD_OF_FILE, f"{url} answered with a web page")
    return data
