"""Run the shards of a stage with the configured executor: start, follow, retry, report.

:func:`run_sharded` is how a sharded stage's command does its work: when the ``executor:``
section asks for N shards and the command was not itself given ``--shard`` or ``--merge``,
it runs the N shards (those a stopped earlier run did not finish), then the command's own
merge.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn

from vcat.console import stderr, stderr_bars
from vcat.executors.command import input_paths, shard_command_line, stage_command_line
from vcat.executors.ledger import Ledger
from vcat.executors.remote_data import BlockInputs, fetch_parts, publish_run
from vcat.executors.runners import Ended, LocalRunner, Runner, SlurmRunner
from vcat.executors.settings import ExecutorSettings, executor_settings
from vcat.parts import PartsError, ShardSpec, parts_root, remove_parts
from vcat.processes import usable_cores
from vcat.stage import default_params_path
from vcat.stage_cli import StageFailed


class ShardsFailed(StageFailed):
    """Shards that failed more often than ``retries`` allows; names each one's log."""


@dataclass(frozen=True)
class ShardFailure:
    index: int
    ended: Ended


def run_sharded(
    context: typer.Context,
    output: Path,
    params: Path | None,
    spec: ShardSpec | None,
    merge: int | None,
    work: Callable[[ShardSpec | None, int | None], object],
    whole_only: Collection[str] = (),
    block_inputs: BlockInputs | None = None,
) -> None:
    """``work(spec, merge)``: the stage command's own work for its ``--shard``/``--merge``.

    When the ``executor:`` section splits the stage and neither was given, the N shards run
    first (the command ``context`` with ``--shard I/N``, less ``whole_only`` options), then
    ``work(None, N)`` merges them, and the parts are removed. Shards that an earlier, stopped
    run finished are skipped; if the merge then finds one of them out of date (its inputs
    changed since), every shard runs again, each keeping what is still current.

    With ``data: remote`` the shards run where none of the data is (:mod:`.remote_data`):
    ``block_inputs(N)`` names, for each of N shards, the input files its block reads (paths
    as the command was given them); without it every shard fetches every input file.
    """
    if spec is not None or merge is not None:
        work(spec, merge)
        return
    settings = executor_settings(params)
    if not settings.splits:
        work(spec, merge)
        return
    command = stage_command_line(context, whole_only)
    if settings.data == "remote":
        inputs = input_paths(context, output, whole_only)
        _run_remote(command, inputs, output, params, settings, work, block_inputs)
        return
    skipped = run_shards(command, output, settings)
    rerun = lambda: run_shards(command, output, settings, earlier=False)  # noqa: E731
    _merge(skipped, rerun, work, output, settings)
    remove_parts(output)


def _merge(
    skipped: int,
    rerun: Callable[[], object],
    work: Callable[[ShardSpec | None, int | None], object],
    output: Path,
    settings: ExecutorSettings,
) -> None:
    """``work(None, N)``; when it finds a part out of date and some shards were finished
    by an earlier run, ``rerun()`` every shard and merge again."""
    try:
        work(None, settings.shards)
    except PartsError as error:
        if not skipped:
            raise
        stderr.print(
            f"{output}: {error}; the shards finished earlier are run again (each keeps what is "
            "still current)",
            highlight=False,
        )
        rerun()
        work(None, settings.shards)


def _run_remote(
    command: list[str],
    inputs: list[Path],
    output: Path,
    params: Path | None,
    settings: ExecutorSettings,
    work: Callable[[ShardSpec | None, int | None], object],
    block_inputs: BlockInputs | None,
) -> None:
    """The shards of ``command`` as ``vcat executor shard`` workers of a run on the DVC
    remote; then the parts fetched from it, merged, and removed there and here."""
    params = params if params is not None else default_params_path()
    if params is not None and "--params" not in command:
        command = [*command, "--params", str(params)]  # no project around a shard to find it
    if params is not None and params not in inputs:
        inputs = [*inputs, params]
    store, record = publish_run(
        command, inputs, output, settings.shards, settings.remote, block_inputs
    )
    worker = [sys.executable, "-m", "vcat", "executor", "shard", record.run, "--remote", store.name]
    if settings.scratch:
        worker += ["--scratch", settings.scratch]

    stage = command[4]  # python -m vcat stage NAME ...

    def rerun_all() -> None:
        store.remove(store.run_path(record.run, "parts"))
        run_shards(worker, output, settings, earlier=False, stage=stage)
        fetch_parts(store, record, output)

    abandoned = _abandoned_run(output, store.name, record.run)
    if abandoned is not None:
        store.remove(store.run_path(abandoned))
    skipped = run_shards(worker, output, settings, stage=stage)
    try:
        fetch_parts(store, record, output)
    except PartsError:
        if not skipped:
            raise
        rerun_all()
        skipped = 0
    _merge(skipped, rerun_all, work, output, settings)
    remove_parts(output)
    store.remove(store.run_path(record.run))


