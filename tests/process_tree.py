"""The processes a test started, read from /proc: to kill one worker of a running stage."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    """Whether ``pid`` is a live process (not gone, not a zombie waiting to be reaped)."""
    try:
        stat = (Path("/proc") / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def command_line(pid: int) -> str:
    """The command line of ``pid``, its arguments joined by spaces ("" once it has ended)."""
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_worker_and_read_error(process: subprocess.Popen[bytes], worker: int) -> str:
    """SIGKILL ``worker`` of ``process`` (started with ``stderr=PIPE``); the stage's error
    output once it has ended, after checking that it ended as a killed worker must: exit 2,
    one line saying so, no traceback."""
    os.kill(worker, signal.SIGKILL)
    _, error = process.communicate(timeout=60)
    text = error.decode()
    assert process.returncode == 2, text
    assert "Traceback" not in text
    assert "a worker process ended abruptly (killed by signal 9" in text
    return text
