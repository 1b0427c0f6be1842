"""`vcat compare REV...`: metrics and params of git revisions side by side.

``--json`` prints the ``vcat.compare/1`` format documented in docs/cli-json.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from vcat import compare as core
from vcat.cli.common import fail, stderr, stdout
from vcat.cli.options import JsonOption
from vcat.compare import (
    MISSING,
    WORKSPACE,
    CompareError,
    Comparison,
    Row,
    format_delta,
    format_value,
    plot_metrics,
)
from vcat.problems import display_path

PLOT_HINT_REVISIONS = 3


def compare(
    revs: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="REV",
            help=f"Git revisions (commits, tags, branches, HEAD~N) or `{WORKSPACE}` for the "
            "uncommitted tree; the first is the reference for differences. Default: HEAD "
            f"{WORKSPACE}.",
            show_default=False,
        ),
    ] = None,
    metrics: Annotated[
        bool, typer.Option("--metrics/--no-metrics", help="Show the metrics DVC tracks.")
    ] = True,
    params: Annotated[
        bool, typer.Option("--params/--no-params", help="Show the params (params.yaml).")
    ] = True,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also write a PNG with one panel per numeric metric across the revisions.",
            dir_okay=False,
        ),
    ] = None,
) -> None:
    """Show every metric and param at each revision, marking changes and differences from the
    first revision."""
    if not metrics and not params:
        fail("--no-metrics with --no-params leaves nothing to compare")
    chosen = revs or ["HEAD", WORKSPACE]
    try:
        comparison = core.compare(chosen, metrics=metrics, params=params)
    except CompareError as exc:
        fail(str(exc))
    for notice in comparison.notices:
        stderr.print(f"[yellow]notice:[/yellow] {escape(notice.format())}", highlight=False)
    if plot is not None:
        try:
            panels = plot_metrics(comparison, plot)
        except CompareError as exc:
            fail(str(exc))
        stderr.print(f"wrote {escape(display_path(plot.resolve()))} ({panels} panels)")
    elif len(chosen) >= PLOT_HINT_REVISIONS and not as_json:
        stderr.print(
            f"[dim]hint: {len(chosen)} revisions read better as a plot: add --plot compare.png"
            "[/dim]"
        )
    if as_json:
        stdout.print_json(json.dumps(comparison.to_json()))
        return
    _print_tables(comparison, metrics, params)


def _print_tables(comparison: Comparison, metrics: bool, params: bool) -> None:
    headers = [
        f"{escape(r.spec)}\n[dim]{escape(r.label)}[/dim]" if r.spec != r.short else escape(r.label)
        for r in comparison.revisions
    ]
    shown = [("metrics", comparison.metrics)] if metrics else []
    shown += [("params", comparison.params)] if params else []
    for title, rows in shown:
        if not rows:
            stdout.print(f"[dim]no {title} at these revisions[/dim]")
            continue
        table = Table("key", *headers, title=title, title_justify="left")
        current_file = None
        for row in rows:
            if row.file != current_file:
                if current_file is not None:
                    table.add_section()
                table.add_row(f"[bold cyan]{escape(row.file)}[/bold cyan]")
                current_file = row.file
            table.add_row(*_cells(row))
        stdout.print(table)
    if any(row.changed for _, rows in shown for row in rows):
        stdout.print(
            "[dim]* changed between revisions; yellow: differs from the first revision, "
            "(+x) its difference; - absent[/dim]"
        )


def _cells(row: Row) -> list[str]:
    key = f"[yellow]* {escape(row.key)}[/yellow]" if row.changed else f"  {escape(row.key)}"
    cells = [key]
    for column, (value, delta) in enumerate(zip(row.values, row.deltas, strict=True)):
        text = escape(format_value(value))
        if value is MISSING:
            text = f"[dim]{text}[/dim]"
        elif column > 0 and row.differs(column):
            if delta is not None:
                text += f" ({format_delta(delta)})"
            text = f"[yellow]{text}[/yellow]"
        cells.append(text)
    return cells
