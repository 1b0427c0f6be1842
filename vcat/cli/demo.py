"""`vcat demo build`: make the demo world that the ``demo-*`` catalog entries download from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from vcat.catalog.loader import Catalog, load_catalog
from vcat.cli.options import CatalogOption
from vcat.console import fail, stderr, stdout
from vcat.demo.build import DEMO_WORLD, FileReport, Part, build_demo_world, demo_parts
from vcat.demo.record import RecordError, record_source
from vcat.problems import display_path
from vcat.processes import usable_cores
from vcat.project import ProjectNotFound, default_catalog_dir

app = typer.Typer(no_args_is_help=True, help="The embedded demo world.")


def _table(reports: list[FileReport], project_root: Path) -> Table:
    table = Table(box=None)
    for column in ("file", "catalog source", "size", "md5", "catalog"):
        table.add_column(column, overflow="fold")
    for report in reports:
        if report.expected_md5 is None:
            verdict = "[yellow]not recorded[/yellow]"
        elif report.matches:
            verdict = "[green]matches[/green]"
        else:
            verdict = f"[red]differs[/red] (size {report.expected_size}, md5 {report.expected_md5})"
        table.add_row(
            escape(report.path.relative_to(project_root / DEMO_WORLD).as_posix()),
            f"{report.published.entry}:{report.published.source}",
            f"{report.size:,}",
            report.md5,
            verdict,
        )
    return table


def _record(catalog: Catalog, reports: list[FileReport]) -> None:
    for report in reports:
        published = report.published
        try:
            path = record_source(
                catalog, published.entry, published.source, report.size, report.md5
            )
        except (KeyError, RecordError) as exc:
            fail(str(exc.args[0]))
        stderr.print(
            f"recorded {published.entry}:{published.source} in {escape(display_path(path))}",
            highlight=False,
        )


@app.command("build")
def build(
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild parts that already match the catalog.")
    ] = False,
    record: Annotated[
        bool,
        typer.Option(
            "--record",
            help="Write each built file's size and md5 into its catalog entry (after changing "
            "how the demo world is made).",
        ),
    ] = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Build the demo world in .vcat/demo-world/ and check every file against the catalog.

    Parts whose files already match the catalog are kept. Exit 1 when a built file differs
    from what its catalog entry records (another encoder version gives other bytes), unless
    --record writes the new values into the entries.
    """
    try:
        folder = catalog_dir or default_catalog_dir()
    except ProjectNotFound as exc:
        fail(str(exc))
    project_root = folder.resolve().parent
    catalog = load_catalog([folder])
    parts = demo_parts()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task(f"demo world: {parts[0].name}", total=len(parts))

        def advance(part: Part, built: bool) -> None:
            stderr.print(f"{'built' if built else 'up to date'}: {part.name}", highlight=False)
            done = [known.name for known in parts].index(part.name) + 1
            following = parts[done].name if done < len(parts) else "checking"
            progress.update(task, completed=done, description=f"demo world: {following}")

        jobs = usable_cores()
        reports = build_demo_world(project_root, catalog, force, None, advance, jobs)
    stdout.print(_table(reports, project_root))
    if record:
        _record(catalog, [r for r in reports if not r.matches])
        return
    differing = [r for r in reports if r.expected_md5 is not None and not r.matches]
    unrecorded = [r for r in reports if r.expected_md5 is None]
    if unrecorded:
        stderr.print(
            f"[yellow]{len(unrecorded)} file(s) have no size and md5 in the catalog; record the "
            "values above in their entries[/yellow]"
        )
    if differing:
        fail(
            f"{len(differing)} demo file(s) differ from the catalog. The demo extra pins the "
            "encoders the catalog was recorded with: `pip install -e '.[demo]'`, then run "
            f"`vcat demo build --force`. The files are in {DEMO_WORLD}/.",
            code=1,
        )
