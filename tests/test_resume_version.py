"""A resumed download continues the version its first bytes came from, or starts again.

The server changes the file between two runs, keeping or changing its ETag and
Last-Modified, honouring If-Range or answering 206 regardless: the result is always one
whole version, also when the catalog publishes no checksum that would catch a splice.
"""

from __future__ import annotations

import hashlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.http_server import MisbehavingServer, Route, s3_environment
from vcat.catalog.fields import Checksum
from vcat.fetch.download import Cancelled, Expected, PartialFile, RetryPolicy, download
from vcat.fetch.http import HttpTransport
from vcat.fetch.s3 import S3Transport
from vcat.fetch.transport import Transport

OLD = random.Random(21).randbytes(4 << 20)
NEW = random.Random(22).randbytes(4 << 20)  # same size: only a validator tells them apart
LONGER = random.Random(23).randbytes(5 << 20)
UNPUBLISHED = Expected(None, None)
NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0)
MONDAY = "Mon, 01 Dec 2025 10:00:00 GMT"
TUESDAY = "Tue, 02 Dec 2025 10:00:00 GMT"


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


@dataclass
class Change:
    """How the server serves the new version and what it says about it."""

    new: bytes = NEW
    before: dict[str, object] = field(default_factory=dict)  # Route fields for the old version
    after: dict[str, object] = field(default_factory=dict)  # ... and for the new one


def interrupt(url: str, partial: PartialFile, transport: Transport, at: int) -> None:
    """Download until ``at`` bytes have arrived, then stop as Ctrl-C does."""
    cancel = threading.Event()

    def stop_at(done: int, total: int | None) -> None:
        if done >= at:
            cancel.set()

    with pytest.raises(Cancelled):
        download(url, UNPUBLISHED, partial, transport, on_progress=stop_at, cancel=cancel)
    assert at <= partial.size() <= len(OLD)


def finish(url: str, partial: PartialFile, transport: Transport, expected: Expected) -> bytes:
    notes: list[str] = []
    download(
        url, expected, partial, transport, policy=NO_WAIT, on_note=notes.append,
        sleep=lambda _: None,
    )  # fmt: skip
    return partial.path.read_bytes()


CHANGES = {
    "etag-changes": Change(),
    "etag-kept-size-changes": Change(LONGER, {"fixed_etag": '"same"'}, {"fixed_etag": '"same"'}),
    "etag-kept-last-modified-changes": Change(
        NEW,
        {"fixed_etag": '"same"', "last_modified": MONDAY},
        {"fixed_etag": '"same"', "last_modified": TUESDAY},
    ),
    "last-modified-only": Change(
        NEW,
        {"send_etag": False, "last_modified": MONDAY},
        {"send_etag": False, "last_modified": TUESDAY},
    ),
    "ignores-if-range-new-etag": Change(NEW, {}, {"if_range": "ignore"}),
    "ignores-if-range-new-last-modified": Change(
        NEW,
        {"send_etag": False, "last_modified": MONDAY},
        {"send_etag": False, "last_modified": TUESDAY, "if_range": "ignore"},
    ),
    "ignores-if-range-names-no-version": Change(
        NEW, {}, {"send_etag": False, "if_range": "ignore"}
    ),
    "never-names-a-version": Change(
        NEW, {"send_etag": False}, {"send_etag": False, "if_range": "ignore"}
    ),
}


@pytest.mark.parametrize("at", [1 << 20, len(OLD)], ids=["midway", "every-byte"])
@pytest.mark.parametrize("case", list(CHANGES))
def test_a_changed_file_is_never_stitched(
    server: MisbehavingServer, tmp_path: Path, case: str, at: int
) -> None:
    change = CHANGES[case]
    route = Route(OLD, **change.before)  # type: ignore[arg-type]
    url = server.add("/moving.bin", route)
    partial = PartialFile(tmp_path / "moving.part")
    interrupt(url, partial, HttpTransport(), at)
    route.data = change.new
    for name, value in change.after.items():
        setattr(route, name, value)
    assert finish(url, partial, HttpTransport(), UNPUBLISHED) == change.new
    if case == "never-names-a-version":  # nothing ties the bytes to a version: not resumed
        assert route.ranges[-1] is None and route.requests == 2


