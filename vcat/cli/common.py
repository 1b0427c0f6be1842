"""Pieces every `vcat` command shares: finding an entry and its root, printing problems.

The consoles and ``fail`` live in ``vcat.console`` (stages use them too) and are re-exported
here for the commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from vcat.console import fail, stderr
from vcat.problems import CatalogError, display_path
from vcat.project import ProjectNotFound, default_catalog_dir

if TYPE_CHECKING:
    from vcat.catalog.loader import Catalog, Entry


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
