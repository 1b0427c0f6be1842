"""Printing text that vcat did not write (entries, paths, server answers) on a Rich console.

Two things can go wrong: Rich reads ``[red]`` or ``[/bold]`` in the text as markup (or
fails on a closing tag with no opening one), and the terminal acts on control characters.
``SafeConsole`` makes control characters visible in everything it prints, and prints a string
whose markup is broken as plain text; ``shown`` escapes markup in a value before it is put
into a markup string, which is still needed for a value that holds well-formed tags.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.errors import MarkupError
from rich.markup import escape
from rich.text import Text

from vcat.controls import visible


def shown(value: object) -> str:
    """``value`` as text to put inside Rich markup: printed exactly, never interpreted."""
    return escape(visible(str(value)))


def literal(value: object, style: str = "") -> Text:
    """``value`` as a Rich ``Text`` (for table cells): no markup, controls made visible."""
    return Text(visible(str(value)), style=style)


class SafeConsole(Console):
    """A Rich console whose printed strings never carry control characters to the terminal.

    Markup in the program's own strings still works; progress bars and live displays, which
    write their cursor movements as control segments rather than text, are unaffected.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        shown_text = visible(text)
        try:
            return super().render_str(shown_text, **kwargs)
        except MarkupError:
            # a value put into markup unescaped ("[/x]" in a path): print it as it is
            # rather than end the command on a message about the message
            return Text(shown_text)
