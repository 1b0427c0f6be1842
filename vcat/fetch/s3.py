"""``s3://bucket/key`` sources, read with one streaming GET through botocore.

Credentials come from the environment or the AWS config files (never the catalog);
``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL`` points at a non-AWS server such as SeaweedFS.
A resumed read asks for the object only if its ETag is still the one the partial holds
(``If-Match``); the caller checks the answer's ETag as well. Reads keep ``TransferLimits``:
botocore's socket timeouts are the stall timeout, and our own retries replace botocore's.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from urllib3.exceptions import HTTPError as Urllib3Error

from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.limits import GuardedReader, TransferLimits, broken_transfer, stalled_reason
from vcat.fetch.transport import BytesBody, RemoteInfo, TransientError

ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def _client(limits: TransferLimits) -> Any:
    import botocore.session  # imported late: slow to import
    from botocore.config import Config

    endpoint = next((os.environ[name] for name in ENDPOINT_VARIABLES if name in os.environ), None)
    config = Config(
        connect_timeout=limits.connect_timeout,
        read_timeout=limits.stall_timeout,
        retries={"total_max_attempts": 1},  # download() retries, and says so as it does
    )
    return botocore.session.get_session().create_client("s3", endpoint_url=endpoint, config=config)


def _bucket_key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    if not parts.netloc or not parts.path.strip("/"):
        raise FetchFailure(FailureClass.NOT_FOUND, f"{url} names no object: write s3://bucket/key")
    return parts.netloc, parts.path.lstrip("/")


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _failure(url: str, exc: Exception, limits: TransferLimits) -> FetchFailure:
    """The failure class of an error raised before the body started."""
    if isinstance(exc, ClientError):
        status, code = _status(exc), exc.response.get("Error", {}).get("Code", "")
        what = f"{url} answered HTTP {status} {code}".rstrip()
        if status in (401, 403):
            return FetchFailure(FailureClass.FORBIDDEN, f"{what}: access denied")
        if status == 404:
            return FetchFailure(FailureClass.NOT_FOUND, f"{url} does not exist ({code})")
        if status in _RETRY_STATUSES or code == "SlowDown":
            return TransientError(FailureClass.UNREACHABLE, what)
        return FetchFailure(FailureClass.UNREACHABLE, what)
    if isinstance(exc, NoCredentialsError):
        return FetchFailure(
            FailureClass.FORBIDDEN,
            f"{url}: no S3 credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
        )
    if isinstance(exc, ReadTimeoutError):
        return TransientError(FailureClass.UNREACHABLE, stalled_reason(url, limits), slow=True)
    if isinstance(exc, ConnectTimeoutError):
        return TransientError(
            FailureClass.UNREACHABLE,
            f"{url}: the server did not accept the connection within {limits.connect_timeout:g} s",
        )
    if isinstance(exc, EndpointConnectionError):
        return TransientError(FailureClass.UNREACHABLE, f"{url}: cannot connect to the server")
    return TransientError(FailureClass.UNREACHABLE, f"{url}: {exc}")


def _info(response: dict[str, Any]) -> tuple[int, RemoteInfo]:
    """(offset of the body, whole-object info) of a GET answer."""
    etag = str(response.get("ETag", "")).strip('"') or None
    modified = response.get("LastModified")
    last_modified = modified.astimezone(UTC).isoformat() if modified is not None else None
    match = _CONTENT_RANGE.fullmatch(str(response.get("ContentRange", "")).strip())
    if match:
        total = None if match.group(3) == "*" else int(match.group(3))
        return int(match.group(1)), RemoteInfo(total, etag, etag, last_modified)
    size = response.get("ContentLength")
    return 0, RemoteInfo(int(size) if size is not None else None, etag, etag, last_modified)


class S3Transport:
    """Reads S3 objects; the validator is the object's ETag (without quotes)."""

    def __init__(self, limits: TransferLimits | None = None) -> None:
        self.limits = limits or TransferLimits()
        self._client: Any = None

    def open(self, url: str, offset: int, validator: str | None) -> BytesBody:
        bucket, key = _bucket_key(url)
        try:
            if self._client is None:
                self._client = _client(self.limits)
            response = self._resume(bucket, key, offset, validator) if offset > 0 else None
            if isinstance(response, BytesBody):
                return response
            if response is None:
                response = self._client.get_object(Bucket=bucket, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _failure(url, exc, self.limits) from None
        start, info = _info(response)
        raw = response["Body"]._raw_stream  # urllib3's response: read1 gives bytes as they come

        def read1(amount: int) -> bytes:
            return raw.read1(amount, decode_content=False)

        reader = GuardedReader(read1, url, self.limits)
        return BytesBody(info, start, self._blocks(reader, url), raw)

    def _resume(
        self, bucket: str, key: str, offset: int, validator: str | None
    ) -> dict[str, Any] | BytesBody | None:
        """The rest of the object after ``offset`` if it is still version ``validator``;
        None to read it whole instead."""
        if validator is None:
            extra: dict[str, str] = {}
        else:
            extra = {"IfMatch": f'"{validator}"'}
        try:
            return self._client.get_object(
                Bucket=bucket, Key=key, Range=f"bytes={offset}-", **extra
            )
        except ClientError as exc:
            status = _status(exc)
            if status == 412:  # another version now: read it from the start
                return None
            if status != 416:
                raise
        # nothing after ``offset``: complete if the object is that long and unchanged
        head = self._client.head_object(Bucket=bucket, Key=key)
        _, info = _info(head)
        if info.size == offset and (validator is None or info.etag == validator):
            return BytesBody(info, offset, iter(()))
        return None

    def _blocks(self, reader: GuardedReader, url: str) -> Iterator[bytes]:
        try:
            yield from reader.blocks()
        except (OSError, BotoCoreError, Urllib3Error) as exc:
            raise broken_transfer(url, exc, self.limits) from None
