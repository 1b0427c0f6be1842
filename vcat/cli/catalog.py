"""`vcat catalog ...`: list, show, lint and document the catalog.

The ``--json`` outputs are a stable interface (documented in docs/cli-json.md): a
``format`` key names the layout and its version, and fields are only ever added.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table

from vcat.cli.columns import print_table
from vcat.cli.common import find_entry
from vcat.cli.options import CatalogOption, JsonOption
from vcat.console import stderr, stdout
from vcat.controls import visible
from vcat.display import literal, shown
from vcat.generated import stale_files, write_folder
from vcat.problems import Severity, display_path
from vcat.project import ProjectNotFound, default_catalog_dir

if TYPE_CHECKING:
    from vcat.catalog.loader import Catalog, Entry

LIST_FORMAT = "vcat.catalog.list/1"
ENTRY_FORMAT = "vcat.catalog.entry/1"

app = typer.Typer(
    help="Read, check and document the catalog of datasets and models.",
    no_args_is_help=True,
)


class KindChoice(StrEnum):
    dataset = "dataset"
    model = "model"


def _catalog_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    try:
        return default_catalog_dir()
    except ProjectNotFound as exc:
        stderr.print(f"[red]error:[/red] {shown(exc)}", highlight=False)
        raise typer.Exit(2) from None


def _load(catalog_dir: Path | None) -> Catalog:
    from vcat.catalog.loader import load_catalog

    catalog = load_catalog([_catalog_dir(catalog_dir)])
    if catalog.problems:
        stderr.print(
            f"[yellow]{len(catalog.problems)} problem(s) kept some entries from loading; "
            "run `vcat catalog lint` to see them.[/yellow]"
        )
    return catalog


@app.command("list")
def list_entries(
    kind: Annotated[KindChoice | None, typer.Option(help="Only entries of this kind.")] = None,
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """List catalog entries."""
    entries = sorted(_load(catalog_dir).of_kind(kind), key=lambda e: (e.kind, e.name))
    if as_json:
        payload = {"format": LIST_FORMAT, "entries": [_summary(e) for e in entries]}
        typer.echo(json.dumps(payload, indent=2))
        return
    name_column = Column("name", no_wrap=True, style="bold")
    table = Table(name_column, "kind", "title", "access", "redistribution", "files")
    for entry in entries:
        summary = _summary(entry)
        cells = (entry.name, entry.kind, entry.spec.title, summary["access"],
                 summary["redistribution"], len(summary["files"]))  # fmt: skip
        table.add_row(*(literal(cell) for cell in cells))
    print_table(stdout, table)


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Entry name, as in `vcat catalog list`.")],
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Show one entry: what it is, its licence, how to obtain it, its files and subsets."""
    from rich.markdown import Markdown

    from vcat.catalog.docs import render_entry
    from vcat.catalog.loader import load_around

    entry = find_entry(load_around(_catalog_dir(catalog_dir), name), name)
    if as_json:
        payload = {
            "format": ENTRY_FORMAT,
            **_identity(entry),
            "entry": entry.spec.model_dump(mode="json"),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    # links shown as text and URL: a terminal hyperlink could hide where it leads
    stdout.print(Markdown(render_entry(entry), hyperlinks=False))


@app.command("lint")
def lint(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Entry files, datasets/ or models/ folders, or catalog folders "
            "(default: the project's catalog)."
        ),
    ] = None,
) -> None:
    """Check entries: schema, names, references, checksums and shared download links.

    Prints one `path:line: severity: message` line per problem. Exits 1 when any is an
    error; warnings (recorded upstream defects) do not fail.
    """
    from vcat.catalog.lint import lint_catalog
    from vcat.catalog.loader import load_catalog

    catalog = load_catalog(paths or [_catalog_dir(None)])
    problems = lint_catalog(catalog)
    for problem in problems:
        typer.echo(visible(problem.format()))
    errors = sum(p.severity == Severity.ERROR for p in problems)
    warnings = len(problems) - errors
    summary = f"{len(catalog.entries)} entries checked: {errors} error(s), {warnings} warning(s)"
    stderr.print(f"[red]{summary}[/red]" if errors else f"[green]{summary}[/green]")
    if errors:
        raise typer.Exit(1)


