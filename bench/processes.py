"""vcat.processes.ordered_map against concurrent.futures' ProcessPoolExecutor.map, in one run.

ordered_map brings each result back through a file so that a killed worker cannot hang the
run; this measures what that costs where it costs most: results of ``--result-mb`` MB each
(croco-crops' and video-frames' tasks return about that much JPEG data) from a function that
does ``--work-ms`` of work, while the consumer spends ``--consume-ms`` on each result (writing
it to a shard, say: the workers must not wait for it). Both run the same items on the same
number of processes (forked), round robin over ``--repeats``; the median wall time of each and
their ratio are printed. Target: ordered_map at 0.9x of the executor's throughput or better.

    python bench/processes.py [--items 200] [--result-mb 1] [--work-ms 20] [--consume-ms 5]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor

from vcat.processes import ordered_map

TARGET = 0.9
Work = Callable[[int], bytes]


def busy(seconds: float) -> None:
    """CPU work for ``seconds`` (a busy loop, as decoding or encoding would be)."""
    deadline = time.process_time() + seconds
    while time.process_time() < deadline:
        pass


def make_result(size: int, work_s: float, index: int) -> bytes:
    """``size`` bytes after ``work_s`` of CPU work."""
    busy(work_s)
    return bytes([index % 256]) * size


def consume(results: Iterable[bytes], consume_s: float) -> int:
    total = 0
    for value in results:
        busy(consume_s)
        total += len(value)
    return total


def with_executor(function: Work, items: int, jobs: int, consume_s: float) -> int:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        return consume(pool.map(function, range(items)), consume_s)


def with_ordered_map(function: Work, items: int, jobs: int, consume_s: float) -> int:
    results = ordered_map(function, range(items), jobs, start_method="fork")
    return consume(results, consume_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--result-mb", type=float, default=1.0)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--consume-ms", type=float, default=5.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    size = int(args.result_mb * 2**20)
    function = functools.partial(make_result, size, args.work_ms / 1000)
    runs = {"ProcessPoolExecutor.map": with_executor, "ordered_map": with_ordered_map}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            total = run(function, args.items, args.jobs, args.consume_ms / 1000)
            times[name].append(time.perf_counter() - started)
            assert total == args.items * size, (name, total)
    print(
        f"{args.items} items of {args.result_mb:g} MB after {args.work_ms:g} ms of work, "
        f"{args.consume_ms:g} ms to consume each, {args.jobs} processes, median of {args.repeats}"
    )
    reference = statistics.median(times["ProcessPoolExecutor.map"])
    for name, values in times.items():
        median = statistics.median(values)
        rate = args.items / median
        print(f"  {name:<24} {median:6.2f} s  {rate:7.1f} items/s  {reference / median:.2f}x")
    ratio = reference / statistics.median(times["ordered_map"])
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"ordered_map at {ratio:.2f}x of the executor: {verdict} the {TARGET}x target")


if __name__ == "__main__":
    main()
