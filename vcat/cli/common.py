"""Pieces every `vcat` command shares: consoles, failing with a message, finding an entry."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.markup import escape

from vcat.cli.console import WholeLinesConsole
from vcat.display import SafeConsole
from vcat.problems import CatalogError, display_path
from vcat.project import ProjectNotFound, default_catalog_dir

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

    from vcat.catalog.loader import Catalog, Entry


class _Console(SafeConsole, WholeLinesConsole):
    """Control characters made visible, and no line cut or dropped."""


stdout = _Console(soft_wrap=True)
stderr = _Console(stderr=True, soft_wrap=True)


def stderr_bars(*columns: str | ProgressColumn) -> Progress:
    """Progress bars on stderr, cleared when done; off when stderr is not a terminal (logs)."""
    from rich.progress import Progress

    return Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the command could not run)."""
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def print_problems(error: CatalogError) -> None:
    for problem in error.problems:
        stderr.print(problem.format(), markup=False, highlight=False)


def find_entry(catalog: Catalog, name: str) -> Entry:
    """The entry ``name`` of ``catalog``, or exit 2 saying it is invalid (its problems above)
    or that there is none (with close names): the same message in every command."""
    try:
        return catalog.get(name)
    except KeyError as exc:
        broken = [p for p in catalog.problems if p.path.stem == name]
        for problem in broken:
            stderr.print(problem.format(), markup=False, highlight=False)
        fail(f"entry {name!r} is invalid; fix the problems above" if broken else exc.args[0])


def load_entry(name: str, catalog_dir: Path | None) -> Entry:
    """The entry ``name`` of the catalog, or exit 2 with its load problems, the errors
    `vcat catalog lint` finds in it, or close names."""
    from vcat.catalog.lint import entry_errors
    from vcat.catalog.loader import load_around

    try:
        folder = catalog_dir or default_catalog_dir()
    except ProjectNotFound as exc:
        fail(str(exc))
    catalog = load_around(folder, name)
    entry = find_entry(catalog, name)
    errors = entry_errors(catalog, entry)
    for problem in errors:
        stderr.print(problem.format(), markup=False, highlight=False)
    if errors:
        fail(f"entry {name!r} does not pass `vcat catalog lint`; fix the problems above")
    return entry


def root_of(name: str, outside_project: str) -> Path:
    """``dataset_root(name)``, or exit 2 with ``outside_project`` when there is no project,
    or with the settings file's problems when it is invalid."""
    from vcat.settings import dataset_root

    try:
        return dataset_root(name)
    except ProjectNotFound:
        fail(outside_project)
    except CatalogError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None


def remember(name: str, root: Path) -> bool:
    """Record ``root`` as ``name``'s root unless it already is; True when this wrote it.

    Outside a project, or with an invalid settings file, says so and records nothing.
    """
    from vcat.settings import load_settings, remember_root

    try:
        if load_settings().roots.get(name) == str(root.resolve()):
            return False
        written = remember_root(None, name, root)
    except ProjectNotFound:
        stderr.print("[dim]root not remembered: not inside a vcat project[/dim]")
        return False
    except CatalogError as exc:
        print_problems(exc)
        stderr.print("[yellow]root not remembered: the settings file is invalid[/yellow]")
        return False
    stderr.print(
        f"remembered {escape(str(root.resolve()))} as the root of {name} "
        f"(in {escape(display_path(written))})",
        highlight=False,
    )
    return True
