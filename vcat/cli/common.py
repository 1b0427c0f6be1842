"""Pieces every `vcat` command shares: consoles, failing with a message, finding an entry."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from vcat.catalog.loader import Entry, load_catalog
from vcat.problems import CatalogError
from vcat.project import ProjectNotFound, default_catalog_dir

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the command could not run)."""
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def print_problems(error: CatalogError) -> None:
    for problem in error.problems:
        stderr.print(problem.format(), markup=False, highlight=False)


def load_entry(name: str, catalog_dir: Path | None) -> Entry:
    """The entry ``name`` of the catalog, or exit 2 with its load problems or close names."""
    try:
        folder = catalog_dir or default_catalog_dir()
    except ProjectNotFound as exc:
        fail(str(exc))
    catalog = load_catalog([folder])
    try:
        return catalog.get(name)
    except KeyError as exc:
        broken = [p for p in catalog.problems if p.path.stem == name]
        for problem in broken:
            stderr.print(problem.format(), markup=False, highlight=False)
        fail(f"entry {name!r} is invalid; fix the problems above" if broken else exc.args[0])
