"""Cutting a stream of pair headers into tasks, and running tasks on processes in order.

Real crop lists give consecutive headers that share an image (one image paired with several
others), so a task is a run of consecutive headers, closed once it holds ``task_pairs`` pairs
at a header that shares no image with the one before it (or at four times that, whatever the
images): each image is then decoded once per task, and tasks are small enough to spread over
the processes. Results come back in task order whatever the number of processes, so what is
written never depends on it.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Iterable, Iterator

from vcat.croco.crops_file import PairHeader
from vcat.croco.extract import ExtractSettings, PairResult, Task, run_task
from vcat.processes import ordered_map

TaskResult = list[tuple[int, PairResult]]


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


def run_tasks(
    tasks: Iterable[Task], settings: ExtractSettings, jobs: int
) -> Iterator[tuple[Task, TaskResult]]:
    """Each task with its results, in the order given, computed on ``jobs`` processes (in this
    process when ``jobs`` is 1) with at most ``4 * jobs`` tasks in flight. A worker that dies
    raises ``WorkerDied``, saying what to do."""
    submitted: deque[Task] = deque()

    def recorded() -> Iterator[Task]:
        for task in tasks:
            submitted.append(task)
            yield task

    work = functools.partial(run_task, settings=settings)
    advice = "lower jobs or cache_images; what was sealed is kept, run the stage again to resume"
    for result in ordered_map(work, recorded(), jobs, ahead=4 * jobs, advice=advice):
        yield submitted.popleft(), result
