"""vcat.processes.ordered_map against concurrent.futures' ProcessPoolExecutor.map, in one run.

ordered_map brings each result back through a file so that a killed worker cannot hang the
run; this measures what that costs where it costs most: results of ``--result-mb`` MB each
(croco-crops' and video-frames' tasks return about that much JPEG data) from a function that
does ``--work-ms`` of work. Both run the same items on the same number of processes (forked),
round robin over ``--repeats``; the median wall time of each and their ratio are printed.
Target: ordered_map at 0.9x of the executor's throughput or better.

    python bench/processes.py [--items 200] [--result-mb 1] [--work-ms 20] [--jobs 2]
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

from vcat.processes import ordered_map

TARGET = 0.9


def make_result(size: int, work_s: float, index: int) -> bytes:
    """``size`` bytes after ``work_s`` of CPU work (a busy loop, as decoding would be)."""
    deadline = time.process_time() + work_s
    while time.process_time() < deadline:
        pass
    return bytes([index % 256]) * size


def with_executor(function: functools.partial[bytes], items: int, jobs: int) -> int:
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(jobs, mp_context=context) as pool:
        return sum(len(value) for value in pool.map(function, range(items)))


def with_ordered_map(function: functools.partial[bytes], items: int, jobs: int) -> int:
    return sum(
        len(value) for value in ordered_map(function, range(items), jobs, start_method="fork")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--result-mb", type=float, default=1.0)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    function = functools.partial(make_result, int(args.result_mb * 2**20), args.work_ms / 1000)
    runs = {"ProcessPoolExecutor.map": with_executor, "ordered_map": with_ordered_map}
    times: dict[str, list[float]] = {name: [] for name in runs}
    expected = args.items * int(args.result_mb * 2**20)
    for _ in range(args.repeats):
        for name, run in runs.items():
            started = time.perf_counter()
            total = run(function, args.items, args.jobs)
            times[name].append(time.perf_counter() - started)
            assert total == expected, (name, total)
    reference = statistics.median(times["ProcessPoolExecutor.map"])
    print(
        f"{args.items} items of {args.result_mb:g} MB after {args.work_ms:g} ms of work, "
        f"{args.jobs} processes, median of {args.repeats}"
    )
    for name, values in times.items():
        median = statistics.median(values)
        throughput = args.items / median
        print(f"  {name:<24} {median:6.2f} s  {throughput:7.1f} items/s  {reference / median:.2f}x")
    ratio = reference / statistics.median(times["ordered_map"])
    verdict = "meets" if ratio >= TARGET else "misses"
    print(f"ordered_map at {ratio:.2f}x of the executor: {verdict} the {TARGET}x target")


if __name__ == "__main__":
    main()
