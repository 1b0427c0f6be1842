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
from vcat.cli.options import JsonOption
from vcat.compare import (
    MISSING,
    WORKSPACE,
    CompareError,
    Comparison,
    NothingChanged,
    Row,
    abbreviate_keys,
    format_delta,
    format_value,
    only_changed,
    plot_metrics,
)
from vcat.console import fail, stderr, stdout
from vcat.problems import display_path

PLOT_HINT_REVISIONS = 3
#: Keys are abbreviated in the middle to fit the terminal, never below this many characters.
KEY_MIN_WIDTH = 16
VALUE_WIDTH = 24  # a value column counted wider than this when fitting keys folds instead


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
    changed_only: Annotated[
        bool,
        typer.Option(
            "--changed-only",
            help="Only the rows whose value differs between the revisions (also with --json).",
        ),
    ] = False,
    as_json: JsonOption = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Also write a PNG with one panel per numeric metric that changed across the "
            "revisions.",
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
        _plot(comparison, plot)
    elif len(chosen) >= PLOT_HINT_REVISIONS and not as_json:
        stderr.print(
            f"[dim]hint: {len(chosen)} revisions read better as a plot: add --plot compare.png"
            "[/dim]"
        )
    shown = only_changed(comparison) if changed_only else comparison
    if as_json:
        stdout.print_json(json.dumps(shown.to_json()))
        return
    _print_tables(shown, metrics, params, changed_only)


def _plot(comparison: Comparison, target: Path) -> None:
    try:
        panels = plot_metrics(comparison, target)
    except NothingChanged as exc:
        stderr.print(f"{escape(str(exc))}; {escape(str(target))} not written", highlight=False)
        return
    except CompareError as exc:
        fail(str(exc))
    unchanged = sum(row.numeric and not row.changed for row in comparison.metrics)
    left_out = f"; {unchanged} unchanged metric(s) left out" if unchanged else ""
    stderr.print(
        f"wrote {escape(display_path(target.resolve()))} ({panels} panels{left_out})",
        highlight=False,
    )


def _print_tables(comparison: Comparison, metrics: bool, params: bool, changed_only: bool) -> None:
    headers = [
        f"{escape(r.spec)}\n[dim]{escape(r.label)}[/dim]" if r.spec != r.short else escape(r.label)
        for r in comparison.revisions
    ]
    shown = [("metrics", comparison.metrics)] if metrics else []
    shown += [("params", comparison.params)] if params else []
    for title, rows in shown:
        if not rows:
            what = "changed" if changed_only else "at these revisions"
            stdout.print(f"[dim]no {title} {what}[/dim]")
            continue
        names = abbreviate_keys(
            [row.key for row in rows] + [row.file for row in rows], _key_width(comparison, rows)
        )
        table = Table("key", *headers, title=title, title_justify="left")
        # the keys keep the width given to them; long values fold inside their cells
        table.columns[0].min_width = 2 + max(len(name) for name in names.values())
        current_file = None
        for row in rows:
            if row.file != current_file:
                if current_file is not None:
                    table.add_section()
                table.add_row(f"[bold cyan]{escape(names[row.file])}[/bold cyan]")
                current_file = row.file
            table.add_row(*_cells(row, names[row.key]))
        stdout.print(table)
    if any(row.changed for _, rows in shown for row in rows):
        stdout.print(
            "[dim]* changed between revisions; yellow: differs from the first revision, "
            "(+x) its difference; - absent[/dim]",
            soft_wrap=False,  # wrapped at the terminal's width; whole through a pipe
        )


def _key_width(comparison: Comparison, rows: list[Row]) -> int:
    """The characters a key may take so that the table fits the console's width: what the
    value columns (each counted at most ``VALUE_WIDTH`` wide: a longer value folds) and the
    borders leave, less the change mark."""
    columns = len(comparison.revisions)
    values = [
        min(
            VALUE_WIDTH,
            max(
                [len(_value_texts(row)[column]) for row in rows]
                + [len(line) for line in _header_lines(comparison, column)]
            ),
        )
        for column in range(columns)
    ]
    borders = 1 + 3 * (columns + 1)
    return max(KEY_MIN_WIDTH, stdout.width - borders - sum(values) - 2)


def _header_lines(comparison: Comparison, column: int) -> list[str]:
    revision = comparison.revisions[column]
    return [revision.spec, revision.label] if revision.spec != revision.short else [revision.label]


def _value_texts(row: Row) -> list[str]:
    """Each revision's value as the table shows it, with its difference where it differs."""
    texts = []
    for column, (value, delta) in enumerate(zip(row.values, row.deltas, strict=True)):
        text = format_value(value)
        if value is not MISSING and column > 0 and row.differs(column) and delta is not None:
            text += f" ({format_delta(delta)})"
        texts.append(text)
    return texts


def _cells(row: Row, key: str) -> list[str]:
    cells = [f"[yellow]* {escape(key)}[/yellow]" if row.changed else f"  {escape(key)}"]
    for column, (value, text) in enumerate(zip(row.values, _value_texts(row), strict=True)):
        if value is MISSING:
            cells.append(f"[dim]{escape(text)}[/dim]")
        elif column > 0 and row.differs(column):
            cells.append(f"[yellow]{escape(text)}[/yellow]")
        else:
            cells.append(escape(text))
    return cells
