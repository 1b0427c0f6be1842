"""Characters that a terminal acts on instead of showing, and how to show them as text.

ESC starts the sequences that recolour text, move the cursor, retitle the window or hide a
link (OSC 8); BEL rings, CR and backspace overwrite what was printed, and the bidi overrides
reorder a line so that it reads differently from what it holds (Trojan Source,
CVE-2021-42574). Text from catalog entries, file names, servers and archives may hold any of
them; vcat refuses them where they are written (catalog entries) and makes them visible
wherever such text is printed.
"""

from __future__ import annotations

import re

#: C0 controls but tab and newline, DEL, C1 controls, line/paragraph separators, and the
#: invisible marks and overrides that reorder text on screen.
UNSAFE_CHARACTERS = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` that a terminal would act on, else None."""
    match = UNSAFE_CHARACTERS.search(text)
    return match.group() if match else None


def visible(text: str) -> str:
    """``text`` with each such character written as its escape (ESC as ``\\x1b``)."""
    return UNSAFE_CHARACTERS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")
