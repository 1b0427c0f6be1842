"""Values no catalog entry may hold anywhere, whatever the field: terminal control characters
and numbers that are not finite.

Entry text is printed by every command. A control character (ESC starts the sequences that
recolour, move the cursor, retitle the window or hide links; CR and bidi overrides make a
line read differently from what it holds) has no business in a title or a note, so it is
refused where it was written instead of escaped wherever it is shown. Newlines and tabs stay
allowed in text; path fields refuse them too (``vcat.catalog.fields``).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from vcat.catalog.yaml_source import Location
from vcat.controls import unsafe_character


def unsafe_values(data: Any, loc: Location = ()) -> Iterator[tuple[Location, str]]:
    """``(location, message)`` for every key or value of a parsed entry that holds a control
    character, and every number that is not finite (``.inf``, ``.nan``)."""
    if isinstance(data, str):
        yield from _text(data, loc, "text")
    elif isinstance(data, float) and not math.isfinite(data):
        yield loc, f"{_where(loc)}{data!r} is not a finite number"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _text(str(key), (*loc, key), "key")
            yield from unsafe_values(value, (*loc, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from unsafe_values(item, (*loc, i))


def _text(text: str, loc: Location, what: str) -> Iterator[tuple[Location, str]]:
    bad = unsafe_character(text)
    if bad is not None:
        yield (
            loc,
            f"{_where(loc)}{what} holds the control character {bad!r} (U+{ord(bad):04X}), "
            "which terminals act on instead of showing; remove it",
        )


def _where(loc: Location) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return f"{text}: " if text else ""
