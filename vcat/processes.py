"""Running a function over items on worker processes, in order, surviving a killed worker.

``concurrent.futures`` and ``multiprocessing.Pool`` share one task pipe and one result pipe
among all workers, each guarded by a lock a worker holds while it reads or writes. A worker
killed at the wrong moment (SIGKILL, the out-of-memory killer) hangs the run instead of failing
it: killed while writing a large result, it leaves half a message that the pool's reader waits
on forever; killed while holding a lock, the other workers wait for it forever; ``Pool`` even
replaces the dead worker and waits forever for its task. Here each worker has a pipe of its own
and holds no lock anyone else needs; it writes its result to a file and sends back only the
file's name, a message short enough for the kernel to write in one piece (PIPE_BUF). The
parent waits on the pipes and on the processes' exit together, so a dead worker ends the run
with ``WorkerDied`` at once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Literal, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
StartMethod = Literal["fork", "forkserver", "spawn"]

#: how long idle workers get to leave on their own once the run ends, before they are killed
EXIT_GRACE_S = 1.0
#: items a worker holds at once: the one it works on and the next, waiting in its pipe, so
#: that it never idles while this process is busy with a result
PER_WORKER = 2


class WorkerDied(Exception):
    """A worker process ended abruptly (killed, out of memory) before the run was over."""


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity: what a container or ``taskset`` left)."""
    return len(os.sched_getaffinity(0))


def ordered_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    jobs: int,
    *,
    start_method: StartMethod = "forkserver",
    ahead: int | None = None,
    advice: str = "lower jobs, and run again",
) -> Iterator[Result]:
    """``function(item)`` for each item, in the order given, computed on ``jobs`` processes (in
    this process when ``jobs`` is 1) with at most ``ahead`` items (default ``2 * jobs``) taken
    from ``items`` and not yet yielded. Items should be small (names, indices, headers: they
    go through a pipe); results may be large. ``function`` must be importable by the workers (a
    module-level function, or a ``functools.partial`` of one) unless ``start_method`` is
    ``fork``. An exception ``function`` raises comes back here as itself.

    Workers ignore Ctrl-C, which reaches the whole process group: the interrupt is raised here
    and the items in flight are dropped. A worker that dies raises ``WorkerDied`` with
    ``advice`` (what the user should do); what was yielded before stays valid. Workers start
    at the first item, so what the caller set up before iterating (module globals) is theirs
    with ``fork``, without pickling."""
    if jobs <= 1:
        yield from map(function, items)
        return
    ahead = max(jobs, ahead if ahead is not None else 2 * jobs)
    context = multiprocessing.get_context(start_method)
    with tempfile.TemporaryDirectory(prefix="vcat-results-") as folder:
        workers: list[_Worker] = []
        for _ in range(jobs):
            workers.append(_Worker.start(context, function, folder, workers))
        try:
            yield from _ordered(workers, iter(items), ahead, advice)
        finally:
            _stop(workers)


@dataclass
class _Worker:
    process: BaseProcess
    connection: Connection
    items: deque[int] = field(default_factory=deque)  # indices sent and not answered, in order

    @staticmethod
    def start(
        context: Any, function: Callable[[Any], Any], folder: str, others: list[_Worker]
    ) -> _Worker:
        """A new worker; ``others`` are the workers started before it."""
        here, there = context.Pipe(duplex=True)
        # a forked worker inherits this process's ends of its own pipe and of the others'
        # pipes: it closes them, or its pipe would never read as closed once this process dies
        # and it would wait for ever
        inherited = [here, *(other.connection for other in others)]
        parent_ends = inherited if context.get_start_method() == "fork" else []
        process = context.Process(
            target=_serve, args=(there, function, folder, parent_ends), daemon=True
        )
        process.start()
        there.close()  # so that a dead worker's pipe reads as closed here
        return _Worker(process, here)


def _ordered(
    workers: list[_Worker], items: Iterator[Any], ahead: int, advice: str
) -> Iterator[Any]:
    done: dict[int, str] = {}  # index -> the file holding its outcome
    taken = yielded = 0
    exhausted = False
    while True:
        for worker in sorted(workers, key=lambda worker: len(worker.items)):
            while len(worker.items) < PER_WORKER and not exhausted and taken - yielded < ahead:
                try:
                    item = next(items)
                except StopIteration:
                    exhausted = True
                    break
                _send(worker, (taken, item), advice)
                worker.items.append(taken)
                taken += 1
        while yielded in done:
            value = _load(done.pop(yielded))
            yielded += 1
            yield value
        if exhausted and yielded == taken:
            return
        busy = [worker for worker in workers if worker.items]
        if not busy:
            continue  # all that was sent is yielded: take more
        waiting = [worker.connection for worker in busy]
        ready = wait(waiting + [worker.process.sentinel for worker in workers])
        for worker in busy:
            if worker.connection in ready:
                index, name = _receive(worker, advice)
                done[index] = name
                worker.items.remove(index)
        for worker in workers:
            if worker.process.sentinel in ready and not worker.process.is_alive():
                raise _died(worker, advice)


def _send(worker: _Worker, message: tuple[int, Any], advice: str) -> None:
    try:
        worker.connection.send(message)
    except (BrokenPipeError, ConnectionResetError):
        raise _died(worker, advice) from None


def _receive(worker: _Worker, advice: str) -> tuple[int, str]:
    try:
        index, name = worker.connection.recv()
    except (EOFError, ConnectionResetError):
        raise _died(worker, advice) from None
    return index, name


def _died(worker: _Worker, advice: str) -> WorkerDied:
    worker.process.join(EXIT_GRACE_S)
    code = worker.process.exitcode
    how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return WorkerDied(
        f"a worker process ended abruptly ({how}: killed, or out of memory); {advice}"
    )


def _stop(workers: list[_Worker]) -> None:
    """Idle workers leave when told to; busy or stuck ones are killed after EXIT_GRACE_S."""
    for worker in workers:
        with contextlib.suppress(OSError):
            worker.connection.send(None)
    deadline = time.monotonic() + EXIT_GRACE_S
    for worker in workers:
        worker.process.join(max(0.0, deadline - time.monotonic()))
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        worker.connection.close()


def _serve(
    connection: Connection,
    function: Callable[[Any], Any],
    folder: str,
    parent_ends: list[Connection],
) -> None:
    """A worker's loop: each ``(index, item)`` received is answered with ``(index, file)``, the
    file holding the pickled outcome; ``None``, or the parent gone, ends it."""
    # Ctrl-C reaches the whole process group: the parent stops the run and keeps what is done
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for end in parent_ends:
        end.close()
    try:
        while (message := connection.recv()) is not None:
            index, item = message
            connection.send((index, _call_into_file(function, item, folder)))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the parent ended (killed): nobody wants the result


def _call_into_file(function: Callable[[Any], Any], item: Any, folder: str) -> str:
    try:
        outcome: tuple[bool, object] = (True, function(item))
    except Exception as error:
        outcome = (False, error)
    descriptor, name = tempfile.mkstemp(dir=folder, suffix=".pickle")
    with os.fdopen(descriptor, "wb") as file:
        try:
            pickle.dump(outcome, file, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:  # what does not pickle comes back as text
            file.seek(0)
            file.truncate()
            shown = outcome[1] if not outcome[0] else error
            text = f"{type(shown).__name__}: {shown}"
            pickle.dump((False, RuntimeError(text)), file)
    return name


def _load(name: str) -> Any:
    path = Path(name)
    try:
        with path.open("rb") as file:
            succeeded, value = pickle.load(file)
    finally:
        path.unlink(missing_ok=True)
    if not succeeded:
        raise value
    return value
