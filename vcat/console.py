"""The consoles every part of vcat prints on, and failing with a message.

Stages and framework modules print through ``stdout``/``stderr`` and stop with ``fail``
from here, never from the CLI package. The consoles make control characters visible
(``vcat.display.SafeConsole``) and never cut or drop text:

In a terminal, lines are as wide as the terminal and long table cells fold onto more lines.
Through a pipe or into a file the width is ``$COLUMNS`` when set, else unbounded, so
``vcat catalog show X | grep`` sees whole lines; Markdown is printed as its source there,
since rendered Markdown pads lists, rules and code blocks to the full width.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Table

from vcat.display import SafeConsole

if TYPE_CHECKING:
    from rich.progress import Progress, ProgressColumn

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


class _Console(SafeConsole, WholeLinesConsole):
    """Control characters made visible, and no line cut or dropped."""


stdout = _Console(soft_wrap=True)
stderr = _Console(stderr=True, soft_wrap=True)


def stderr_bars(*columns: str | ProgressColumn) -> Progress:
    """Progress bars on stderr, cleared when done; off when stderr is not a terminal (logs)."""
    from rich.progress import Progress

    return Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: the command could not run)."""
    stderr.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    raise typer.Exit(code)
