"""`vcat fetch NAME`: download an entry's sources, verify them, and track them with DVC.

Files land in the entry's root (``--dest``, else the remembered root, else
``data/sources/NAME``) only once verified; failures are quarantined in the work area beside
it, ``.<root name>.vcat/``. Exit codes: 0 every source is in place, 1 some failed, 2 the
command could not run, 130 interrupted (bytes so far are kept; run it again to resume).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vcat.catalog.schema import Source
from vcat.cli.common import load_entry, remember, root_of
from vcat.cli.options import CatalogOption
from vcat.console import fail, stderr, stdout
from vcat.display import shown
from vcat.fetch import limits
from vcat.fetch.download import Cancelled, RetryPolicy
from vcat.fetch.placing import Outcome, write_tree_manifest
from vcat.fetch.runner import fetch_all
from vcat.fetch.selection import SelectionError, select_sources
from vcat.fetch.source import FetchOptions
from vcat.fetch.tracking import TrackingConflict, dvc_repo_root, owning_stage, track
from vcat.fetch.workspace import Busy, Workspace
from vcat.problems import display_path

_STATE_STYLES = {
    "verified": "green",
    "up-to-date": "green",
    "fetched": "yellow",
    "failed": "red",
}


def _root_for(name: str, dest: Path | None) -> Path:
    if dest is not None:
        return dest.expanduser().resolve()
    return root_of(name, f"not inside a vcat project: pass --dest DIR to say where {name} goes")


def fetch(
    name: Annotated[str, typer.Argument(help="Entry name, as in `vcat catalog list`.")],
    subset: Annotated[
        list[str] | None, typer.Option("--subset", "-s", help="Only the sources of this subset.")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only this source (repeatable).")
    ] = None,
    dest: Annotated[
        Path | None,
        typer.Option(
            "--dest",
            file_okay=False,
            help="The entry's root (default: the remembered root, else data/sources/NAME); "
            "remembered for later commands and stages.",
        ),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Parallel downloads.")] = 4,
    retries: Annotated[
        int, typer.Option(min=1, help="Attempts without progress before a source fails.")
    ] = RetryPolicy.attempts,
    stall_timeout: Annotated[
        float, typer.Option(help="Seconds without a byte before an attempt is retried.")
    ] = limits.STALL_TIMEOUT,
    min_speed: Annotated[
        str,
        typer.Option(
            help="Slowest speed in bytes/s (e.g. 10K), averaged over --speed-window, before an "
            "attempt is retried; 0 turns the check off."
        ),
    ] = limits.MIN_SPEED_TEXT,
    speed_window: Annotated[
        float, typer.Option(help="Seconds over which --min-speed is averaged.")
    ] = limits.SPEED_WINDOW,
    max_size: Annotated[
        str,
        typer.Option(
            help="Most bytes a source whose entry declares no size may have (e.g. 500G); "
            "more is a failure (oversized) and the bytes are removed."
        ),
    ] = limits.MAX_SIZE_TEXT,
    keep_archives: Annotated[
        bool,
        typer.Option(help="Keep verified archives in the work area after unpacking them."),
    ] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Place every source again: unpack archives anew, re-hash files in place.",
        ),
    ] = False,
    dvc: Annotated[
        bool | None,
        typer.Option(
            "--dvc/--no-dvc",
            help="`dvc add` the root when it is inside a DVC repository. By default it is "
            "added unless a dvc.yaml stage writes it (then `dvc repro` tracks it).",
            show_default=False,
        ),
    ] = None,
    catalog_dir: CatalogOption = None,
) -> None:
    """Download, verify and place an entry's sources; resumes what an earlier run left."""
    entry = load_entry(name, catalog_dir)
    try:
        sources = select_sources(name, entry.spec, subset or (), source or ())
    except SelectionError as exc:
        fail(str(exc))
    root = _root_for(name, dest)
    try:
        transfer = limits.TransferLimits.from_options(
            stall_timeout, min_speed, speed_window, max_size
        )
    except ValueError as exc:
        fail(str(exc))
    options = FetchOptions(
        policy=RetryPolicy(attempts=retries),
        keep_archives=keep_archives,
        force=force,
        transfer=transfer,
    )
    stderr.print(f"fetching {len(sources)} source(s) of {name} into {shown(display_path(root))}")
    try:
        outcomes = fetch_all(sources, root, jobs=jobs, options=options, console=stderr)
    except Busy as exc:
        fail(str(exc))
    except (KeyboardInterrupt, Cancelled):
        stderr.print(
            "[yellow]interrupted:[/yellow] bytes so far are kept; run the same command to resume"
        )
        raise typer.Exit(130) from None
    _print_outcomes(outcomes)
    try:
        failed = _finish(name, entry.spec.all_sources(), root, outcomes, dest is not None, dvc)
    except KeyboardInterrupt:
        stderr.print(
            "[yellow]interrupted:[/yellow] the verified files are in place; run the same "
            "command to record and track them"
        )
        raise typer.Exit(130) from None
    if failed:
        raise typer.Exit(1)