@pytest.mark.parametrize(
    ("before", "expected"),
    [
        ({}, UNPUBLISHED),
        ({"send_etag": False, "last_modified": MONDAY}, UNPUBLISHED),
        ({"send_etag": False}, Expected(None, Checksum("md5", hashlib.md5(OLD).hexdigest()))),
    ],
    ids=["etag", "last-modified", "checksum-published"],
)
def test_an_unchanged_file_is_resumed_where_it_stopped(
    server: MisbehavingServer, tmp_path: Path, before: dict[str, object], expected: Expected
) -> None:
    route = Route(OLD, **before)  # type: ignore[arg-type]
    url = server.add("/still.bin", route)
    partial = PartialFile(tmp_path / "still.part")
    interrupt(url, partial, HttpTransport(), 1 << 20)
    kept = partial.size()
    assert finish(url, partial, HttpTransport(), expected) == OLD
    assert route.ranges[-1] == f"bytes={kept}-"
    sent = route.if_ranges[-1]
    assert sent == (route.etag if route.send_etag else route.last_modified)


@pytest.fixture
def s3_endpoint(server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch) -> MisbehavingServer:
    """The test server as an S3 endpoint: it answers GETs of /bucket/key like S3 would,
    and ignores If-Match as a server that does not implement it."""
    for name, value in s3_environment(server).items():
        monkeypatch.setenv(name, value)
    return server


@pytest.mark.parametrize("changes", [True, False], ids=["object-replaced", "object-unchanged"])
def test_an_s3_object_is_resumed_only_while_its_etag_holds(
    s3_endpoint: MisbehavingServer, tmp_path: Path, changes: bool
) -> None:
    route = Route(OLD)
    s3_endpoint.add("/bucket/data/moving.bin", route)
    url = "s3://bucket/data/moving.bin"
    partial = PartialFile(tmp_path / "moving.part")
    interrupt(url, partial, S3Transport(), 1 << 20)
    kept = partial.size()
    if changes:
        route.data = NEW
        route.if_range = "ignore"
    assert finish(url, partial, S3Transport(), UNPUBLISHED) == (NEW if changes else OLD)
    assert route.ranges[1] == f"bytes={kept}-"
    assert route.ranges[-1] == (None if changes else f"bytes={kept}-")


@pytest.mark.slow
def test_a_replaced_object_on_a_real_s3_server_is_read_again_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    from vcat.seaweedfs import S3Credentials, SeaweedS3

    credentials = S3Credentials("vcat-test", "vcat-test-secret")
    with SeaweedS3(tmp_path / "seaweed", credentials) as s3:
        for name, value in s3.environment().items():
            monkeypatch.setenv(name, value)
        filesystem = s3fs.S3FileSystem(
            key=credentials.access_key,
            secret=credentials.secret_key,
            client_kwargs={"endpoint_url": s3.endpoint},
            skip_instance_cache=True,
        )
        filesystem.mkdir("upstream")
        filesystem.pipe("upstream/moving.bin", OLD)
        url = "s3://upstream/moving.bin"
        replaced = PartialFile(tmp_path / "replaced.part")
        interrupt(url, replaced, S3Transport(), 1 << 20)
        filesystem.pipe("upstream/moving.bin", NEW)
        assert finish(url, replaced, S3Transport(), UNPUBLISHED) == NEW
        unchanged = PartialFile(tmp_path / "unchanged.part")
        interrupt(url, unchanged, S3Transport(), 1 << 20)
        assert finish(url, unchanged, S3Transport(), UNPUBLISHED) == NEW
