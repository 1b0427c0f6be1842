"""Cutting a stream of pair headers into tasks, and running tasks on processes in order.

Real crop lists give consecutive headers that share an image (one image paired with several
others), so a task is a run of consecutive headers, closed once it holds ``task_pairs`` pairs
at a header that shares no image with the one before it (or at four times that, whatever the
images): each image is then decoded once per task, and tasks are small enough to spread over
the processes. Results come back in task order whatever the number of processes, so what is
written never depends on it.
"""

from __future__ import annotations

import multiprocessing
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from vcat.croco.crops_file import PairHeader
from vcat.croco.extract import ExtractSettings, PairResult, Task, run_task

TaskResult = list[tuple[int, PairResult]]


class WorkerDied(Exception):
    """A worker process ended abruptly (killed, out of memory); what was written is kept."""


MIN_TASK_PAIRS = 16
TASKS_PER_RUN = 16  # a short run is still cut into this many tasks, for the processes to share


def task_size(pairs: int, task_pairs: int) -> int:
    """The pairs per task for a run of ``pairs``: ``task_pairs``, or less for a short run
    (at least MIN_TASK_PAIRS). It depends on the run alone, never on the processes."""
    return max(MIN_TASK_PAIRS, min(task_pairs, -(-pairs // TASKS_PER_RUN)))


def group_headers(headers: Iterable[PairHeader], task_pairs: int) -> Iterator[list[PairHeader]]:
    """``headers`` in order, cut into runs as the module docstring says (headers without crops
    are dropped: they make nothing)."""
    run: list[PairHeader] = []
    pairs = 0
    for header in headers:
        if not header.crops:
            continue
        if run and pairs >= task_pairs:
            last = run[-1]
            shares = {header.image1, header.image2} & {last.image1, last.image2}
            if not shares or pairs >= 4 * task_pairs:
                yield run
                run, pairs = [], 0
        run.append(header)
        pairs += len(header.crops)
    if run:
        yield run


def _ignore_interrupt() -> None:
    # Ctrl-C reaches the whole process group: the parent stops the pool and keeps what is done
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_tasks(
    tasks: Iterable[Task], settings: ExtractSettings, jobs: int
) -> Iterator[tuple[Task, TaskResult]]:
    """Each task with its results, in the order given, computed on ``jobs`` processes (in this
    process when ``jobs`` is 1) with at most ``4 * jobs`` tasks in flight."""
    if jobs <= 1:
        for task in tasks:
            yield task, run_task(task, settings)
        return
    context = multiprocessing.get_context("forkserver")
    pending: deque[tuple[Task, Future[TaskResult]]] = deque()
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_ignore_interrupt)
    try:
        for task in tasks:
            pending.append((task, pool.submit(run_task, task, settings)))
            if len(pending) >= 4 * jobs:
                task, future = pending.popleft()
                yield task, future.result()
        while pending:
            task, future = pending.popleft()
            yield task, future.result()
    except BrokenProcessPool:
        raise WorkerDied(
            "a worker process ended abruptly (killed, or out of memory: lower jobs or "
            "cache_images); what was sealed is kept, run the stage again to resume"
        ) from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
