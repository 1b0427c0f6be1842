"""``print_columns`` prints what Rich's borderless table prints, without drawing one."""

from __future__ import annotations

import io

import pytest
from rich.console import Console
from rich.table import Table
from rich.text import Text

from vcat.cli.columns import print_columns
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
    "trailing-spaces": [["a ", " b", "c", "absent", "  "]],
}  # fmt: skip


def rendered(headers: list[str], rows: list[list[Text]], width: int, via_table: bool) -> str:
    console = Console(file=io.StringIO(), width=width, soft_wrap=True, color_system=None)
    if via_table:
        table = Table(*headers, box=None, pad_edge=False)
        for row in rows:
            table.add_row(*row)
        console.print(table)
    else:
        print_columns(console, headers, rows)
    output = console.file.getvalue()
    assert isinstance(output, str)
    return output


@pytest.mark.parametrize("rows", list(ROWS.values()), ids=list(ROWS))
def test_same_text_as_the_table(rows: list[list[str]]) -> None:
    cells = [
        [literal(value, "red" if i == 3 else "") for i, value in enumerate(row)] for row in rows
    ]
    table = rendered(HEADERS, cells, 200, via_table=True)
    assert rendered(HEADERS, cells, 200, via_table=False) == table
    assert "\x1b" not in table and "\x07" not in table


def test_lines_too_wide_for_the_console_fold_as_in_the_table() -> None:
    cells = [[literal("x" * 60), literal("y" * 60), literal("z"), literal("absent"), literal("")]]
    assert rendered(HEADERS, cells, 80, via_table=False) == rendered(
        HEADERS, cells, 80, via_table=True
    )
    assert max(len(line) for line in rendered(HEADERS, cells, 80, False).splitlines()) <= 80


@pytest.mark.parametrize("cell", ["two\nlines", "a\ttab", "carriage\rreturn", "line\u2028sep"])
def test_a_cell_with_a_line_break_or_tab_is_drawn_by_the_table(cell: str) -> None:
    cells = [[Text(cell), Text("b"), Text("c"), Text("d"), Text("e")]]
    assert rendered(HEADERS, cells, 200, via_table=False) == rendered(
        HEADERS, cells, 200, via_table=True
    )
