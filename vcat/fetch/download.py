"""One URL to one local file: resumable, retried, checked against what the catalog expects.

The bytes go to a ``PartialFile`` outside the dataset root; only a caller that has verified
them moves them to their final path.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from vcat.catalog.fields import Checksum
from vcat.failures import FailureClass, FetchFailure, file_is_html
from vcat.fetch.limits import DEFAULT_LIMITS, SLOW_PROGRESS, TransferLimits
from vcat.fetch.transport import Body, RemoteInfo, TransientError, Transport
from vcat.hashing import hash_file

CANCEL_POLL = 0.2  # seconds between two looks at the cancel flag while a read may block
DVC_ALGORITHM = "md5"  # what DVC hashes with; computed alongside so DVC need not re-read


class Cancelled(Exception):
    """The user interrupted the fetch; partial bytes are kept for the next run."""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; an attempt that brought new bytes is not counted
    (unless it stalled or crawled and brought less than ``SLOW_PROGRESS``)."""

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
    """The version of the file whose first bytes the partial holds."""

    url: str
    size: int | None
    etag: str | None
    validator: str | None
    last_modified: str | None = None

    def names_a_version(self) -> bool:
        return self.etag is not None or self.last_modified is not None


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
        meta = PartialMeta(url, info.size, info.etag, info.validator, info.last_modified)
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


class _VersionChanged(Exception):
    """The bytes offered to resume belong to another version of the file than the partial."""


def resumable(meta: PartialMeta | None, url: str, expected: Expected) -> bool:
    """Whether the bytes of a partial may be continued: it must be of ``url`` and name the
    version it holds (ETag or Last-Modified), unless a published checksum will catch a file
    stitched from two versions."""
    if meta is None or meta.url != url:
        return False
    return meta.names_a_version() or expected.checksum is not None


def version_change(meta: PartialMeta, info: RemoteInfo) -> str | None:
    """Why a body resumed after ``meta``'s bytes may belong to another version (None: same).

    Every validator both sides give must agree, and a partial that names its version must
    get an answer that names one too: a server that ignores If-Range would otherwise splice.
    """
    named = False
    for what, before, now in (
        ("ETag", meta.etag, info.etag),
        ("Last-Modified", meta.last_modified, info.last_modified),
    ):
        if before is not None and now is not None:
            if before != now:
                return f"its {what} changed from {before} to {now}"
            named = True
    if meta.size is not None and info.size is not None and meta.size != info.size:
        return f"its size changed from {meta.size:,} to {info.size:,} bytes"
    if meta.names_a_version() and not named:
        return "the answer does not say which version of the file it continues"
    return None


def download(
    url: str,
    expected: Expected,
    partial: PartialFile,
    transport: Transport,
    *,
    policy: RetryPolicy = RetryPolicy(),
    limits: TransferLimits = DEFAULT_LIMITS,
    on_progress: Callable[[int, int | None], None] = lambda done, total: None,
    on_note: Callable[[str], None] = lambda line: None,
    cancel: threading.Event | None = None,
    sleep: Callable[[float], None] | None = None,
) -> None:
    """Bring ``partial`` to the whole file at ``url``, resuming what an earlier run left.

    A resumed answer must come from the version the partial was started on, else the
    download starts again at byte 0: the result is always one whole version. A file of
    unknown size may not exceed ``limits.max_size``. ``on_progress(bytes_done, total)`` is
    called as bytes arrive (never beyond ``total``); ``on_note(line)`` says why an attempt
    failed and when the next starts, or that the file changed. Raises ``FetchFailure`` when
    the failure is permanent or retries are spent (the bytes so far are kept, except for an
    oversized file), and ``Cancelled`` when ``cancel`` is set, also while waiting to retry.
    """
    meta = partial.meta()
    if not resumable(meta, url, expected):
        partial.discard()
        meta = None
    failures = 0
    while True:
        have = partial.size()
        validator = meta.validator if meta is not None and have else None
        try:
            body = transport.open(url, have, validator)
            try:
                with _aborted_on(cancel, body):
                    _receive(url, body, expected, partial, have, meta, limits, on_progress, cancel)
            finally:
                body.close()
        except _VersionChanged as changed:
            on_note(f"{url} changed since the kept bytes were fetched ({changed}); starting again")
            partial.discard()
            meta = None
            continue
        except TransientError as exc:
            if cancel is not None and cancel.is_set():
                raise Cancelled(url) from None  # the read was cut short by Ctrl-C
            gained = partial.size() - have
            progressed = gained >= SLOW_PROGRESS if exc.slow else gained > 0
            failures = 0 if progressed else failures + 1
            if failures >= policy.attempts:
                kept = partial.size()
                raise FetchFailure(
                    exc.failure,
                    f"{exc.reason} (gave up after {policy.attempts} attempts; "
                    f"{kept:,} bytes kept to resume)",
                ) from None
            delay = policy.delay(failures, exc.retry_after)
            on_note(
                f"attempt {failures} of {policy.attempts} failed: {exc.reason}; "
                f"retrying in {delay:.0f} s"
            )
            _wait(delay, cancel, sleep, url)
            meta = partial.meta()
            continue
        except FetchFailure as failure:
            if failure.failure == FailureClass.OVERSIZED:
                partial.discard()  # another file than the one wanted: never left to grow
            raise
        return


