"""`vcat doctor [--fix]`: find (and repair) what DVC itself does not check.

Exit codes: 0 nothing wrong (or everything found was repaired), 1 problems remain, 2 the
check could not run. See vcat.doctor and docs/doctor.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.console import fail, stderr, stderr_bars, stdout

FixOption = Annotated[
    bool,
    typer.Option(
        "--fix",
        help="Restore broken DVC files from git, make config.local private, and remove "
        "damaged cache objects (and their workspace copies) so that `dvc pull` fetches them.",
    ),
]


def _checkout_root() -> Path:
    """The DVC checkout at or above the working directory."""
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / ".dvc").is_dir():
            return folder
    fail(f"no DVC checkout at or above {here}: run inside one (a folder with .dvc/)")


def doctor(fix: FixOption = False) -> None:
    """Check dvc.lock, .dvc files, DVC's config and cache objects; --fix repairs them.

    Exit 0: nothing wrong, or all of it repaired; 1: problems remain; 2: could not run.
    """
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn

    from vcat.doctor import DoctorError, diagnose

    root = _checkout_root()
    bars = stderr_bars(
        TextColumn("hashing cache objects"), BarColumn(), DownloadColumn(), TimeRemainingColumn()
    )
    tasks = []  # the bar appears once the bytes to hash are known

    def total(size: int) -> None:
        tasks.append(bars.add_task("hash", total=size))

    def progress(size: int) -> None:
        if tasks:
            bars.advance(tasks[0], size)

    with bars:
        try:
            report = diagnose(root, fix=fix, progress=progress, total=total)
        except DoctorError as exc:
            fail(str(exc))
    for finding in report.findings:
        problem = finding.problem()
        line = problem.format(relative_to=root)
        if finding.fixed:
            line = line.replace(": error: ", ": fixed: ", 1)
        stderr.print(line, markup=False, highlight=False)
    if report.skipped_cache:
        stderr.print(report.skipped_cache, markup=False, highlight=False)
    else:
        size = report.bytes_checked / 1e6
        stdout.print(
            f"checked {report.objects_checked} cache object(s), {size:.1f} MB",
            markup=False,
            highlight=False,
        )
    if report.missing:
        shown = ", ".join(report.missing[:5]) + (" ..." if len(report.missing) > 5 else "")
        stdout.print(
            f"{len(report.missing)} tracked path(s) have no object in the cache yet "
            f"(`dvc pull` fetches them): {escape(shown)}",
            highlight=False,
        )
    for step in report.next_steps:
        stdout.print(f"next: {escape(step)}", highlight=False)
    remaining = [finding for finding in report.findings if not finding.fixed]
    if remaining:
        fixable = sum(finding.fixable for finding in remaining)
        hint = f"; `vcat doctor --fix` repairs {fixable} of them" if fixable and not fix else ""
        stderr.print(f"{len(remaining)} problem(s){hint}", markup=False, highlight=False)
        raise typer.Exit(1)
    if report.findings:
        stdout.print(f"repaired {len(report.findings)} problem(s)", highlight=False)
    elif not report.skipped_cache:
        stdout.print("no problems found", highlight=False)
