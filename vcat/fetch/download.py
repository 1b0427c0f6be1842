"""One URL to one local file: resumable, retried, checked against what the catalog expects.

The bytes go to a ``PartialFile`` outside the dataset root; only a caller that has verified
them moves them to their final path.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from vcat.catalog.fields import Checksum
from vcat.failures import FailureClass, FetchFailure, file_is_html
from vcat.fetch.transport import Body, RemoteInfo, TransientError, Transport
from vcat.hashing import hash_file

DVC_ALGORITHM = "md5"  # what DVC hashes with; computed alongside so DVC need not re-read


class Cancelled(Exception):
    """The user interrupted the fetch; partial bytes are kept for the next run."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; an attempt that brought new bytes is not counted."""

    attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, failures: int, retry_after: float | None = None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return min(self.max_delay, self.base_delay * 2**failures) * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class Expected:
    """What the catalog says the file is."""

    size: int | None
    checksum: Checksum | None
    etag: str | None = None


@dataclass(frozen=True)
class PartialMeta:
    url: str
    size: int | None
    etag: str | None
    validator: str | None


class PartialFile:
    """``<name>.part`` with ``<name>.part.json`` saying which URL and version it holds."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.meta_path = path.with_name(path.name + ".json")

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def meta(self) -> PartialMeta | None:
        try:
            return PartialMeta(**json.loads(self.meta_path.read_text()))
        except (FileNotFoundError, ValueError, TypeError):
            return None

    def start(self, url: str, info: RemoteInfo, keep_bytes: bool) -> None:
        """Record the version being downloaded; empty the file unless resuming."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not keep_bytes:
            self.path.write_bytes(b"")
        meta = PartialMeta(url, info.size, info.etag, info.validator)
        temporary = self.meta_path.with_name(self.meta_path.name + ".tmp")
        temporary.write_text(json.dumps(asdict(meta)))
        os.replace(temporary, self.meta_path)

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)
        self.meta_path.unlink(missing_ok=True)


def check_upstream(info: RemoteInfo, expected: Expected, url: str) -> None:
    """Raise ``upstream_changed`` when the server's size or ETag contradicts the catalog."""
    if expected.size is not None and info.size is not None and info.size != expected.size:
        raise FetchFailure(
            FailureClass.UPSTREAM_CHANGED,
            f"{url} now serves {info.size:,} bytes; the catalog says {expected.size:,}",
        )
    if expected.etag and info.etag and info.etag.strip('"') != expected.etag.strip('"'):
        raise FetchFailure(
            FailureClass.UPSTREAM_CHANGED,
            f"{url} now has ETag {info.etag}; the catalog says {expected.etag}",
        )


def download(
    url: str,
    expected: Expected,
    partial: PartialFile,
    transport: Transport,
    *,
    policy: RetryPolicy = RetryPolicy(),
    on_progress: Callable[[int, int | None], None] = lambda done, total: None,
    cancel: threading.Event | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Bring ``partial`` to the whole file at ``url``, resuming what an earlier run left.

    ``on_progress(bytes_done, total)`` is called as bytes arrive. Raises ``FetchFailure``
    when the failure is permanent or retries are spent (the bytes so far are kept), and
    ``Cancelled`` when ``cancel`` is set.
    """
    meta = partial.meta()
    if meta is None or meta.url != url:
        partial.discard()
    failures = 0
    while True:
        have = partial.size()
        validator = meta.validator if meta is not None and have else None
        try:
            body = transport.open(url, have, validator)
            try:
                _receive(url, body, expected, partial, have, on_progress, cancel)
            finally:
                body.close()
        except TransientError as exc:
            gained = partial.size() > have
            failures = 0 if gained else failures + 1
            if failures >= policy.attempts:
                kept = partial.size()
                raise FetchFailure(
                    exc.failure,
                    f"{exc.reason} (gave up after {policy.attempts} attempts; "
                    f"{kept:,} bytes kept to resume)",
                ) from None
            sleep(policy.delay(failures, exc.retry_after))
            meta = partial.meta()
            continue
        return


def _receive(
    url: str,
    body: Body,
    expected: Expected,
    partial: PartialFile,
    have: int,
    on_progress: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> None:
    info = body.info
    check_upstream(info, expected, url)
    if body.start not in (0, have):
        raise TransientError(
            FailureClass.UNREACHABLE, f"{url} resumed at byte {body.start:,}, not {have:,}"
        )
    partial.start(url, info, keep_bytes=body.start == have)
    total = info.size if info.size is not None else expected.size
    done = body.start
    on_progress(done, total)
    of_total = f" of {total:,}" if total is not None else ""
    with partial.path.open("ab") as out:
        try:
            for block in body.chunks():
                if cancel is not None and cancel.is_set():
                    raise Cancelled(url)
                out.write(block)
                done += len(block)
                on_progress(done, total)
                if total is not None and done > total:
                    raise FetchFailure(
                        FailureClass.OVERSIZED,
                        f"{url} sent more than the {total:,} bytes announced",
                    )
        except TransientError as exc:
            raise TransientError(
                exc.failure, f"{url}: the connection broke at {done:,}{of_total} bytes"
            ) from exc
        finally:
            out.flush()
            os.fsync(out.fileno())
    if total is not None and done < total:
        raise TransientError(
            FailureClass.TRUNCATED, f"{url} closed the connection at {done:,}{of_total} bytes"
        )


def verify_file(path: Path, expected: Expected, name: str | None = None) -> dict[str, str]:
    """Digests of ``path`` (md5 and the catalog's algorithm) after checking size and checksum.

    Raises ``FetchFailure`` with truncated, oversized, checksum_mismatch, or
    html_instead_of_file when the file is a web page. ``name`` is how messages call the file
    (default: its file name).
    """
    name = name or path.name
    algorithms = [DVC_ALGORITHM]
    if expected.checksum is not None:
        algorithms.append(expected.checksum.algorithm)
    size = path.stat().st_size
    if expected.size is not None and size != expected.size:
        failure = FailureClass.TRUNCATED if size < expected.size else FailureClass.OVERSIZED
        reason = f"{name} has {size:,} bytes; the catalog says {expected.size:,}"
        raise FetchFailure(_html_or(path, failure), reason)
    digests = hash_file(path, algorithms)
    if expected.checksum is not None:
        actual = digests[expected.checksum.algorithm]
        if actual != expected.checksum.hexdigest:
            reason = (
                f"{name} has {expected.checksum.algorithm} {actual}; "
                f"the catalog says {expected.checksum.hexdigest}"
            )
            raise FetchFailure(_html_or(path, FailureClass.CHECKSUM_MISMATCH), reason)
    return digests


def _html_or(path: Path, failure: FailureClass) -> FailureClass:
    return FailureClass.HTML_INSTEAD_OF_FILE if file_is_html(path) else failure