@contextlib.contextmanager
def _aborted_on(cancel: threading.Event | None, body: Body) -> Iterator[None]:
    """While the block runs, a Ctrl-C aborts ``body``: a read that waits for a silent
    server returns at once instead of after the stall timeout."""
    if cancel is None:
        yield
        return
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if cancel.wait(CANCEL_POLL):
                body.abort()
                return

    watcher = threading.Thread(target=watch, name="fetch-cancel", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()


def _wait(
    delay: float,
    cancel: threading.Event | None,
    sleep: Callable[[float], None] | None,
    url: str,
) -> None:
    if sleep is not None:
        sleep(delay)
    elif cancel is not None:
        if cancel.wait(delay):
            raise Cancelled(url)
    else:
        time.sleep(delay)


def _oversized(url: str, info: RemoteInfo, expected: Expected, limits: TransferLimits) -> None:
    """Refuse before reading a byte a file of unknown size announced beyond the ceiling."""
    if expected.size is None and info.size is not None and info.size > limits.max_size:
        raise FetchFailure(
            FailureClass.OVERSIZED,
            f"{url} announces {info.size:,} bytes, more than the {limits.max_size:,} allowed "
            "for a source without a declared size; declare its size or raise --max-size",
        )


def _receive(
    url: str,
    body: Body,
    expected: Expected,
    partial: PartialFile,
    have: int,
    meta: PartialMeta | None,
    limits: TransferLimits,
    on_progress: Callable[[int, int | None], None],
    cancel: threading.Event | None,
) -> None:
    info = body.info
    check_upstream(info, expected, url)
    _oversized(url, info, expected, limits)
    if body.start not in (0, have):
        raise TransientError(
            FailureClass.UNREACHABLE, f"{url} resumed at byte {body.start:,}, not {have:,}"
        )
    resumed = body.start == have and have > 0
    if resumed and meta is not None and (change := version_change(meta, info)) is not None:
        raise _VersionChanged(change)
    partial.start(url, info, keep_bytes=body.start == have)
    total = info.size if info.size is not None else expected.size
    ceiling = total if total is not None else limits.max_size
    done = body.start
    on_progress(done, total)
    of_total = f" of {total:,}" if total is not None else ""
    with partial.path.open("ab") as out:
        try:
            for block in body.chunks():
                if cancel is not None and cancel.is_set():
                    raise Cancelled(url)
                if done + len(block) > ceiling:
                    raise FetchFailure(FailureClass.OVERSIZED, _too_much(url, total, ceiling))
                out.write(block)
                done += len(block)
                on_progress(done, total)
        except TransientError as exc:
            reason = f"{exc.reason} (at {done:,}{of_total} bytes)"
            raise TransientError(exc.failure, reason, exc.retry_after, slow=exc.slow) from exc
        finally:
            out.flush()
            os.fsync(out.fileno())
    if cancel is not None and cancel.is_set():
        raise Cancelled(url)  # the last block came in after Ctrl-C: nothing is placed
    if total is not None and done < total:
        raise TransientError(
            FailureClass.TRUNCATED, f"{url} closed the connection at {done:,}{of_total} bytes"
        )


def _too_much(url: str, total: int | None, ceiling: int) -> str:
    if total is not None:
        return f"{url} sent more than the {total:,} bytes announced"
    return (
        f"{url} sent more than the {ceiling:,} bytes allowed for a source without a declared "
        "size; declare its size or raise --max-size"
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
