"""What `vcat verify` and `vcat manifest build` share: the entry and root arguments, the
workers option, finding a dataset's folder, and the hashing progress bars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn

from vcat.cli.common import print_problems
from vcat.console import fail, stderr_bars
from vcat.problems import CatalogError
from vcat.project import ProjectNotFound
from vcat.verify.manifest import HashProgress, ProgressCallback

NameArgument = Annotated[str, typer.Argument(help="Entry name, as in `vcat catalog list`.")]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="The dataset's folder (default: the remembered root, else data/sources/NAME).",
        file_okay=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Threads that hash files (default: every core)."),
]


def dataset_folder(
    name: str, given: Path | None, before_failing: Callable[[], object] | None = None
) -> tuple[Path, bool]:
    """The root to check and whether it was given on the command line.

    Exits 2 when none is known or the settings are invalid, after ``before_failing`` (the
    entry's verdict: an invalid entry is the error reported).
    """
    if given is not None:
        return given, True
    from vcat.settings import default_root, load_settings

    try:
        remembered = load_settings().roots.get(name)
    except CatalogError as exc:
        if before_failing is not None:
            before_failing()
        print_problems(exc)
        raise typer.Exit(2) from None
    except ProjectNotFound:
        remembered = None
    if remembered is not None:
        return Path(remembered), False
    try:
        fallback = default_root(name)
    except ProjectNotFound:
        fallback = None
    if fallback is not None and fallback.is_dir():
        return fallback, False
    if before_failing is not None:
        before_failing()
    fail(
        f"no root is known for {name!r}: pass --root DIR, the folder that holds its data "
        "(vcat remembers it once the check passes)"
    )


@contextmanager
def hash_progress(
    verb: str, interrupt: Callable[[], None] | None = None
) -> Iterator[ProgressCallback]:
    """Two bars on stderr, files and bytes, fed by the hashing progress callback.

    ``interrupt`` is called at every update, about ten times a second; an exception it raises
    stops the hashing (``EntryCheck.poll`` ends it when the entry turns out invalid).
    """
    with stderr_bars(
        TextColumn("{task.description:>13}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    ) as bars:
        files = bars.add_task(f"{verb} files", total=None, detail="")
        data = bars.add_task("bytes", total=None, detail="")

        def update(state: HashProgress) -> None:
            if interrupt is not None:
                interrupt()
            bars.update(
                files,
                completed=state.files_done,
                total=state.files_total,
                detail=f"{state.files_done:,}/{state.files_total:,}",
            )
            bars.update(
                data,
                completed=state.bytes_done,
                total=state.bytes_total,
                detail=f"{decimal(state.bytes_done)}/{decimal(state.bytes_total)}",
            )

        yield update
