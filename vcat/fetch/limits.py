"""How long a transfer may stall or crawl, and how large a file of unknown size may grow.

``TransferLimits()`` holds the defaults, the one place ``vcat fetch``'s options, the Python
API and the image-download stage take them from. ``GuardedReader`` applies them to any
body that can hand over the bytes it has as they arrive (``read1``): a transfer that stalls
or crawls ends as a ``TransientError`` naming what happened, so it is retried and resumed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vcat.catalog.fields import approximate_bytes
from vcat.failures import FailureClass
from vcat.fetch.transport import BLOCK_SIZE, TransientError


def byte_count(text: str) -> int:
    """The bytes a size such as ``500M``, ``2GiB`` or ``1024`` stands for (``ValueError``)."""
    return approximate_bytes(text)


#: A stalled connection: no byte for this long (seconds).
STALL_TIMEOUT = 60.0
#: A crawling connection: fewer bytes per second than this, averaged over ``SPEED_WINDOW``.
MIN_SPEED_TEXT = "1KiB"
MIN_SPEED = byte_count(MIN_SPEED_TEXT)
SPEED_WINDOW = 60.0
#: The most bytes a source without a declared size may have (1 TiB: larger than any single
#: file of the datasets we know, smaller than a disk that holds one); declare the size to lift it.
MAX_SIZE_TEXT = "1TiB"
MAX_SIZE = byte_count(MAX_SIZE_TEXT)
#: How long opening a connection may take (seconds).
CONNECT_TIMEOUT = 15.0
#: An attempt that stalled or crawled counts as progress only if it brought this much.
SLOW_PROGRESS = 1 << 20
#: Blocks are handed on at least this often, so progress and Ctrl-C are seen on slow links.
FLUSH_INTERVAL = 0.25


@dataclass(frozen=True)
class TransferLimits:
    """Bounds on one transfer; ``min_speed=0`` turns the speed check off."""

    stall_timeout: float = STALL_TIMEOUT
    min_speed: int = MIN_SPEED
    speed_window: float = SPEED_WINDOW
    max_size: int = MAX_SIZE
    connect_timeout: float = CONNECT_TIMEOUT

    def __post_init__(self) -> None:
        if self.stall_timeout <= 0 or self.speed_window <= 0 or self.connect_timeout <= 0:
            raise ValueError("timeouts and the speed window must be positive")
        if self.min_speed < 0 or self.max_size < 0:
            raise ValueError("the minimum speed and the maximum size cannot be negative")

    @classmethod
    def from_options(
        cls, stall_timeout: float, min_speed: str, speed_window: float, max_size: str
    ) -> TransferLimits:
        """The limits of a command line's options; ``ValueError`` names the bad option."""
        counts = {}
        for option, text in (("--min-speed", min_speed), ("--max-size", max_size)):
            try:
                counts[option] = byte_count(text)
            except ValueError as exc:
                raise ValueError(f"{option}: {exc}") from None
        if stall_timeout <= 0 or speed_window <= 0:
            raise ValueError("--stall-timeout and --speed-window must be positive")
        return cls(stall_timeout, counts["--min-speed"], speed_window, counts["--max-size"])


def stalled_reason(url: str, limits: TransferLimits) -> str:
    return f"{url}: no byte arrived for {limits.stall_timeout:g} s (the transfer stalled)"


def broken_transfer(url: str, exc: BaseException, limits: TransferLimits) -> TransientError:
    """The retryable failure for an error raised while a body was read: a socket timeout is
    a stall, anything else a broken connection."""
    if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
        return TransientError(FailureClass.UNREACHABLE, stalled_reason(url, limits), slow=True)
    return TransientError(FailureClass.TRUNCATED, f"{url}: the connection broke")


class SpeedCheck:
    """Raises ``TransientError`` once the bytes of the last ``speed_window`` seconds
    average under ``min_speed`` bytes/s (never during the first window)."""

    def __init__(
        self, url: str, limits: TransferLimits, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.url = url
        self.limits = limits
        self.clock = clock
        self.started = clock()
        self.total = 0
        self._samples: deque[tuple[float, int]] = deque([(self.started, 0)])

    def arrived(self, count: int) -> None:
        now = self.clock()
        self.total += count
        self._samples.append((now, self.total))
        if self.limits.min_speed <= 0:
            return
        horizon = now - self.limits.speed_window
        while len(self._samples) > 1 and self._samples[1][0] <= horizon:
            self._samples.popleft()  # keep one sample at or before the window's start
        since, base = self._samples[0]
        if since > horizon:
            return  # the first window is not over yet
        speed = (self.total - base) / max(now - since, 1e-9)
        if speed < self.limits.min_speed:
            raise TransientError(
                FailureClass.UNREACHABLE,
                f"{self.url}: {speed:,.0f} bytes/s over the last {now - since:.0f} s, under "
                f"the minimum of {self.limits.min_speed:,} (the transfer crawled)",
                slow=True,
            )


class GuardedReader:
    """Blocks from ``read1`` (returns what has arrived, ``b""`` at the end), checked by a
    ``SpeedCheck``. Stalls are the transport's socket timeout, which ``read1`` raises."""

    def __init__(
        self,
        read1: Callable[[int], bytes],
        url: str,
        limits: TransferLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._read1 = read1
        self._check = SpeedCheck(url, limits, clock)
        self._clock = clock
        self._ended = False
        self._pending: Exception | None = None

    def read_some(self) -> bytes:
        """The next bytes to arrive (``b""`` once the body has ended)."""
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error
        if self._ended:
            return b""
        data = self._read1(BLOCK_SIZE)
        if not data:
            self._ended = True
            return b""
        self._check.arrived(len(data))
        return data

    def read_at_least(self, count: int) -> bytes:
        """At least ``count`` bytes, or all there is when the body is shorter. An error after
        some bytes arrived is raised by the next read, so those bytes are not lost."""
        parts, have = [], 0
        while have < count:
            try:
                data = self.read_some()
            except Exception as exc:
                if not parts:
                    raise
                self._pending = exc
                break
            if not data:
                break
            parts.append(data)
            have += len(data)
        return b"".join(parts)

    def blocks(self) -> Iterator[bytes]:
        """Blocks of up to about ``BLOCK_SIZE``, handed on every ``FLUSH_INTERVAL`` at most."""
        parts: list[bytes] = []
        have = 0
        flushed = self._clock()
        while True:
            try:
                data = self.read_some()
            except BaseException:
                if parts:  # what arrived before the failure is kept, to resume after it
                    yield b"".join(parts)
                raise
            if not data:
                break
            parts.append(data)
            have += len(data)
            now = self._clock()
            if have >= BLOCK_SIZE or now - flushed >= FLUSH_INTERVAL:
                yield b"".join(parts)
                parts, have, flushed = [], 0, now
        if parts:
            yield b"".join(parts)


DEFAULT_LIMITS = TransferLimits()
