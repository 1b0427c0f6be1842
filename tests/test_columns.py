"""``print_table`` prints exactly what Rich prints for the same table, drawn directly."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from rich import box
from rich.console import Console
from rich.table import Column, Table
from rich.text import Text

from vcat.cli.columns import plain_cells, print_table
from vcat.display import literal

HEADERS = ["entry", "part", "name", "state", "detail"]

ROWS: dict[str, list[list[str]]] = {
    "no-rows": [],
    "plain": [["demo-video", "source", "flythrough", "absent", ""]],
    "header-wider": [["a", "b", "c", "d", "e"]],
    "many": [[f"entry-{i}", "subset", f"n{i * 7}", "verified", f"md5:{i:032x}"] for i in range(40)],
    "wide-characters": [["数据集", "source", "名前", "fetched", "présent ✓"]],
    "controls-made-visible": [["esc\x1b[31m", "source", "del\x7fhere", "failed:http", "bell\x07"]],
    "markup-is-text": [["[bold]x[/bold]", "source", "[/red]", "partial", "[link=x]y"]],
    "spaces": [["a ", " b", "c", "absent", "  "]],
}  # fmt: skip

#: The tables vcat prints: `vcat status` (borderless) and `vcat catalog list` (boxed).
LAYOUTS: dict[str, Callable[[], Table]] = {
    "status": lambda: Table(*HEADERS, box=None, pad_edge=False),
    "catalog-list": lambda: Table(Column(HEADERS[0], no_wrap=True, style="bold"), *HEADERS[1:]),
    "rounded-padded": lambda: Table(*HEADERS, box=box.ROUNDED),
    "borderless-padded": lambda: Table(*HEADERS, box=None),
}


def filled(layout: str, rows: list[list[str]]) -> Table:
    table = LAYOUTS[layout]()
    for row in rows:
        table.add_row(*(literal(value, "red" if i == 3 else "") for i, value in enumerate(row)))
    return table


def printed(make: Callable[[], Table], width: int, fast: bool, **console: object) -> str:
    out = io.StringIO()
    target = Console(file=out, width=width, soft_wrap=True, color_system=None, **console)
    if fast:
        print_table(target, make())
    else:
        target.print(make())
    return out.getvalue()


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("rows", list(ROWS.values()), ids=list(ROWS))
def test_same_text_as_rich(layout: str, rows: list[list[str]]) -> None:
    assert plain_cells(filled(layout, rows)) is not None  # drawn directly, not by Rich
    expected = printed(lambda: filled(layout, rows), 200, fast=False)
    assert printed(lambda: filled(layout, rows), 200, fast=True) == expected
    assert "\x1b" not in expected and "\x07" not in expected


def test_same_colours_as_rich_in_a_terminal() -> None:
    rows = ROWS["many"]
    for layout in LAYOUTS:
        fast = printed(lambda layout=layout: filled(layout, rows), 200, True, force_terminal=True)
        rich = printed(lambda layout=layout: filled(layout, rows), 200, False, force_terminal=True)
        assert Text.from_ansi(fast).plain == Text.from_ansi(rich).plain


def test_an_ascii_only_console_gets_rich_s_ascii_box() -> None:
    rows = ROWS["plain"]
    make = lambda: filled("catalog-list", rows)  # noqa: E731
    fast = printed(make, 200, True, legacy_windows=True, safe_box=True)
    assert fast == printed(make, 200, False, legacy_windows=True, safe_box=True)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_lines_too_wide_for_the_console_fold_as_rich_folds_them(layout: str) -> None:
    rows = [["x" * 60, "y" * 60, "z", "absent", ""]]
    expected = printed(lambda: filled(layout, rows), 80, fast=False)
    assert printed(lambda: filled(layout, rows), 80, fast=True) == expected
    assert max(len(line) for line in expected.splitlines()) <= 80


@pytest.mark.parametrize(
    "cell", ["two\nlines", "a\ttab", "carriage\rreturn", "line\u2028sep", "form\x0cfeed"]
)
def test_a_cell_with_a_line_break_or_tab_is_left_to_rich(cell: str) -> None:
    def make() -> Table:
        table = Table(*HEADERS, box=None, pad_edge=False)
        table.add_row(Text(cell), Text("b"), Text("c"), Text("d"), Text("e"))
        return table

    assert printed(make, 200, fast=True) == printed(make, 200, fast=False)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Table("a", "b", title="A title"),
        lambda: Table("a", "b", show_lines=True),
        lambda: Table("a", "b", show_header=False),
        lambda: Table("a", "b", padding=(0, 2)),
        lambda: Table("a", "b", row_styles=["dim", ""]),
        lambda: Table("a", Column("b", justify="right")),
        lambda: Table("a", "b", expand=True),
        lambda: Table("[bold]a[/bold]", "b"),
        lambda: Table("a", "b", style="on blue"),
    ],
    ids=[
        "title",
        "lines",
        "no-header",
        "padding",
        "row-styles",
        "right",
        "expand",
        "markup",
        "table-style",
    ],
)
def test_other_tables_are_left_to_rich(make: Callable[[], Table]) -> None:
    def filled_table() -> Table:
        table = make()
        table.add_row(Text("one"), Text("two"))
        table.add_row(Text("[i]markup[/i] string"), Text("2"))
        return table

    assert plain_cells(filled_table()) is None

    assert printed(filled_table, 100, fast=True) == printed(filled_table, 100, fast=False)


def test_cells_that_are_not_text_are_left_to_rich() -> None:
    def make() -> Table:
        table = Table("a", "b")
        table.add_row("[i]markup[/i] string", Text("2"))
        return table

    assert plain_cells(make()) is None
    assert printed(make, 100, fast=True) == printed(make, 100, fast=False)
