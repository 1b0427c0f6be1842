"""Plain column tables printed as one text: Rich's borderless table layout, without its cost.

Rich measures, wraps and pads every cell of a ``Table`` as a renderable of its own, about a
millisecond per cell: `vcat status` of 2,000 entries (14,000 rows) took minutes to draw. When
every line fits the console, the same layout is a matter of padding strings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from rich.text import Text

#: Between two columns: the right padding of one and the left padding of the next.
GAP = 2
#: Characters Rich lays out in a cell in its own way (line breaks, tab stops).
_BREAKS = re.compile(r"[\n\r\t\v\f\x1c-\x1e\x85\u2028\u2029]")


def print_columns(console: Console, headers: Sequence[str], rows: Sequence[Sequence[Text]]) -> None:
    """Print ``rows`` under ``headers`` exactly as ``Table(*headers, box=None,
    pad_edge=False)`` would when every line fits the console's width; otherwise (or when a
    cell holds a line break or a tab) print that table, which folds cells to fit.

    Cells are ``Text`` (see ``vcat.display.literal``): never read as markup.
    """
    lines = [[Text(header, style="table.header") for header in headers], *rows]
    widths = [max(line[i].cell_len for line in lines) for i in range(len(headers))]
    fits = sum(widths) + GAP * (len(widths) - 1) <= console.width
    if not fits or any(_BREAKS.search(cell.plain) for row in rows for cell in row):
        table = Table(*headers, box=None, pad_edge=False)
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    text = Text()
    last = len(widths) - 1
    for number, line in enumerate(lines):
        if number:
            text.append("\n")
        for i, cell in enumerate(line):
            text.append_text(cell)
            text.append(" " * (widths[i] - cell.cell_len + (GAP if i < last else 0)))
    console.print(text, markup=False, highlight=False)
