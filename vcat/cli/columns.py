"""Printing a plain Rich table as one text: Rich's layout, without its cost per cell.

Rich measures, wraps and pads every cell of a ``Table`` as a renderable of its own, about a
millisecond per cell: `vcat status` of 2,000 entries (14,000 rows) took minutes to draw and
`vcat catalog list` seconds. For the tables vcat prints (one line per cell, left-aligned,
default padding) and when every line fits the console, the same output is a matter of
padding strings; anything else is left to Rich.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Characters Rich lays out in a cell in its own way (line breaks, tab stops).
_BREAKS = re.compile(r"[\n\r\t\v\f\x1c-\x1e\x85\u2028\u2029]")


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console``: exactly what ``console.print(table)`` prints, drawn
    directly when the table is a plain one whose cells are single-line ``Text`` and whose
    lines fit the console; otherwise by Rich (which folds cells to fit)."""
    lines = plain_cells(table)
    if lines is None:
        console.print(table)
        return
    widths = [max(line[i].cell_len for line in lines) for i in range(len(table.columns))]
    safe = console.safe_box if table.safe_box is None else table.safe_box
    box = table.box.substitute(console.options, safe=safe) if table.box else None
    edge = 1 if table.pad_edge else 0
    padded = [width + 2 for width in widths]
    padded[0] -= 1 - edge
    padded[-1] -= 1 - edge
    if sum(padded) + (len(widths) + 1 if box else 0) > console.width:
        console.print(table)
        return
    out = Text()
    if box:
        out.append(box.get_top(padded) + "\n")
    for number, line in enumerate(lines):
        left, divider, right = (
            ("", "", "")
            if box is None
            else (box.head_left, box.head_vertical, box.head_right)
            if number == 0
            else (box.mid_left, box.mid_vertical, box.mid_right)
        )
        out.append(left)
        for i, cell in enumerate(line):
            out.append(" " * (edge if i == 0 else 1))
            out.append_text(cell)
            last = i == len(line) - 1
            out.append(" " * (widths[i] - cell.cell_len + (edge if last else 1)))
            out.append(right if last else divider)
        out.append("\n")
        if number == 0 and box:
            out.append(box.get_row(padded, "head", edge=True) + "\n")
    if box:
        out.append(box.get_bottom(padded) + "\n")
    out.right_crop(1)  # print ends the last line
    console.print(out, markup=False, highlight=False, crop=False)


def plain_cells(table: Table) -> list[list[Text]] | None:
    """Header and rows of ``table`` as styled texts; None when it is not a plain table, one
    that ``print_table`` leaves to Rich."""
    plain_table = (
        table.show_header
        and not table.show_footer
        and not table.show_lines
        and not table.expand
        and table.show_edge
        and table.title is None
        and table.caption is None
        and not table.row_styles
        and table.padding == (0, 1, 0, 1)
        and not table.collapse_padding
        and table.leading == 0
        and table.width is None
        and table.min_width is None
        and table.border_style is None
        and table.style in (None, "", "none")
        and table.columns
    )
    if not plain_table:
        return None
    header_style = table.header_style or ""
    lines: list[list[Text]] = [[] for _ in range(table.row_count + 1)]
    for column in table.columns:
        cells: Sequence[object] = list(column.cells)
        if (
            column.justify != "left"
            or column.width is not None
            or column.min_width is not None
            or column.max_width is not None
            or column.ratio is not None
            or not isinstance(column.header, str)
            or not all(isinstance(cell, Text) for cell in cells)
        ):
            return None
        if _BREAKS.search(column.header) or "[" in column.header:  # no markup to read
            return None
        header = Text(column.header, style=f"{header_style} {column.header_style or ''}".strip())
        lines[0].append(header)
        for row, cell in enumerate(cells, start=1):
            assert isinstance(cell, Text)
            if _BREAKS.search(cell.plain):
                return None
            if column.style:
                styled = Text(style=column.style)
                styled.append_text(cell)
                cell = styled
            lines[row].append(cell)
    return lines
