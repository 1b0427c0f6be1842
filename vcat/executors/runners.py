"""Where shards run: local processes, or the tasks of a SLURM job array (submitit).

A runner starts shards and tells, when asked, which have ended and how. It keeps no retry
or progress logic: :mod:`vcat.executors.run` does that for both.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vcat.executors.settings import ExecutorSettings
from vcat.stage import StageError

#: Seconds a task may be out of the queue, without a result or an ended state in sacct,
#: before it counts as ended.
LEFT_GRACE_S = 10.0
#: SLURM job states after which a job will not run again by itself.
_ENDED = {
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "PREEMPTED",
    "BOOT_FAIL",
    "DEADLINE",
}


class SubmissionError(StageError):
    """SLURM did not take the shards' job array; says what to check."""


@dataclass(frozen=True)
class Ended:
    """How a shard's attempt ended: ``ok``, else why (``reason``), and where its log is."""

    ok: bool
    reason: str
    log: Path


class Runner(Protocol):
    #: Seconds between two polls: what one poll costs the machine the shards run on.
    poll_interval: float

    def start(self, shards: list[int], attempt: dict[int, int]) -> dict[int, str]:
        """Start ``shards``; the id of each one's job (recorded to re-attach to it)."""
        ...

    def attach(self, jobs: dict[int, str]) -> list[int]:
        """Follow jobs an earlier submitter started; the shards whose job still exists."""
        ...

    def poll(self) -> dict[int, Ended]:
        """The shards that ended since the last call."""
        ...

    def running(self) -> int:
        """Shards started and not ended."""
        ...

    def stop(self) -> None:
        """End every shard still running (the submitter is stopping)."""
        ...


# --- local processes -----------------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


@functools.cache
def _prctl() -> Any:
    return ctypes.CDLL(None, use_errno=True).prctl


def end_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that gives the child SIGTERM when its parent dies (a killed
    submitter leaves no shard running that a new one would start a second time). The C
    function is looked up here, in the parent: a child forked from a process with threads
    must not load anything before it execs."""
    prctl = _prctl()
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class LocalRunner:
    """Each shard a process of this machine running its command, its output in a log file.

    Processes are started from the calling thread: the kernel's parent-death signal follows
    the thread that forked, so starting them from a pool's threads would end them early."""

    poll_interval = 0.2  # a poll is a waitpid per process

    def __init__(self, command_of: dict[int, list[str]], logs: Path) -> None:
        self._command_of = command_of
        self._logs = logs
        self._processes: dict[int, tuple[subprocess.Popen[bytes], Path]] = {}

    def start(self, shards: list[int], attempt: dict[int, int]) -> dict[int, str]:
        self._logs.mkdir(parents=True, exist_ok=True)
        jobs = {}
        for index in shards:
            log = self._logs / f"shard-{index:05d}.attempt-{attempt.get(index, 1)}.log"
            with log.open("wb") as output:
                process = subprocess.Popen(
                    self._command_of[index],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    preexec_fn=end_with_parent(),
                )
            self._processes[index] = (process, log)
            jobs[index] = f"pid {process.pid}"
        return jobs

    def attach(self, jobs: dict[int, str]) -> list[int]:
        return []  # a local shard does not outlive its submitter

    def poll(self) -> dict[int, Ended]:
        ended = {}
        for index, (process, log) in list(self._processes.items()):
            code = process.poll()
            if code is None:
                continue
            del self._processes[index]
            ended[index] = Ended(code == 0, _exit_reason(code), log)
        return ended

    def running(self) -> int:
        return len(self._processes)

    def stop(self) -> None:
        for process, _ in self._processes.values():
            process.terminate()
        for process, _ in self._processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()


def _exit_reason(code: int) -> str:
    if code == 0:
        return "done"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name}"
    return f"exit code {code}"


# --- SLURM ---------------------------------------------------------------------------------


