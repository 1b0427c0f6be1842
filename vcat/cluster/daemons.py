"""Programs that run in the foreground in their own session, known by pid and command line.

The cluster's daemons all run in the foreground (``-D``/``-F``), started with
:func:`start_daemon`, so that their pid is the one that :class:`subprocess.Popen` returns and
nothing depends on their own pid files. A recorded pid may have been reused since, so
:func:`daemon_alive` also checks that the process's command line names the cluster folder.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class DaemonError(RuntimeError):
    """A daemon that would not start or answer; the message names its log."""


def start_daemon(
    command: Sequence[str], log: Path, environment: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """``command`` in a session of its own (a Ctrl-C at the terminal does not reach it), its
    output appended to ``log``; files it creates are for this user only."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        return subprocess.Popen(
            list(command),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=None if environment is None else dict(environment),
            start_new_session=True,
            umask=0o077,
        )


def daemon_alive(pid: int | None, marker: Path) -> bool:
    """True when ``pid`` is a live process (not a zombie) whose command line or environment
    mentions ``marker`` (the cluster folder): slurmdbd takes no path argument, but it runs
    with ``SLURM_CONF`` set."""
    if pid is None:
        return False
    proc = Path(f"/proc/{pid}")
    try:
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        words = (proc / "cmdline").read_bytes().split(b"\0")
        words += (proc / "environ").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    needle = str(marker).encode()
    return state not in ("Z", "X") and any(needle in word for word in words)


def stop_daemon(pid: int | None, marker: Path, grace: float = 10.0) -> bool:
    """SIGTERM to the daemon's process group, SIGKILL after ``grace`` seconds; True when a
    process was stopped, False when none of ours was running under ``pid``."""
    if pid is None or not daemon_alive(pid, marker):
        return False
    for sent, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pid, sent)
        except ProcessLookupError:
            return True
        except PermissionError:
            os.kill(pid, sent)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            _reap(pid)
            if not daemon_alive(pid, marker):
                return True
            time.sleep(0.05)
    return not daemon_alive(pid, marker)


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status when it is this process's child (a test's fixture)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def wait_until(
    ready: Callable[[], bool],
    process: subprocess.Popen[bytes],
    name: str,
    logs: Sequence[Path],
    timeout: float = 60.0,
) -> None:
    """Poll ``ready()`` until it is true; DaemonError quoting the first of ``logs`` that has
    something in it when ``process`` exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if ready():
            return
        code = process.poll()
        if code is not None:
            raise DaemonError(f"{name} exited with {code} while starting: {tail(logs)}")
        if time.monotonic() >= deadline:
            raise DaemonError(f"{name} did not answer within {timeout:.0f} s: {tail(logs)}")
        time.sleep(0.1)


def tail(logs: Sequence[Path], lines: int = 3) -> str:
    """The last ``lines`` lines of the first of ``logs`` that has any, on one line, then
    where that log is."""
    for log in logs:
        try:
            text = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            continue
        if text:
            return " | ".join(line.strip() for line in text[-lines:]) + f" (log: {log})"
    return f"it wrote nothing (logs: {', '.join(map(str, logs))})"