def _finish(
    name: str,
    sources: list[Source],
    root: Path,
    outcomes: list[Outcome],
    remember_root: bool,
    dvc: bool | None,
) -> bool:
    """Record the placed tree, remember its root, hand it to DVC; True when something failed."""
    manifest = write_tree_manifest(sources, Workspace(root))
    if manifest is not None:
        stdout.print(
            f"every placed file is listed in {shown(display_path(manifest))}; "
            f"`vcat verify {name}` re-checks the tree"
        )
    failed = any(outcome.state == "failed" for outcome in outcomes)
    if remember_root and not failed:
        remember(name, root)  # only a tree that passed is worth finding again
    wants_tracking = dvc is not False and root.is_dir() and any(root.iterdir())
    if wants_tracking and not _track(root, outcomes, dvc):
        failed = True
    return failed


def _track(root: Path, outcomes: list[Outcome], asked: bool | None) -> bool:
    """``dvc add`` the root when it lies in a DVC repository and no pipeline stage writes it
    (``asked``: True for an explicit ``--dvc``); False when it could not be tracked."""
    from dvc.exceptions import DvcException

    repo = dvc_repo_root(root)
    if repo is None:
        where = shown(display_path(root))
        stdout.print(f"not tracked by DVC: {where} is outside any DVC repository")
        return True
    try:
        owner = owning_stage(root, repo)
    except TrackingConflict as exc:
        stderr.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        return False
    if owner is not None:
        how = (
            f"`dvc repro {owner}` tracks it, or `dvc commit {owner}` records what was just fetched"
        )
        where = f"{escape(display_path(root))} is the output of stage {owner} (dvc.yaml)"
        if asked:
            stderr.print(
                f"[red]error:[/red] the data is in place but not added to DVC: {where}, and DVC "
                f"tracks a path one way only; {how}",
                highlight=False,
            )
            return False
        stdout.print(f"not `dvc add`ed: {where}; {how}", highlight=False)
        return True
    md5s = {path: md5 for outcome in outcomes for path, md5 in outcome.md5s.items()}
    try:
        dvc_file = track(root, md5s, repo)
    except DvcException as exc:
        stderr.print(
            f"[red]error:[/red] the data is in place but DVC did not track it: {escape(str(exc))}"
            f"; fix that and run `dvc add {shown(display_path(root))}`",
            highlight=False,
        )
        return False
    stdout.print(f"tracked by DVC in {shown(display_path(dvc_file))}; commit it with git")
    return True


def _print_outcomes(outcomes: list[Outcome]) -> None:
    table = Table("source", "state", "what happened", box=None, pad_edge=False)
    for outcome in outcomes:
        style = _STATE_STYLES.get(outcome.state, "")
        table.add_row(outcome.source, f"[{style}]{outcome.state}[/]", escape(outcome.message))
    stdout.print(table)
