"""``http(s)://`` sources: ranged, validated requests that see through Drive's pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import HTTPError as Urllib3Error

from vcat.failures import FailureClass, FetchFailure, looks_like_html
from vcat.fetch.limits import GuardedReader, TransferLimits, broken_transfer, stalled_reason
from vcat.fetch.pages import MAX_PAGE_BYTES, drive_download_url, read_page
from vcat.fetch.transport import BytesBody, RemoteInfo, TransientError

MAX_PAGE_HOPS = 3  # confirmation pages followed before giving up
SNIFF_BYTES = 1024  # read before deciding whether the body is a web page
USER_AGENT = "vcat (dataset fetcher; +https://dvc.org)"
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def _connection_failure(url: str, exc: Exception, limits: TransferLimits) -> str:
    """One line for a failed connection, naming the cause rather than urllib3's repr."""
    host = urlsplit(url).netloc
    text = repr(exc)
    if isinstance(exc, requests.ReadTimeout):  # connected, but no answer came
        return stalled_reason(url, limits)
    if isinstance(exc, requests.ConnectTimeout):
        return f"{host} did not accept the connection within {limits.connect_timeout:g} s"
    if "NameResolutionError" in text or "Name or service not known" in text:
        return f"cannot resolve {urlsplit(url).hostname}: no network, or a wrong host name"
    if "Connection refused" in text:
        return f"{host} refused the connection"
    if isinstance(exc, requests.Timeout) or "timed out" in text:
        return f"{host} did not answer in time"
    if "CERTIFICATE_VERIFY_FAILED" in text or isinstance(exc, requests.exceptions.SSLError):
        return f"{host}: TLS certificate not trusted"
    return f"{host}: connection failed ({type(exc).__name__})"


def _check_status(response: requests.Response, url: str) -> None:
    status = response.status_code
    if status < 400:
        return
    what = f"{url} answered HTTP {status} {response.reason or ''}".rstrip()
    response.close()
    if status in (401, 403, 407):
        raise FetchFailure(FailureClass.FORBIDDEN, what)
    if status in (404, 410):
        raise FetchFailure(FailureClass.NOT_FOUND, what)
    if status in _RETRY_STATUSES:
        raise TransientError(FailureClass.UNREACHABLE, what, _retry_after(response))
    raise FetchFailure(FailureClass.UNREACHABLE, what)


class _Reader:
    """The raw body as served (no decoding), read as bytes arrive, within ``limits``."""

    def __init__(self, response: requests.Response, url: str, limits: TransferLimits) -> None:
        self.url, self.limits = url, limits
        # decode_content=False: a .tar.gz served with Content-Encoding: gzip stays as served
        read1 = lambda amount: response.raw.read1(amount, decode_content=False)  # noqa: E731
        self.guarded = GuardedReader(read1, url, limits)

    def first(self, count: int) -> bytes:
        try:
            return self.guarded.read_at_least(count)
        except (Urllib3Error, requests.RequestException, OSError) as exc:
            raise broken_transfer(self.url, exc, self.limits) from None

    def blocks(self, first: bytes) -> Iterator[bytes]:
        if first:
            yield first
        try:
            yield from self.guarded.blocks()
        except (Urllib3Error, requests.RequestException, OSError) as exc:
            raise broken_transfer(self.url, exc, self.limits) from None


def _version(response: requests.Response, size: int | None) -> RemoteInfo:
    """The file's size and the headers that name its version; If-Range needs a strong
    validator, so a weak ETag gives way to Last-Modified."""
    etag = response.headers.get("ETag")
    modified = response.headers.get("Last-Modified")
    validator = etag if etag and not etag.startswith("W/") else modified
    return RemoteInfo(size, etag, validator, modified)


def _remote_info(response: requests.Response) -> tuple[int, RemoteInfo]:
    """(offset of the body, whole-file info) from a 200 or 206 response."""
    if response.status_code == 206:
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match:
            raise TransientError(FailureClass.UNREACHABLE, "206 answer without a Content-Range")
        total = None if match.group(3) == "*" else int(match.group(3))
        return int(match.group(1)), _version(response, total)
    # the body is kept as sent (no decoding), so Content-Length is its size in any encoding
    length = response.headers.get("Content-Length")
    size = int(length) if length and length.isdigit() else None
    return 0, _version(response, size)


class HttpTransport:
    """Reads http(s) URLs with one session (cookies carry Drive's confirmation)."""

    def __init__(
        self, session: requests.Session | None = None, limits: TransferLimits | None = None
    ) -> None:
        self.session = session or requests.Session()
        self.session.headers.setdefault("User-Agent", USER_AGENT)
        self.limits = limits or TransferLimits()

    def open(self, url: str, offset: int, validator: str | None) -> BytesBody:
        target, params = drive_download_url(url), {}
        for _ in range(MAX_PAGE_HOPS + 1):
            response = self._get(target, params, offset, validator)
            if response.status_code == 416:
                if not self._complete_after_416(response, offset):
                    offset = 0  # the partial bytes are useless: restart cleanly
                    continue
                info = _version(response, offset)
                response.close()
                return BytesBody(info, offset, iter(()))
            start, info = _remote_info(response)
            reader = _Reader(response, url, self.limits)
            first = reader.first(SNIFF_BYTES) if start == 0 else b""
            if start == 0 and self._is_page(response, first):
                page = (first + reader.first(MAX_PAGE_BYTES))[:MAX_PAGE_BYTES]
                page_url = response.url
                response.close()
                follow = read_page(page, page_url)  # raises unless it is a confirmation step
                target, params, offset = follow.url, follow.params, 0
                continue
            return BytesBody(info, start, reader.blocks(first), response)
        raise FetchFailure(
            FailureClass.HTML_INSTEAD_OF_FILE,
            f"{url} kept answering with confirmation pages after {MAX_PAGE_HOPS} steps",
        )

    def _get(
        self, url: str, params: dict[str, str], offset: int, validator: str | None
    ) -> requests.Response:
        headers = {"Accept-Encoding": "identity"}
        if offset > 0:
            headers["Range"] = f"bytes={offset}-"
            if validator:
                headers["If-Range"] = validator
        try:
            timeout = (self.limits.connect_timeout, self.limits.stall_timeout)
            response = self.session.get(
                url, params=params, headers=headers, stream=True, timeout=timeout
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = _connection_failure(url, exc, self.limits)
            slow = isinstance(exc, requests.ReadTimeout)
            raise TransientError(FailureClass.UNREACHABLE, failure, slow=slow) from None
        except requests.RequestException as exc:
            raise FetchFailure(FailureClass.UNREACHABLE, f"{url}: {exc}") from None
        if response.status_code != 416:
            _check_status(response, url)
        return response

    @staticmethod
    def _complete_after_416(response: requests.Response, offset: int) -> bool:
        """Whether a 416 answer says the partial file already holds every byte."""
        match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", "").strip())
        response.close()
        return bool(match) and int(match.group(1)) == offset

    @staticmethod
    def _is_page(response: requests.Response, first: bytes) -> bool:
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        return content_type in ("text/html", "application/xhtml+xml") or looks_like_html(first)
