"""Problems found in user-written files, each tied to a file and a line."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Problem:
    """One finding, printed as ``path:line: severity: message`` like a compiler's."""

    path: Path
    line: int
    severity: Severity
    message: str

    def format(self, relative_to: Path | None = None) -> str:
        return (
            f"{display_path(self.path, relative_to)}:{self.line}: {self.severity}: {self.message}"
        )


class CatalogError(Exception):
    """Problems that stop one file from loading, each with its file and line."""

    def __init__(self, path: Path, line: int, message: str) -> None:
        self.problems = [Problem(path, line, Severity.ERROR, message)]
        super().__init__(self.problems[0].format())

    @classmethod
    def of(cls, problems: list[Problem]) -> CatalogError:
        first = problems[0]
        error = cls(first.path, first.line, first.message)
        error.problems = problems
        return error


def display_path(path: Path, relative_to: Path | None = None) -> str:
    """``path`` relative to ``relative_to`` (default: the working directory) when inside it."""
    base = relative_to or Path.cwd()
    if path.is_absolute() and path.is_relative_to(base):
        return os.path.relpath(path, base)
    return str(path)


def format_location(loc: Iterable[str | int]) -> str:
    """``('sources', 2, 'url')`` -> ``sources[2].url``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text
