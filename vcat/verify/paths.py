"""How manifests and stamp files write a path on one line (see ``vcat.verify.manifest``)."""

from __future__ import annotations

import re

_TO_ESCAPE = re.compile("[\\\\\t\n\r\udc80-\udcff]")
_ESCAPED = re.compile(r"\\(x[0-9a-fA-F]{2}|.?)", re.DOTALL)
_SIMPLE_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SIMPLE_UNESCAPES = {value[1]: key for key, value in _SIMPLE_ESCAPES.items()}


def escape_path(path: str) -> str:
    """``path`` with ``\\``, TAB, LF, CR and undecodable bytes escaped."""

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        return _SIMPLE_ESCAPES.get(char) or f"\\x{ord(char) - 0xDC00:02x}"

    return _TO_ESCAPE.sub(replace, path)


def unescape_path(text: str) -> str:
    """The path ``text`` names; ``ValueError`` for an unknown escape."""

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SIMPLE_UNESCAPES:
            return _SIMPLE_UNESCAPES[code]
        if len(code) == 3:
            byte = int(code[1:], 16)
            return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)
        raise ValueError(f"unknown escape '\\{code}' (escapes are \\\\, \\t, \\n, \\r, \\xNN)")

    return _ESCAPED.sub(replace, text)
