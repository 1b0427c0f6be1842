"""Transfers that stall, crawl, never end or cannot connect, against a real server on
127.0.0.1: each ends with its failure class, within a bound, and leaves no file behind that
could grow without end. Limits are the same ``TransferLimits`` users set, made short."""

from __future__ import annotations

import hashlib
import io
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from tests.http_server import MisbehavingServer, Route, s3_environment
from vcat.catalog.fields import Checksum
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.download import Cancelled, Expected, PartialFile, RetryPolicy, download
from vcat.fetch.http import HttpTransport
from vcat.fetch.limits import GuardedReader, SpeedCheck, TransferLimits
from vcat.fetch.s3 import S3Transport
from vcat.fetch.small import fetch_bytes
from vcat.fetch.transport import TransientError

DATA = random.Random(11).randbytes(300_000)
SHORT = TransferLimits(
    stall_timeout=0.5, min_speed=2_000, speed_window=1.0, max_size=1 << 20, connect_timeout=2
)
TWO_TRIES = RetryPolicy(attempts=2, base_delay=0.0)
HANG_GUARD = 60.0  # seconds: far above any case here; reaching it means a hang
_T = TypeVar("_T")


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def bounded(call: Callable[[], _T]) -> _T:
    """``call()``'s result or exception; fails the test if it has not returned in
    ``HANG_GUARD`` seconds instead of hanging the suite."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(("value", call()))
        except BaseException as exc:  # handed over to the test's thread
            outcome.append(("error", exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HANG_GUARD)
    assert outcome, f"still running after {HANG_GUARD:g} s"
    kind, value = outcome[0]  # type: ignore[misc]
    if kind == "error":
        raise value  # type: ignore[misc]
    return value  # type: ignore[return-value]


def expect(data: bytes | None = DATA) -> Expected:
    if data is None:
        return Expected(None, None)
    return Expected(len(data), Checksum("md5", hashlib.md5(data).hexdigest()))


class Recorder:
    """The progress calls and notes of one download."""

    def __init__(self) -> None:
        self.progress: list[tuple[int, int | None]] = []
        self.notes: list[str] = []

    def run(
        self, url: str, partial: PartialFile, expected: Expected, limits: TransferLimits = SHORT
    ) -> None:
        download(
            url,
            expected,
            partial,
            HttpTransport(limits=limits),
            policy=TWO_TRIES,
            limits=limits,
            on_progress=lambda done, total: self.progress.append((done, total)),
            on_note=self.notes.append,
            sleep=lambda _: None,
        )

    def never_beyond_total(self) -> None:
        for done, total in self.progress:
            assert total is None or done <= total, (done, total)


def failure_of(call: Callable[[], object]) -> FetchFailure:
    with pytest.raises(FetchFailure) as caught:
        bounded(call)
    return caught.value


@pytest.mark.parametrize("cut", [0, 10_000])
def test_stall_fails_as_unreachable_and_keeps_the_bytes_to_resume(
    server: MisbehavingServer, tmp_path: Path, cut: int
) -> None:
    route = Route(DATA, "stall", cut=cut, times=100)
    url = server.add("/stall.bin", route)
    partial, recorder = PartialFile(tmp_path / "stall.part"), Recorder()
    failure = failure_of(lambda: recorder.run(url, partial, expect()))
    assert failure.failure == FailureClass.UNREACHABLE
    assert "no byte arrived for 0.5 s (the transfer stalled)" in failure.reason
    assert "gave up after 2 attempts" in failure.reason
    assert len(route.ranges) == 2
    assert partial.size() == (2 * cut if cut else 0)  # each attempt's bytes were kept
    assert recorder.notes[0].startswith("attempt 1 of 2 failed: ")
    recorder.never_beyond_total()


def test_stalls_that_bring_a_block_each_time_finish_the_file(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    data = random.Random(12).randbytes(3 << 20)
    route = Route(data, "stall", cut=(1 << 20) + 1)
    url = server.add("/stall.bin", route)
    partial = PartialFile(tmp_path / "stall.part")
    bounded(lambda: Recorder().run(url, partial, expect(data)))
    assert partial.path.read_bytes() == data
    assert len(route.ranges) == 3


def test_a_trickle_fails_as_too_slow_instead_of_being_retried_forever(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    route = Route(DATA, "trickle", interval=0.01)  # about 100 bytes/s
    url = server.add("/trickle.bin", route)
    partial, recorder = PartialFile(tmp_path / "trickle.part"), Recorder()
    failure = failure_of(lambda: recorder.run(url, partial, expect()))
    assert failure.failure == FailureClass.UNREACHABLE
    assert "under the minimum of 2,000 (the transfer crawled)" in failure.reason
    assert "gave up after 2 attempts" in failure.reason
    assert 0 < partial.size() < 10_000
    recorder.never_beyond_total()


@pytest.mark.parametrize("declared", [True, False])
def test_a_server_sending_more_than_its_content_length_gives_the_file_only(
    server: MisbehavingServer, tmp_path: Path, declared: bool
) -> None:
    url = server.add("/overlong.bin", Route(DATA, "overlong"))
    partial, recorder = PartialFile(tmp_path / "overlong.part"), Recorder()
    bounded(lambda: recorder.run(url, partial, expect(DATA if declared else None)))
    assert partial.path.read_bytes() == DATA
    assert recorder.progress[-1] == (len(DATA), len(DATA))
    recorder.never_beyond_total()


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        (True, "sent more than the 300,000 bytes announced"),
        (False, "sent more than the 1,048,576 bytes allowed for a source without a declared"),
    ],
)
def test_an_endless_body_is_oversized_and_its_bytes_removed(
    server: MisbehavingServer, tmp_path: Path, declared: bool, message: str
) -> None:
    url = server.add("/endless.bin", Route(DATA, "endless"))
    partial, recorder = PartialFile(tmp_path / "endless.part"), Recorder()
    failure = failure_of(lambda: recorder.run(url, partial, expect(DATA if declared else None)))
    assert failure.failure == FailureClass.OVERSIZED
    assert message in failure.reason
    assert not partial.path.exists() and not partial.meta_path.exists()
    recorder.never_beyond_total()


def test_an_announced_size_beyond_the_ceiling_is_refused_before_reading(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    url = server.add("/huge.bin", Route(DATA * 4))
    partial, recorder = PartialFile(tmp_path / "huge.part"), Recorder()
    failure = failure_of(lambda: recorder.run(url, partial, expect(None)))
    assert failure.failure == FailureClass.OVERSIZED
    assert "announces 1,200,000 bytes, more than the 1,048,576 allowed" in failure.reason
    assert not partial.path.exists()
    assert recorder.progress == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed when the block ends: nobody listens


def test_a_refused_connection_reports_each_attempt_as_it_happens(tmp_path: Path) -> None:
    port = closed_port()
    recorder = Recorder()
    policy = RetryPolicy(attempts=3, base_delay=0.0)
    url = f"http://127.0.0.1:{port}/x.bin"

    def run() -> None:
        download(
            url, expect(), PartialFile(tmp_path / "x.part"), HttpTransport(limits=SHORT),
            policy=policy, on_note=recorder.notes.append, sleep=lambda _: None,
        )  # fmt: skip

    failure = failure_of(run)
    assert failure.failure == FailureClass.UNREACHABLE
    assert recorder.notes == [
        f"attempt {n} of 3 failed: 127.0.0.1:{port} refused the connection; retrying in 0 s"
        for n in (1, 2)
    ]


def test_ctrl_c_during_the_wait_before_a_retry_stops_at_once(tmp_path: Path) -> None:
    cancel = threading.Event()
    url = f"http://127.0.0.1:{closed_port()}/x.bin"
    patient = RetryPolicy(attempts=5, base_delay=3600.0, max_delay=3600.0)

    def run() -> None:
        download(
            url, expect(), PartialFile(tmp_path / "x.part"), HttpTransport(limits=SHORT),
            policy=patient, on_note=lambda line: cancel.set(), cancel=cancel,
        )  # fmt: skip

    with pytest.raises(Cancelled):
        bounded(run)


def test_progress_of_a_restarted_download_starts_again_from_zero(
    server: MisbehavingServer, tmp_path: Path
) -> None:
    route = Route(DATA, "no-ranges")
    url = server.add("/restart.bin", route)
    partial = PartialFile(tmp_path / "restart.part")
    partial.path.write_bytes(DATA[:100_000])
    partial.start(url, HttpTransport().open(url, 0, None).info, keep_bytes=True)
    recorder = Recorder()
    bounded(lambda: recorder.run(url, partial, expect()))
    assert partial.path.read_bytes() == DATA
    assert route.ranges[-1] == "bytes=100000-"  # asked to resume; the server sent it all
    assert recorder.progress[0] == (0, len(DATA))
    recorder.never_beyond_total()


@pytest.mark.parametrize(
    ("route", "failure", "message"),
    [
        (Route(DATA[:100_000], "stall", cut=10), FailureClass.UNREACHABLE, "stalled"),
        (Route(DATA[:100_000], "trickle", interval=0.01), FailureClass.UNREACHABLE, "crawled"),
        (Route(DATA, "endless"), FailureClass.OVERSIZED, "larger than 200,000 bytes"),
        (Route(DATA), FailureClass.OVERSIZED, "announces 300,000 bytes, more than 200,000"),
    ],
    ids=["stall", "trickle", "endless", "announced"],
)
def test_small_files_keep_the_same_limits(
    server: MisbehavingServer, route: Route, failure: FailureClass, message: str
) -> None:
    url = server.add("/image.jpg", route)
    caught = failure_of(
        lambda: fetch_bytes(
            url, policy=TWO_TRIES, max_bytes=200_000, limits=SHORT, sleep=lambda _: None
        )
    )
    assert caught.failure == failure
    assert message in caught.reason


def test_speed_is_averaged_over_the_window() -> None:
    now = [0.0]
    check = SpeedCheck("u", TransferLimits(min_speed=100, speed_window=10.0), lambda: now[0])
    for _ in range(9):  # a slow start is allowed while the first window lasts
        now[0] += 1.0
        check.arrived(10)
    now[0] += 1.0
    check.arrived(5_000)  # a burst lifts the average of the window above the minimum
    for _ in range(5):
        now[0] += 1.0
        check.arrived(10)
    with pytest.raises(TransientError, match="crawled"):
        for _ in range(10):  # the burst leaves the window: the average falls under it
            now[0] += 1.0
            check.arrived(10)


def test_min_speed_zero_turns_the_check_off() -> None:
    now = [0.0]
    check = SpeedCheck("u", TransferLimits(min_speed=0, speed_window=1.0), lambda: now[0])
    for _ in range(100):
        now[0] += 10.0
        check.arrived(1)


def test_bytes_before_a_broken_read_are_handed_over_before_the_error() -> None:
    pieces: list[bytes | Exception] = [b"a" * 10, b"b" * 10, ConnectionResetError("reset")]

    def read1(_: int) -> bytes:
        piece = pieces.pop(0)
        if isinstance(piece, Exception):
            raise piece
        return piece

    reader = GuardedReader(read1, "u", TransferLimits())
    assert reader.read_at_least(100) == b"a" * 10 + b"b" * 10
    with pytest.raises(ConnectionResetError):
        list(reader.blocks())


@pytest.mark.parametrize(
    "values",
    [
        {"stall_timeout": 0},
        {"speed_window": -1},
        {"min_speed": -5},
        {"max_size": -1},
    ],
)
def test_limits_refuse_values_that_cannot_work(values: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TransferLimits(**values)  # type: ignore[arg-type]


def test_command_line_sizes_are_read_with_units() -> None:
    limits = TransferLimits.from_options(5, "10K", 30, "2GiB")
    assert (limits.min_speed, limits.max_size) == (10_000, 2 << 30)
    with pytest.raises(ValueError, match="--max-size"):
        TransferLimits.from_options(5, "10K", 30, "lots")
    with pytest.raises(ValueError, match="--stall-timeout"):
        TransferLimits.from_options(0, "10K", 30, "1G")


@pytest.mark.parametrize(
    ("route", "message"),
    [
        (Route(DATA, "stall", cut=10), "(the transfer stalled)"),
        (Route(DATA, "trickle", interval=0.01), "(the transfer crawled)"),
    ],
    ids=["stall", "trickle"],
)
def test_s3_reads_keep_the_same_limits(
    server: MisbehavingServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    route: Route,
    message: str,
) -> None:
    for name, value in s3_environment(server).items():
        monkeypatch.setenv(name, value)
    server.add("/bucket/slow.bin", route)
    partial = PartialFile(tmp_path / "slow.part")

    def run() -> None:
        download(
            "s3://bucket/slow.bin", expect(), partial, S3Transport(SHORT), policy=TWO_TRIES,
            limits=SHORT, sleep=lambda _: None,
        )  # fmt: skip

    failure = failure_of(run)
    assert failure.failure == FailureClass.UNREACHABLE
    assert message in failure.reason and "gave up after 2 attempts" in failure.reason


@pytest.mark.parametrize("scheme", ["http", "s3"])
def test_ctrl_c_while_the_server_is_silent_stops_at_once(
    server: MisbehavingServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scheme: str
) -> None:
    for name, value in s3_environment(server).items():
        monkeypatch.setenv(name, value)
    server.add("/bucket/silent.bin", Route(DATA, "stall", cut=10_000))
    patient = TransferLimits(stall_timeout=3600.0)  # far beyond the hang guard
    url = "s3://bucket/silent.bin" if scheme == "s3" else server.url("/bucket/silent.bin")
    transport = S3Transport(patient) if scheme == "s3" else HttpTransport(limits=patient)
    partial = PartialFile(tmp_path / "silent.part")
    cancel = threading.Event()

    def press_ctrl_c_soon(done: int, total: int | None) -> None:
        if done == 0:  # the body has started: the read after the first bytes will wait
            threading.Timer(0.5, cancel.set).start()

    def run() -> None:
        download(
            url, expect(), partial, transport, limits=patient, on_progress=press_ctrl_c_soon,
            cancel=cancel,
        )  # fmt: skip

    with pytest.raises(Cancelled):
        bounded(run)
    assert partial.size() <= 10_000  # what had arrived is kept for the next run


def test_progress_never_reads_past_its_total_in_any_phase() -> None:
    from rich.console import Console
    from rich.progress import DownloadColumn, Progress

    from vcat.catalog.schema import Source
    from vcat.fetch.runner import _reporter

    source = Source.model_validate(
        {
            "name": "scenes",
            "url": "https://example.org/a.tar.gz",
            "filename": "a.tar.gz",
            "size": 1000,
            "checksum": "unpublished",
            "archive": "tar.gz",
        }
    )
    with Progress(console=Console(file=io.StringIO()), auto_refresh=False) as bar:
        task = bar.add_task("scenes", total=1000)
        report = _reporter(bar, task, source)
        report("download", 1200, 1000)  # a server that sends more than it announced
        assert bar.tasks[0].completed == 1000 and bar.tasks[0].percentage == 100
        report("verify", 1000, 1000)
        report("extract", 3_700, None)  # unpacked bytes, whose total nobody knows
        assert bar.tasks[0].total is None and bar.tasks[0].completed == 3_700
        assert str(DownloadColumn().render(bar.tasks[0])) == "3.7/? kB"  # not "3.7/1.0 kB"
        report("verify", 10, 1000)
        assert bar.tasks[0].total == 1000 and bar.tasks[0].percentage == 1