class SlurmRunner:
    """Each shard a task of a SLURM job array, submitted and followed with submitit; the
    task runs the shard's command with submitit's ``CommandFunction``."""

    poll_interval = 1.0  # a poll runs squeue, and sacct when a task left without a result

    def __init__(
        self,
        command_of: dict[int, list[str]],
        folder: Path,
        settings: ExecutorSettings,
        name: str,
    ) -> None:
        import submitit

        self._command_of = command_of
        self._folder = folder
        self._jobs: dict[int, submitit.Job[str]] = {}
        self._left: dict[int, float] = {}  # when a task was first seen out of the queue
        self._executor = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=0)
        parameters: dict[str, object] = {
            "job_name": f"vcat-{name}",
            "time": settings.time,
            "cpus_per_task": settings.cpus,
            "nodes": 1,
            "ntasks_per_node": 1,
            "array_parallelism": settings.parallel or 100_000,
            # a task that fails is started again by the executor, not by SLURM
            "additional_parameters": {"no_requeue": True},
        }
        if settings.partition:
            parameters["partition"] = settings.partition
        if settings.memory:
            parameters["mem"] = settings.memory
        if settings.gpus:
            parameters["gpus_per_node"] = settings.gpus
        self._executor.update_parameters(**parameters)

    def start(self, shards: list[int], attempt: dict[int, int]) -> dict[int, str]:
        from submitit.core.utils import FailedJobError
        from submitit.helpers import CommandFunction

        try:
            with self._executor.batch():
                submitted = {
                    index: self._executor.submit(
                        CommandFunction(self._command_of[index], verbose=True, cwd=os.getcwd())
                    )
                    for index in shards
                }
        except FailedJobError as error:
            raise SubmissionError(
                f"sbatch refused the job array: {str(error).strip()[:500]}; check the "
                "executor: section of params.yaml (partition, time, memory, gpus)"
            ) from None
        except FileNotFoundError:
            raise SubmissionError(
                "sbatch not found: run on a SLURM login node, start the local cluster "
                '(vcat cluster up, then eval "$(vcat cluster env)") or set executor.kind '
                "to local in params.yaml"
            ) from None
        self._jobs.update(submitted)
        return {index: job.job_id for index, job in submitted.items()}

    def attach(self, jobs: dict[int, str]) -> list[int]:
        import submitit

        queued = self._queued()
        followed = []
        for index, job_id in jobs.items():
            job: submitit.Job[str] = submitit.SlurmJob(folder=self._folder / "%j", job_id=job_id)
            if job_id in queued or job.paths.result_pickle.exists():
                self._jobs[index] = job
                followed.append(index)
        return followed

    def poll(self) -> dict[int, Ended]:
        """Shards whose task left the queue: by its result when it wrote one, else by the
        state sacct gives. A task cancelled before it started is never in sacct; it counts
        as ended once it has been out of the queue for LEFT_GRACE_S without a result."""
        import submitit

        if not self._jobs:
            return {}
        queued = self._queued()
        if any(
            job.job_id not in queued and not job.paths.result_pickle.exists()
            for job in self._jobs.values()
        ):
            # a task left the queue without a result: one sacct call tells why (sacct and
            # slurmdbd cost CPU, so they are not asked while every task is queued or done)
            submitit.SlurmJob.watcher.update()
        now = time.monotonic()
        ended = {}
        for index, job in list(self._jobs.items()):
            if job.job_id in queued:
                continue
            state = job.watcher.get_state(job.job_id, mode="cache").split(" ")[0]
            log = job.paths.stderr
            if job.paths.result_pickle.exists():
                try:
                    job.result()
                    ended[index] = Ended(True, "done", log)
                except Exception as error:  # what the shard's command raised
                    ended[index] = Ended(False, _job_reason(state, error), log)
            else:
                # no result: job.result() would wait for one for ever
                left = self._left.setdefault(index, now)
                if state not in _ENDED and now - left < LEFT_GRACE_S:
                    continue  # sacct and a shared file system may lag behind the queue
                if state in _ENDED:
                    reason = f"SLURM state {state}, no result"
                else:
                    reason = "it left the queue without a result (cancelled before it started?)"
                ended[index] = Ended(False, reason, log)
            del self._jobs[index]
            self._left.pop(index, None)
        return ended

    def _queued(self) -> set[str]:
        """The ids of this user's array tasks that SLURM still has queued or running."""
        result = subprocess.run(
            ["squeue", "--noheader", "--array", "--me", "--format=%i"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if result.returncode != 0:
            raise SubmissionError(
                f"squeue failed ({result.returncode}): {result.stderr.strip()[:300]}"
            )
        return set(result.stdout.split())

    def running(self) -> int:
        return len(self._jobs)

    def stop(self) -> None:
        for job in self._jobs.values():
            job.cancel(check=False)
        self._jobs.clear()


def _job_reason(state: str, error: Exception) -> str:
    text = str(error).strip().splitlines()
    last = text[-1] if text else type(error).__name__
    if state in _ENDED - {"COMPLETED"}:
        return f"SLURM state {state}: {last[:300]}"
    return last[:300]
