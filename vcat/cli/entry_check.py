"""Checking a command's entry while the command hashes: the same verdict, off the critical path.

``vcat manifest build`` and ``vcat verify --manifest`` refuse an entry that `vcat catalog
lint` refuses, like every command. Checking it means importing the catalog schema and
validating, about 0.4 s of one core; the hashing that follows needs nothing of it. So
``entry_checked`` forks a child that runs ``load_entry`` (and an optional ``extract`` of
what the command needs from the entry, as JSON) while the parent lists and hashes with its
threads. The command asks for the verdict (``EntryVerdict.result``) before it writes or
prints anything; an invalid entry ends it with the same messages and exit code 2 as an
inline check, and nothing written. Hashing also polls the verdict, so a refused entry stops
a long hash within a progress tick of the child's answer.

The child is forked only from a single-threaded process (forking beside other threads can
leave a lock held forever in the child), and only where ``os.fork`` exists; otherwise the
check runs inline first, as it always did.
"""

from __future__ import annotations

import json
import os
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from vcat.console import fail, stderr

if TYPE_CHECKING:
    from vcat.catalog.loader import Entry

#: What the command needs of the entry, computed where the entry was loaded; JSON-able.
Extract = Callable[["Entry"], Any]
#: The child's exit status when it could not even report (it always tries to).
_UNREPORTED = 70


class EntryRefused(Exception):
    """The entry did not pass; ``output`` is what the check printed, ``code`` its exit code."""

    def __init__(self, output: str, code: int) -> None:
        super().__init__(f"the entry was refused (exit {code})")
        self.output = output
        self.code = code


class EntryVerdict:
    """The verdict on one entry: ready at once (inline) or coming from a forked child."""

    def __init__(self, pid: int | None, reader: int | None, verdict: dict[str, Any] | None):
        self._pid = pid
        self._reader = reader
        self._received = bytearray()
        self._verdict = verdict

    @classmethod
    def start(cls, name: str, catalog_dir: Path | None, extract: Extract | None) -> EntryVerdict:
        if not hasattr(os, "fork") or threading.active_count() > 1:
            return cls(None, None, _check(name, catalog_dir, extract))
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, and leave without running the parent's clean-ups
            os.close(reader)
            _report(writer, name, catalog_dir, extract)
        os.close(writer)
        os.set_blocking(reader, False)
        return cls(pid, reader, None)

    def poll(self) -> None:
        """Raise ``EntryRefused`` when the child has answered that the entry fails; never
        waits."""
        if self._verdict is None and self._reader is not None:
            self._read(block=False)
        self._raise_if_refused()

    def result(self) -> Any:
        """What ``extract`` returned for the entry; waits for the child. Raises
        ``EntryRefused`` when the entry fails."""
        if self._verdict is None:
            self._read(block=True)
        self._raise_if_refused()
        assert self._verdict is not None
        return self._verdict["payload"]

    def fail(self, message: str, code: int = 2) -> NoReturn:
        """``vcat.console.fail`` once the entry has passed: an invalid entry is what is
        reported, as when it was checked first."""
        self.result()
        fail(message, code)

    def close(self) -> None:
        """Stop and reap a child that is still running (the command ended first)."""
        if self._reader is not None:
            os.close(self._reader)
            self._reader = None
        if self._pid is not None:
            with suppress(ProcessLookupError):
                os.kill(self._pid, 9)
            with suppress(ChildProcessError):
                os.waitpid(self._pid, 0)
            self._pid = None

    def _read(self, block: bool) -> None:
        assert self._reader is not None
        os.set_blocking(self._reader, block)
        while True:
            try:
                chunk = os.read(self._reader, 1 << 16)
            except BlockingIOError:
                return
            if not chunk:
                break
            self._received += chunk
        self._verdict = self._decode()
        self.close()

    def _decode(self) -> dict[str, Any]:
        try:
            verdict = json.loads(self._received)
        except ValueError:
            verdict = None
        if not isinstance(verdict, dict):
            status = self._reap()
            raise RuntimeError(f"checking the entry ended without an answer (status {status})")
        if verdict.get("crash"):
            raise RuntimeError(f"checking the entry failed:\n{verdict['crash']}")
        return verdict

    def _reap(self) -> int | None:
        if self._pid is None:
            return None
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return os.waitstatus_to_exitcode(status)

    def _raise_if_refused(self) -> None:
        if self._verdict is not None and self._verdict["code"]:
            raise EntryRefused(self._verdict["output"], self._verdict["code"])


@contextmanager
def entry_checked(
    name: str, catalog_dir: Path | None, extract: Extract | None = None
) -> Iterator[EntryVerdict]:
    """An ``EntryVerdict`` of ``name`` for the duration of the block.

    When the entry fails, the command ends here with the check's messages and exit code,
    whatever the block was doing or failed with; the block takes ``check.result()`` before
    it writes anything, and reports its own errors with ``check.fail``, so that an invalid
    entry is the one error printed, as when it was checked first.
    """
    check = EntryVerdict.start(name, catalog_dir, extract)
    try:
        try:
            check.poll()  # an inline check has answered already: nothing runs after a refusal
            yield check
        except EntryRefused:
            raise
        except Exception:
            check.result()  # an invalid entry is the error to report, not what followed it
            raise
    except EntryRefused as refused:
        stderr.file.write(refused.output)
        stderr.file.flush()
        raise typer.Exit(refused.code) from None
    finally:
        check.close()


def _check(name: str, catalog_dir: Path | None, extract: Extract | None) -> dict[str, Any]:
    """``load_entry`` with its printing captured: ``{"code", "output", "payload"}``."""
    from vcat.cli.common import load_entry

    code, payload = 0, None
    with stderr.capture() as captured:
        try:
            entry = load_entry(name, catalog_dir)
            payload = extract(entry) if extract is not None else None
        except typer.Exit as exc:
            code = exc.exit_code
    return {"code": code, "output": captured.get(), "payload": payload}


def _report(writer: int, name: str, catalog_dir: Path | None, extract: Extract | None) -> None:
    status = 0
    try:
        try:
            verdict = _check(name, catalog_dir, extract)
        except KeyboardInterrupt:
            os._exit(130)
        except BaseException:
            verdict = {"code": 1, "output": "", "payload": None, "crash": traceback.format_exc()}
        data = json.dumps(verdict).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(writer, view) :]
    except BaseException:
        status = _UNREPORTED
    finally:
        os._exit(status)
