"""vcat.processes.ordered_map: results in order on real worker processes, and a worker killed at
any moment (busy, idle, writing a large result) ends the run with WorkerDied, never a hang."""

from __future__ import annotations

import functools
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.no_hang import no_hang
from tests.process_tree import running
from vcat.processes import WorkerDied, ordered_map

# --- functions the workers run (module level: importable by spawned workers) ----------------


def square_after(index: int) -> int:
    time.sleep(0.002 * (index % 5))  # later items often finish first
    return index * index


def own_pid(_: object) -> int:
    return os.getpid()


def fails_on(bad: int, index: int) -> int:
    if index == bad:
        raise ValueError(f"item {index} is bad")
    return index


class Unpicklable(Exception):
    def __init__(self, handle: object) -> None:
        super().__init__("holds a lock")
        self.handle = handle


def raises_unpicklable(_: int) -> int:
    raise Unpicklable(threading.Lock())


def block(index: int) -> bytes:
    return bytes([index % 256]) * 4_000_000


def pid_then_sleep(folder: str, index: int) -> int:
    """Item 0 returns at once; the others write their worker's pid and sleep."""
    if index == 0:
        return os.getpid()
    (Path(folder) / f"{index}.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return index


GLOBAL_SET_BEFORE = {"value": 0}


def read_global(_: int) -> int:
    return GLOBAL_SET_BEFORE["value"]


def wait_for_pid(path: Path, seconds: float = 30) -> int:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text():
            return int(path.read_text())
        time.sleep(0.01)
    raise AssertionError(f"{path} never appeared")


def leftover_workers() -> list[multiprocessing.Process]:
    return multiprocessing.active_children()


# --- results ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_results_come_back_in_order_whatever_finishes_first(start_method: str) -> None:
    with no_hang(60):
        results = list(ordered_map(square_after, range(60), 3, start_method=start_method))  # type: ignore[arg-type]
    assert results == [index * index for index in range(60)]
    assert not leftover_workers()


def test_one_job_runs_in_this_process_and_several_do_not() -> None:
    assert set(ordered_map(own_pid, range(5), 1)) == {os.getpid()}
    with no_hang(60):
        pids = set(ordered_map(own_pid, range(40), 2))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_no_more_items_are_taken_than_ahead_allows() -> None:
    taken: list[int] = []

    def items() -> object:
        for index in range(100):
            taken.append(index)
            yield index

    with no_hang(60):
        results = ordered_map(square_after, items(), 2, ahead=4)  # type: ignore[arg-type]
        assert next(results) == 0
        assert len(taken) <= 5  # the 4 in flight, and at most the one that waited for a worker
        results.close()


def test_an_exception_comes_back_as_itself_after_the_results_before_it() -> None:
    got: list[int] = []
    with no_hang(60), pytest.raises(ValueError, match="item 7 is bad"):
        for value in ordered_map(functools.partial(fails_on, 7), range(20), 2):
            got.append(value)
    assert got == list(range(7))
    assert not leftover_workers()


def test_an_exception_that_does_not_pickle_comes_back_as_text() -> None:
    with no_hang(60), pytest.raises(RuntimeError, match="Unpicklable: holds a lock"):
        list(ordered_map(raises_unpicklable, range(4), 2))


def test_large_results_come_back_whole() -> None:
    with no_hang(60):
        for index, value in enumerate(ordered_map(block, range(12), 2)):
            assert len(value) == 4_000_000 and value[0] == value[-1] == index % 256


def test_fork_workers_see_what_was_set_before_the_first_item() -> None:
    GLOBAL_SET_BEFORE["value"] = 41
    try:
        with no_hang(60):
            assert set(ordered_map(read_global, range(6), 2, start_method="fork")) == {41}
    finally:
        GLOBAL_SET_BEFORE["value"] = 0


def test_the_results_folder_is_removed_when_the_consumer_stops_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with no_hang(60):
        results = ordered_map(block, range(50), 2)
        next(results)
        deadline = time.monotonic() + 30
        while not list(tmp_path.glob("vcat-results-*/*")) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(tmp_path.glob("vcat-results-*/*")), "no result waiting in the folder"
        results.close()
    assert not list(tmp_path.glob("vcat-results-*"))  # (multiprocessing keeps its pymp-* there)
    assert not leftover_workers()


# --- killed workers ---------------------------------------------------------------------------


def test_a_busy_worker_killed_ends_the_run_with_what_to_do(tmp_path: Path) -> None:
    work = functools.partial(pid_then_sleep, str(tmp_path))
    with no_hang(60):
        results = ordered_map(work, range(3), 2, advice="lower jobs; run again")
        assert next(results) != os.getpid()
        os.kill(wait_for_pid(tmp_path / "1.pid"), signal.SIGKILL)
        with pytest.raises(WorkerDied) as died:
            list(results)
    message = str(died.value)
    assert "ended abruptly (killed by signal 9" in message and message.endswith("run again")
    assert not leftover_workers()  # the other, still sleeping, was stopped


def test_an_idle_worker_killed_before_the_end_ends_the_run(tmp_path: Path) -> None:
    with no_hang(60):
        results = ordered_map(own_pid, range(40), 2, ahead=2)
        os.kill(next(results), signal.SIGKILL)
        with pytest.raises(WorkerDied):
            list(results)
    assert not leftover_workers()


def test_a_worker_killed_while_the_consumer_stops_does_not_hold_it(tmp_path: Path) -> None:
    with no_hang(60):
        results = ordered_map(own_pid, range(40), 2)
        os.kill(next(results), signal.SIGKILL)
        time.sleep(0.2)
        results.close()
    assert not leftover_workers()


@pytest.mark.parametrize("start_method", ["fork", "forkserver"])
def test_workers_killed_at_random_moments_never_hang_the_run(start_method: str) -> None:
    """Large results are being written when most kills land; each round ends either with every
    result right or with WorkerDied after right results only."""
    generator = random.Random(7)
    for _ in range(6):
        got: list[bytes] = []

        def kill_one_soon(delay: float) -> None:
            time.sleep(delay)
            alive = [child.pid for child in leftover_workers() if child.pid is not None]
            if alive:
                os.kill(generator.choice(alive), signal.SIGKILL)

        killer = threading.Thread(target=kill_one_soon, args=(generator.uniform(0.05, 0.4),))
        with no_hang(60):
            try:
                results = ordered_map(block, range(30), 2, start_method=start_method)  # type: ignore[arg-type]
                killer.start()
                for value in results:
                    got.append(value)
            except WorkerDied:
                pass
            killer.join()
        assert all(value == block(index) for index, value in enumerate(got))
        assert not leftover_workers()


PARENT = """
import multiprocessing, sys, time
sys.path.insert(0, {root!r})
from tests.test_processes import square_after
from vcat.processes import ordered_map
results = ordered_map(square_after, range(100), 2, start_method={method!r})
next(results)
print(*(child.pid for child in multiprocessing.active_children()), flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_workers_leave_when_the_process_that_started_them_is_killed(start_method: str) -> None:
    root = str(Path(__file__).resolve().parents[1])
    script = PARENT.format(root=root, method=start_method)
    with subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) as parent:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2
        parent.kill()
    deadline = time.monotonic() + 30
    while any(map(running, workers)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(map(running, workers)), "orphaned workers still waiting"


def test_ctrl_c_stops_the_workers_and_comes_back_here(tmp_path: Path) -> None:
    # Ctrl-C's own handler: a process a shell starts in the background inherits SIGINT ignored
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    work = functools.partial(pid_then_sleep, str(tmp_path))
    try:
        with no_hang(60):
            results = ordered_map(work, range(3), 2)
            next(results)
            wait_for_pid(tmp_path / "1.pid")
            timer = threading.Timer(0.1, os.kill, (os.getpid(), signal.SIGINT))
            timer.start()
            with pytest.raises(KeyboardInterrupt):
                list(results)
            timer.join()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert not leftover_workers()
