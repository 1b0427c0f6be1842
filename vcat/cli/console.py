"""A Rich console that never cuts or drops text.

In a terminal, lines are as wide as the terminal and long table cells fold onto more lines.
Through a pipe or into a file the width is ``$COLUMNS`` when set, else unbounded, so
``vcat catalog show X | grep`` sees whole lines; Markdown is printed as its source there,
since rendered Markdown pads lists, rules and code blocks to the full width.
"""

from __future__ import annotations

import os
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.table import Table

#: The width through a pipe without $COLUMNS: wide enough that no line of ours reaches it.
UNBOUNDED = 100_000


def fold_cells(table: Table) -> Table:
    """``table`` with every column wrapping and folding long words instead of cutting them."""
    for column in table.columns:
        column.no_wrap = False
        column.overflow = "fold"
    return table


class WholeLinesConsole(Console):
    """A console whose width follows the stream it writes to at the time of printing."""

    def __init__(self, **settings: Any) -> None:
        super().__init__(**settings)
        # Rich fixes the width from $COLUMNS when constructed; here it is read at each print
        self._fixed_width = settings.get("width")
        self._width = self._fixed_width

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        if self._fixed_width is not None or self.is_terminal:
            return dimensions
        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else UNBOUNDED
        return ConsoleDimensions(width, dimensions.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]
        self._fixed_width = self._width

    def print(self, *objects: Any, **settings: Any) -> None:
        super().print(*(self._whole(item) for item in objects), **settings)

    def _whole(self, item: Any) -> Any:
        if isinstance(item, Table):
            return fold_cells(item)
        source = getattr(item, "markup", None)
        if not self.is_terminal and _is_markdown(item) and isinstance(source, str):
            return self.render_str(source, markup=False, highlight=False, emoji=False)
        return item


def _is_markdown(item: Any) -> bool:
    # by class name, so that printing never imports rich.markdown (a slow import)
    return any(cls.__name__ == "Markdown" for cls in type(item).__mro__)