def _write_or_check(out: Path, files: dict[str, str], check: bool, what: str) -> None:
    if check:
        stale = stale_files(out, files)
        if stale:
            for name in stale:
                typer.echo(visible(f"{display_path(out / name)}: stale"))
            stderr.print(f"[red]{what} in {shown(out)} are out of date; regenerate them.[/red]")
            raise typer.Exit(1)
        stderr.print(f"[green]{what} in {shown(out)} are up to date.[/green]")
        return
    write_folder(out, files)
    stderr.print(f"wrote {len(files)} files to {shown(out)}", highlight=False)


@app.command("docs")
def docs(
    out: Annotated[
        Path, typer.Option(help="Folder to write the Markdown pages to.", file_okay=False)
    ],
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 if OUT is stale.")] = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Write a Markdown page per entry and an index table to OUT (replacing its contents)."""
    from vcat.catalog.docs import render_pages
    from vcat.catalog.loader import load_catalog

    catalog = load_catalog([_catalog_dir(catalog_dir)])
    if catalog.problems:
        for problem in catalog.problems:
            stderr.print(problem.format(), markup=False, highlight=False)
        stderr.print("[red]refusing to write docs for a catalog with invalid entries.[/red]")
        raise typer.Exit(1)
    _write_or_check(out, render_pages(catalog.entries), check, "catalog pages")


@app.command("schema")
def schema(
    out: Annotated[
        Path, typer.Option(help="Folder to write the JSON Schema files to.", file_okay=False)
    ],
    check: Annotated[bool, typer.Option(help="Write nothing; exit 1 if OUT is stale.")] = False,
) -> None:
    """Export the entry schemas as JSON Schema, for editors that validate YAML as you type."""
    from vcat.catalog.schema_export import render_schemas

    _write_or_check(out, render_schemas(), check, "schema files")


def _identity(entry: Entry) -> dict[str, Any]:
    return {"name": entry.name, "kind": entry.kind, "path": display_path(entry.path)}


def _summary(entry: Entry) -> dict[str, Any]:
    from vcat.catalog.schema import DatasetEntry

    spec = entry.spec
    files = [
        {"name": source.name, "url": source.url, "checksum": source.checksum}
        for _, source in spec.located_sources()
    ]
    return {
        **_identity(entry),
        "title": spec.title,
        "access": spec.how_obtained(),
        "licence": spec.licence.name,
        "redistribution": spec.licence.redistribution,
        "files": files,
        "subsets": [s.name for s in spec.subsets] if isinstance(spec, DatasetEntry) else [],
    }


@app.command("record")
def record(
    name: Annotated[str, typer.Argument(help="Entry name, as in `vcat catalog list`.")],
    source: Annotated[
        list[str] | None,
        typer.Option("--source", help="Only this source (repeatable; default: every source)."),
    ] = None,
    recorded_from: Annotated[
        str, typer.Option("--from", help="What was hashed, written as 'recorded_from'.")
    ] = "first trusted download",
    root: Annotated[
        Path | None,
        typer.Option(
            "--root", file_okay=False, help="The entry's root (default: the remembered root)."
        ),
    ] = None,
    catalog_dir: CatalogOption = None,
) -> None:
    """Write the size, md5 and ETag that `vcat fetch` established into the entry's file.

    A checksum written this way gets `checksum_source: {kind: recorded, date, recorded_from}`.
    Comments, key order and formatting of the entry stay as they were. A checksum the entry
    already states is never replaced by another; exits 2 (writing nothing) when a source was
    not fetched, was fetched from another URL, or differs from it.
    """
    from vcat.catalog.edit import EditError
    from vcat.catalog.record import RecordRefused, record_fetched
    from vcat.cli.common import load_entry, root_of
    from vcat.console import fail
    from vcat.fetch.workspace import Workspace

    entry = load_entry(name, catalog_dir)
    folder = root.resolve() if root is not None else root_of(name, "pass --root DIR")
    try:
        results = record_fetched(entry, Workspace(folder), source or (), None, recorded_from)
    except (RecordRefused, EditError) as exc:
        fail(str(exc))
    where = shown(display_path(entry.path))
    for result in results:
        if not result.values:
            stderr.print(f"{result.source}: {where} already states it", highlight=False)
            continue
        written = ", ".join(f"{key}" for key in result.values)
        stderr.print(f"{result.source}: wrote {shown(written)} to {where}", highlight=False)
    if any(result.values for result in results):
        stderr.print("review the change with `git diff`, then commit it", highlight=False)
