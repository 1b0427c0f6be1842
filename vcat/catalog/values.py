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
from vcat.controls import UNSAFE_CHARACTERS, unsafe_character


def unsafe_values(data: Any, loc: Location = ()) -> Iterator[tuple[Location, str]]:
    """``(location, message)`` for every key or value of a parsed entry that holds a control
    character, and every number that is not finite (``.inf``, ``.nan``)."""
    if _all_safe(data):  # the common case, checked without building locations
        return
    yield from _located(data, loc)


def _all_safe(data: Any) -> bool:
    pending = [data]
    search = UNSAFE_CHARACTERS.search
    while pending:
        value = pending.pop()
        if isinstance(value, str):
            if search(value):
                return False
        elif isinstance(value, dict):
            if any(search(str(key)) for key in value):
                return False
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
        elif isinstance(value, float) and not math.isfinite(value):
            return False
    return True


def _located(data: Any, loc: Location) -> Iterator[tuple[Location, str]]:
    if isinstance(data, str):
        yield from _text(data, loc, "text")
    elif isinstance(data, float) and not math.isfinite(data):
        yield loc, f"{_where(loc)}{data!r} is not a finite number"
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _text(str(key), (*loc, key), "key")
            yield from _located(value, (*loc, key))
    elif isinstance(data, list):
        for i, item in enumerate(data):
            yield from _located(item, (*loc, i))


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