def _abandoned_run(output: Path, remote: str, run: str) -> str | None:
    """The run on ``remote`` that the executor last followed for ``output``, when it is not
    ``run``: its inputs changed before it was merged, so its parts never will be."""
    # python -m vcat executor shard RUN --remote NAME ...
    command = Ledger.read_command(parts_root(output))
    if command[3:5] != ["executor", "shard"] or "--remote" not in command[5:-1]:
        return None
    earlier = command[5]
    same_remote = command[command.index("--remote") + 1] == remote
    return earlier if same_remote and earlier != run else None


def run_shards(
    command: list[str],
    output: Path,
    settings: ExecutorSettings,
    earlier: bool = True,
    stage: str | None = None,
) -> int:
    """Run ``command --shard I/N`` for every shard of ``output`` not finished yet (with
    ``earlier`` False: every shard); raise ShardsFailed when a shard failed ``retries + 1``
    times (the others still run to the end). Returns how many shards were finished earlier.
    ``stage`` names the SLURM jobs (default: the stage ``command`` runs)."""
    folder = parts_root(output)
    folder.mkdir(parents=True, exist_ok=True)
    count = settings.shards
    ledger = Ledger.open(folder, command, count)
    if not earlier:
        ledger = Ledger(ledger.path, command, count)
    command_of = {
        index: shard_command_line(command, ShardSpec(index, count)) for index in range(count)
    }
    runner: Runner
    if settings.kind == "slurm":
        runner = SlurmRunner(command_of, folder / "slurm", settings, stage or command[4])
        limit = count  # SLURM's array_parallelism limits what runs at once
    else:
        runner = LocalRunner(command_of, folder / "logs")
        limit = settings.parallel or usable_cores()
    todo = ledger.todo()
    if len(todo) < count:
        stderr.print(
            f"{output}: {count - len(todo)} of {count} shards finished earlier; "
            f"running {len(todo)}",
            highlight=False,
        )
    followed = set(runner.attach({i: ledger.jobs[i] for i in todo if i in ledger.jobs}))
    if followed:
        stderr.print(
            f"{output}: following {len(followed)} shard job(s) an earlier run submitted",
            highlight=False,
        )
    waiting = deque(index for index in todo if index not in followed)
    failures: list[ShardFailure] = []
    bars = stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[states]}"),
        TimeElapsedColumn(),
    )
    try:
        with bars:
            bar = bars.add_task(
                f"shards of {output.name}", total=count, completed=count - len(todo), states=""
            )
            while waiting or runner.running():
                room = limit - runner.running()
                if waiting and room > 0:
                    batch = [waiting.popleft() for _ in range(min(room, len(waiting)))]
                    for index in batch:
                        ledger.attempts[index] = ledger.attempts.get(index, 0) + 1
                    ledger.jobs.update(runner.start(batch, ledger.attempts))
                    ledger.save()
                for index, ended in sorted(runner.poll().items()):
                    _settle(index, ended, ledger, settings, waiting, failures, output)
                    bars.update(bar, completed=len(ledger.done))
                bars.update(bar, states=f"{runner.running()} running, {len(waiting)} waiting")
                time.sleep(runner.poll_interval)
    except BaseException:
        runner.stop()
        raise
    if failures:
        raise ShardsFailed(_failure_message(output, failures, settings))
    return count - len(todo)


def _settle(
    index: int,
    ended: Ended,
    ledger: Ledger,
    settings: ExecutorSettings,
    waiting: deque[int],
    failures: list[ShardFailure],
    output: Path,
) -> None:
    shard = f"{output}: shard {index}/{ledger.shards}"
    if ended.ok:
        ledger.done.add(index)
        ledger.jobs.pop(index, None)
        ledger.save()
        stderr.print(f"{shard} done", highlight=False)
        return
    tries = ledger.attempts.get(index, 1)
    if tries <= settings.retries:
        stderr.print(
            f"{shard} failed ({ended.reason}; log: {ended.log}); starting it again "
            f"(retry {tries} of {settings.retries})",
            highlight=False,
        )
        waiting.append(index)
    else:
        failures.append(ShardFailure(index, ended))


def _failure_message(output: Path, failures: list[ShardFailure], settings: ExecutorSettings) -> str:
    shown = "; ".join(
        f"shard {failure.index} ({failure.ended.reason}; log: {failure.ended.log})"
        for failure in failures[:5]
    )
    more = f"; and {len(failures) - 5} more" if len(failures) > 5 else ""
    return (
        f"{output}: {len(failures)} shard(s) failed {settings.retries + 1} time(s): {shown}{more}. "
        "The shards that finished are kept: run the stage again to run only the others"
    )
