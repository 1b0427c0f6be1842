"""Downloads against a real HTTP server on 127.0.0.1 that misbehaves on purpose."""

from __future__ import annotations

import hashlib
import random
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_server import MisbehavingServer, Route
from vcat.catalog.fields import Checksum
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.download import Cancelled, Expected, PartialFile, RetryPolicy, download, verify_file
from vcat.fetch.http import HttpTransport
from vcat.fetch.pages import ServedPage

NO_WAIT = RetryPolicy(attempts=3, base_delay=0.0)
DATA = random.Random(7).randbytes(300_000)


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def expect(data: bytes = DATA, size: bool = True) -> Expected:
    return Expected(len(data) if size else None, Checksum("md5", hashlib.md5(data).hexdigest()))


def interrupted(url: str, partial: PartialFile, at: int, expected: Expected) -> None:
    """Start a download and interrupt it once ``at`` bytes have arrived."""
    cancel = threading.Event()

    def stop_at(done: int, total: int | None) -> None:
        if done >= at:
            cancel.set()

    with pytest.raises(Cancelled):
        download(url, expected, partial, HttpTransport(), on_progress=stop_at, cancel=cancel)
    assert partial.size() >= at


def fetch(url: str, partial: PartialFile, expected: Expected | None = None) -> bytes:
    download(
        url, expected or expect(), partial, HttpTransport(), policy=NO_WAIT, sleep=lambda _: None
    )
    return partial.path.read_bytes()


def test_good_file_arrives_whole(server: MisbehavingServer, tmp_path: Path) -> None:
    route = Route(DATA)
    url = server.add("/good.bin", route)
    assert fetch(url, PartialFile(tmp_path / "good.part")) == DATA
    assert route.requests == 1


@pytest.mark.parametrize("behaviour", ["truncate", "drop"])
def test_cut_body_is_resumed_with_a_range(
    server: MisbehavingServer, tmp_path: Path, behaviour: str
) -> None:
    route = Route(DATA, behaviour, cut=100_000, times=1)
    url = server.add("/cut.bin", route)
    assert fetch(url, PartialFile(tmp_path / "cut.part")) == DATA
    first, resumed = route.ranges
    assert first is None and resumed is not None
    kept = int(resumed.removeprefix("bytes=").removesuffix("-"))
    # a clean close hands over every byte sent; a reset may drop those not yet read
    assert kept == 100_000 if behaviour == "truncate" else 0 < kept <= 100_000


def test_server_without_ranges_restarts_cleanly(server: MisbehavingServer, tmp_path: Path) -> None:
    route = Route(DATA * 10, "no-ranges")
    url = server.add("/noranges.bin", route)
    partial = PartialFile(tmp_path / "noranges.part")
    interrupted(url, partial, 1_000_000, expect(DATA * 10))
    kept = partial.size()
    assert fetch(url, partial, expect(DATA * 10)) == DATA * 10  # range ignored: restarted at 0
    assert route.ranges == [None, f"bytes={kept}-"]


def test_server_error_then_success_is_retried(server: MisbehavingServer, tmp_path: Path) -> None:
    route = Route(DATA, "flaky", times=2)
    url = server.add("/flaky.bin", route)
    assert fetch(url, PartialFile(tmp_path / "flaky.part")) == DATA
    assert route.requests == 3


def test_retries_are_bounded(server: MisbehavingServer, tmp_path: Path) -> None:
    url = server.add("/down.bin", Route(DATA, "flaky", times=100))
    with pytest.raises(FetchFailure) as caught:
        fetch(url, PartialFile(tmp_path / "down.part"))
    assert caught.value.failure == FailureClass.UNREACHABLE
    assert "gave up after 3 attempts" in caught.value.reason


