"""Fetching several sources of one entry at once, with a rich progress bar per source."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from vcat.catalog.schema import Source
from vcat.fetch.placing import Outcome
from vcat.fetch.source import FetchOptions, fetch_source
from vcat.fetch.workspace import Workspace


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}", justify="left"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def fetch_all(
    sources: list[Source],
    root: Path,
    *,
    jobs: int = 4,
    options: FetchOptions | None = None,
    console: Console | None = None,
) -> list[Outcome]:
    """Fetch ``sources`` into ``root``, ``jobs`` at a time; outcomes in catalog order.

    Holds the root's lock for the whole run (``Busy`` when another fetch holds it). On
    Ctrl-C the workers stop at their next block (or while waiting to retry), keep their
    bytes, place nothing they had not verified yet, and the interrupt is re-raised once
    they have. A process started with SIGINT ignored (a background job of a shell without
    job control, ``nohup``) keeps ignoring it, as POSIX asks: Ctrl-C does not reach it.
    """
    options = options or FetchOptions()
    cancel = options.cancel or threading.Event()
    options = replace(options, cancel=cancel)
    workspace = Workspace(root)
    console = console or Console(stderr=True)
    with workspace.lock(), _progress_bar(console) as bar:
        tasks = {s.name: bar.add_task(s.name, total=s.size, start=False) for s in sources}

        def run(source: Source) -> Outcome:
            task = tasks[source.name]
            bar.start_task(task)

            report = _reporter(bar, task, source)

            def note(line: str) -> None:
                bar.console.print(f"{escape(source.name)}: {escape(line)}", highlight=False)

            outcome = fetch_source(source, workspace, options=options, progress=report, note=note)
            bar.update(task, description=_label(source, outcome.state))
            return outcome

        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fetch") as pool:
            try:
                # submitted inside the try: a Ctrl-C between two submits must stop the
                # downloads already started, not wait for them to finish
                futures = [pool.submit(run, source) for source in sources]
                wait(futures)
            except KeyboardInterrupt:
                cancel.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            return [future.result() for future in futures]


def _reporter(
    bar: Progress, task: TaskID, source: Source
) -> Callable[[str, int, int | None], None]:
    """The progress callback of one source: each phase (download, verify, extract) shows
    its bytes against its own total, or against none when the total is unknown (an
    archive's unpacked size), so that the bar never reads past 100%."""

    def report(phase: str, done: int, total: int | None) -> None:
        if total is None:
            # Progress.update reads total=None as "unchanged": an unknown total is set on
            # the task itself, which then counts bytes without a bar
            for shown in bar.tasks:
                if shown.id == task:
                    shown.total = None
        else:
            done = min(done, total)
        bar.update(task, completed=done, total=total, description=_label(source, phase))

    return report


def _label(source: Source, phase: str) -> str:
    return f"{escape(source.name)} [dim]{phase}[/dim]"
