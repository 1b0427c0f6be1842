"""Local, per-checkout settings: where each dataset's root is on this machine.

The file is ``<project>/.vcat/settings.yaml`` (git-ignored; ``$VCAT_SETTINGS`` names another
file). vcat writes it itself, e.g. when ``vcat verify NAME --root DIR`` passes::

    # Written by vcat; edit with care (see vcat/settings.py).
    roots:
      megadepth-v1: /mnt/big/MegaDepth

Pipeline stages call ``dataset_root(name)`` instead of hard-coding paths. An entry with no
remembered root lives at ``<project>/data/sources/<name>``, the folder ``vcat fetch`` writes to.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from vcat.catalog.fields import ENTRY_NAME_PATTERN
from vcat.catalog.loader import format_location
from vcat.catalog.yaml_source import load_yaml
from vcat.problems import CatalogError, Problem, Severity
from vcat.project import find_project_root

SETTINGS_ENV = "VCAT_SETTINGS"
SETTINGS_FILE = Path(".vcat") / "settings.yaml"
SOURCES_DIR = Path("data") / "sources"
_HEADER = (
    "# Written by vcat: `vcat verify NAME --root DIR` records a root once its tree passes.\n"
    "# Each root is an absolute path. Fix or delete a line by hand if a folder moves.\n"
)
_FIX_HINT = (
    "fix it by hand (roots: {<entry name>: <absolute path>}), or delete the file and run "
    "`vcat verify NAME --root DIR` to write it again"
)


class SettingsError(CatalogError):
    """The settings file cannot be used; each problem names the file and line."""


def _absolute_path(value: str) -> str:
    expanded = os.path.expanduser(value)
    if not os.path.isabs(expanded):
        raise ValueError(f"{value!r} is not an absolute path; write the full path from '/'")
    return expanded


def _entry_name(value: str) -> str:
    if not re.match(ENTRY_NAME_PATTERN, value):
        raise ValueError(f"{value!r} is not a catalog entry name")
    return value


class Settings(BaseModel):
    """The parsed settings file; ``roots`` maps entry names to absolute paths."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roots: dict[
        Annotated[str, AfterValidator(_entry_name)], Annotated[str, AfterValidator(_absolute_path)]
    ] = Field(default_factory=dict)


def settings_path(project_root: Path | None = None) -> Path:
    """``$VCAT_SETTINGS`` when set, else ``<project>/.vcat/settings.yaml``.

    ``project_root`` defaults to the project enclosing the working directory
    (``ProjectNotFound`` when there is none).
    """
    configured = os.environ.get(SETTINGS_ENV)
    if configured:
        return Path(configured)
    return (project_root or find_project_root()) / SETTINGS_FILE


def load_settings(project_root: Path | None = None) -> Settings:
    """The settings of ``project_root``; empty settings when the file does not exist.

    Raises ``SettingsError`` naming the file and line when it is not valid.
    """
    path = settings_path(project_root)
    if not path.exists():
        return Settings()
    if _is_blank(path):
        return Settings()
    try:
        document = load_yaml(path)
    except CatalogError as exc:
        raise _settings_error(exc.problems) from None
    if not isinstance(document.data, dict):
        raise _settings_error([Problem(path, 1, Severity.ERROR, "expected a mapping with 'roots'")])
    try:
        return Settings.model_validate(document.data)
    except ValidationError as exc:
        problems = [
            Problem(path, document.lines.line_of(err["loc"]), Severity.ERROR, _describe(err))
            for err in exc.errors(include_url=False)
        ]
        raise _settings_error(problems) from None


def remember_root(project_root: Path | None, entry_name: str, path: Path) -> Path:
    """Record ``path`` (made absolute) as the root of ``entry_name``; returns the file written.

    The file is replaced atomically (temporary file, then rename); other roots are kept.
    Two processes remembering at the same instant may lose one of the updates.
    """
    _entry_name(entry_name)
    settings = load_settings(project_root)
    roots = {**settings.roots, entry_name: str(Path(path).expanduser().resolve())}
    target = settings_path(project_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    text = _HEADER + yaml.safe_dump(
        {"roots": dict(sorted(roots.items()))}, default_flow_style=False, allow_unicode=True
    )
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target


def dataset_root(entry_name: str, project_root: Path | None = None) -> Path:
    """Where the data of ``entry_name`` is: the remembered root, else the default.

    The default is ``<project>/data/sources/<entry_name>``, the folder ``vcat fetch`` writes
    to. The path is returned whether or not it exists yet.
    """
    remembered = load_settings(project_root).roots.get(entry_name)
    if remembered is not None:
        return Path(remembered)
    return default_root(entry_name, project_root)


def default_root(entry_name: str, project_root: Path | None = None) -> Path:
    """``<project>/data/sources/<entry_name>``."""
    return (project_root or find_project_root()) / SOURCES_DIR / entry_name


def _describe(error: Any) -> str:
    loc = [part for part in error["loc"] if part != "[key]"]
    if error["type"] == "extra_forbidden":
        return f"unknown key {str(loc[-1])!r}; the only key is 'roots'"
    message = error["msg"].removeprefix("Value error, ")
    where = format_location(loc)
    return f"{where}: {message}" if where else message


def _is_blank(path: Path) -> bool:
    """True when the file holds only blank lines and comments."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # load_yaml reports it with a line
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def _settings_error(problems: list[Problem]) -> SettingsError:
    located = [
        Problem(p.path, p.line, p.severity, f"{p.message}; {_FIX_HINT}") for p in problems[:1]
    ] + problems[1:]
    error = SettingsError(located[0].path, located[0].line, located[0].message)
    error.problems = located
    return error