def test_endless_truncation_fails_as_truncated_and_keeps_bytes(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    # every answer stops at the same byte: no progress, so each attempt counts
    url = server.add("/short.bin", Route(DATA, "truncate", cut=1000, times=100))
    partial = PartialFile(tmp_path / "short.part")
    with pytest.raises(FetchFailure) as caught:
        fetch(url, partial)
    assert caught.value.failure == FailureClass.TRUNCATED
    assert "at 1,000 of 300,000 bytes" in caught.value.reason
    assert "gave up after 3 attempts; 1,000 bytes kept to resume" in caught.value.reason
    assert partial.size() == 1000


@pytest.mark.parametrize("behaviour", ["html", "html-as-binary"])
def test_web_page_instead_of_file(
    server: MisbehavingServer, tmp_path: Path, behaviour: str
) -> None:
    url = server.add("/login", Route(behaviour=behaviour))
    partial = PartialFile(tmp_path / "page.part")
    with pytest.raises(ServedPage) as caught:
        fetch(url, partial)
    assert caught.value.failure == FailureClass.HTML_INSTEAD_OF_FILE
    assert "Sign in - Example Storage" in caught.value.reason
    assert caught.value.page.startswith(b"<!DOCTYPE html>")
    assert partial.size() == 0


def test_drive_confirmation_page_is_followed(server: MisbehavingServer, tmp_path: Path) -> None:
    server.add("/drive/uc", Route(behaviour="drive-confirm"))
    download_route = Route(DATA)
    server.add("/drive/download", download_route)
    data = fetch(
        server.url("/drive/uc?export=download&id=FILE123"), PartialFile(tmp_path / "d.part")
    )
    assert data == DATA
    assert download_route.requests == 1


@pytest.mark.parametrize(
    ("behaviour", "failure", "title"),
    [
        ("quota", FailureClass.QUOTA_EXCEEDED, "Google Drive - Quota exceeded"),
        ("drive-permission", FailureClass.FORBIDDEN, "Google Drive"),
    ],
)
def test_drive_pages_are_classified(
    server: MisbehavingServer, tmp_path: Path, behaviour: str, failure: str, title: str
) -> None:
    url = server.add("/drive/page", Route(behaviour=behaviour))
    with pytest.raises(ServedPage) as caught:
        fetch(url, PartialFile(tmp_path / "q.part"))
    assert caught.value.failure == failure
    assert f"({title!r})" in caught.value.reason


@pytest.mark.parametrize(
    ("path", "behaviour", "failure"),
    [
        ("/secret.bin", "forbidden", FailureClass.FORBIDDEN),
        ("/missing.bin", None, FailureClass.NOT_FOUND),
    ],
)
def test_http_errors_are_classified(
    server: MisbehavingServer, tmp_path: Path, path: str, behaviour: str | None, failure: str
) -> None:
    if behaviour:
        server.add(path, Route(DATA, behaviour))
    with pytest.raises(FetchFailure) as caught:
        fetch(server.url(path), PartialFile(tmp_path / "x.part"))
    assert caught.value.failure == failure
    assert path in caught.value.reason


def test_unreachable_host(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again when the block ends: nobody listens
    with pytest.raises(FetchFailure) as caught:
        fetch(f"http://127.0.0.1:{port}/x.bin", PartialFile(tmp_path / "x.part"))
    assert caught.value.failure == FailureClass.UNREACHABLE
    assert caught.value.reason.startswith(f"127.0.0.1:{port} refused the connection")


def test_size_change_upstream_is_detected_before_downloading(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    url = server.add("/grown.bin", Route(DATA + b"more"))
    partial = PartialFile(tmp_path / "grown.part")
    with pytest.raises(FetchFailure) as caught:
        fetch(url, partial)
    assert caught.value.failure == FailureClass.UPSTREAM_CHANGED
    assert "300,004 bytes; the catalog says 300,000" in caught.value.reason
    assert partial.size() == 0


def test_etag_change_upstream_is_detected(server: MisbehavingServer, tmp_path: Path) -> None:
    route = Route(DATA)
    url = server.add("/tagged.bin", route)
    stale = Expected(len(DATA), None, etag='"0000000000000000"')
    with pytest.raises(FetchFailure) as caught:
        fetch(url, PartialFile(tmp_path / "t.part"), stale)
    assert caught.value.failure == FailureClass.UPSTREAM_CHANGED
    assert route.etag in caught.value.reason


def test_file_changed_between_runs_restarts_instead_of_splicing(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    route = Route(DATA * 10)
    url = server.add("/moving.bin", route)
    partial = PartialFile(tmp_path / "moving.part")
    interrupted(url, partial, 1_000_000, expect(DATA * 10, size=False))
    changed = random.Random(8).randbytes(len(DATA))
    route.data = changed
    # If-Range carries the old ETag, so the server sends the new file whole
    assert fetch(url, partial, expect(changed)) == changed


def test_verify_file_classes(tmp_path: Path) -> None:
    good = tmp_path / "good.bin"
    good.write_bytes(DATA)
    digests = verify_file(good, expect())
    assert digests["md5"] == hashlib.md5(DATA).hexdigest()
    cases = {
        FailureClass.TRUNCATED: DATA[:-1],
        FailureClass.OVERSIZED: DATA + b"x",
        FailureClass.CHECKSUM_MISMATCH: bytes([DATA[0] ^ 1]) + DATA[1:],
        FailureClass.HTML_INSTEAD_OF_FILE: b"<!doctype html><html>" + DATA[21:],
    }
    for failure, content in cases.items():
        good.write_bytes(content)
        with pytest.raises(FetchFailure) as caught:
            verify_file(good, expect())
        assert caught.value.failure == failure, failure


def test_ctrl_c_after_the_last_block_is_still_an_interruption(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    # the last block arrives after the user pressed Ctrl-C: nothing may count as finished
    url = server.add("/last.bin", Route(DATA))
    partial = PartialFile(tmp_path / "last.part")
    interrupted(url, partial, len(DATA), expect())
    assert partial.size() == len(DATA)
    assert fetch(url, partial) == DATA  # the next run finds every byte kept
