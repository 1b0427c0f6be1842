"""`vcat status [NAME]`: one state per source and subset, read from disk (nothing fetched).

``--json`` prints the ``vcat.status/1`` format documented in docs/cli-json.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vcat.catalog.loader import load_catalog
from vcat.cli.columns import print_table
from vcat.cli.common import load_entry, root_of
from vcat.cli.options import CatalogOption, JsonOption
from vcat.console import fail, stdout
from vcat.display import literal
from vcat.fetch.status import StatusRow, entry_status
from vcat.project import ProjectNotFound, default_catalog_dir

STATUS_FORMAT = "vcat.status/1"


def _style(state: str) -> str:
    if state in ("verified", "manual:present"):
        return "green"
    if state.startswith("failed") or state in ("manual:missing", "damaged"):
        return "red"
    return "yellow" if state in ("partial", "fetched", "changed") else "dim"


def status(
    name: Annotated[str | None, typer.Argument(help="Entry name (default: every entry).")] = None,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Hash every fetched file instead of comparing sizes, times and inodes.",
        ),
    ] = False,
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Show whether each source and subset is absent, partial, fetched, verified, changed,
    damaged or failed.

    A source is verified (or fetched) only while its files are as the fetch left them: each
    file's size, modification and change times and inode are compared with what the fetch
    recorded (nothing is read); --full hashes them all.
    """
    if name is not None:
        entries = [load_entry(name, catalog_dir)]
    else:
        try:
            entries = load_catalog([catalog_dir or default_catalog_dir()]).entries
        except ProjectNotFound as exc:
            fail(str(exc))
    rows: list[StatusRow] = []
    roots: dict[str, Path] = {}
    for entry in entries:
        roots[entry.name] = root_of(
            entry.name, "not inside a vcat project: run vcat status from a checkout"
        )
        rows.extend(entry_status(entry, roots[entry.name], full))
    if as_json:
        document = {
            "format": STATUS_FORMAT,
            "roots": {entry: str(root) for entry, root in roots.items()},
            "items": [row.__dict__ for row in rows],
        }
        # plain json (escaped to ASCII, as `catalog list --json`): Rich's print_json runs its
        # highlighter over the whole text, seconds for 2,000 entries
        typer.echo(json.dumps(document, indent=2))
        return
    table = Table("entry", "part", "name", "state", "detail", box=None, pad_edge=False)
    for row in rows:
        state = literal(row.state, _style(row.state))
        table.add_row(literal(row.entry), literal(row.part), literal(row.name), state,
                      literal(row.detail))  # fmt: skip
    print_table(stdout, table)
