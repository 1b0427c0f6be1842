"""Local, per-checkout settings: where each dataset's root is on this machine.

The file is ``<project>/.vcat/settings.yaml`` (git-ignored; ``$VCAT_SETTINGS`` names another
file). vcat writes it itself, e.g. when ``vcat verify NAME --root DIR`` passes::

    # Written by vcat; edit with care (see vcat/settings.py).
    roots:
      megadepth-v1: /mnt/big/MegaDepth
    local_roots:          # folders that file: URLs may read (see vcat/localfiles.py)
      - /mnt/nas/datasets

Pipeline stages call ``dataset_root(name)`` instead of hard-coding paths. An entry with no
remembered root lives at ``<project>/data/sources/<name>``, the folder ``vcat fetch`` writes to.

Every change is a read-modify-write under an exclusive lock on ``.settings.yaml.lock`` beside
the file, ending in an atomic rename of a ``0600`` file: processes remembering roots at the same
time all keep theirs, and a reader never sees half a file.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from vcat.catalog.files import ENTRY_NAME_PATTERN
from vcat.catalog.yaml_source import load_yaml
from vcat.problems import CatalogError, Problem, Severity, format_location
from vcat.project import find_project_root
from vcat.secret_files import write_private

SETTINGS_ENV = "VCAT_SETTINGS"
SETTINGS_FILE = Path(".vcat") / "settings.yaml"
SOURCES_DIR = Path("data") / "sources"
_KEYS = ("roots", "local_roots")
_HEADER = (
    "# Written by vcat: `vcat verify NAME --root DIR` records a root once its tree passes.\n"
    "# Each root is an absolute path. Fix or delete a line by hand if a folder moves, or run\n"
    "# `vcat settings forget NAME`. local_roots: folders that file: URLs may read.\n"
)
_FIX_HINT = (
    "fix it by hand (roots: {<entry name>: <absolute path>}, local_roots: [<absolute path>]), "
    "or delete the file and run `vcat verify NAME --root DIR` to write it again"
)


class SettingsError(CatalogError):
    """The settings file cannot be used; each problem names the file and line."""


def _absolute_path(value: str) -> str:
    expanded = os.path.expanduser(value)
    if not os.path.isabs(expanded):
        raise ValueError(f"{value!r} is not an absolute path; write the full path from '/'")
    if "\0" in expanded:
        raise ValueError(f"{value!r} holds a NUL character, which no path can")
    return expanded


def _entry_name(value: str) -> str:
    if not re.match(ENTRY_NAME_PATTERN, value):
        raise ValueError(f"{value!r} is not a catalog entry name")
    return value


AbsolutePath = Annotated[str, AfterValidator(_absolute_path)]


class Settings(BaseModel):
    """The parsed settings file: ``roots`` maps entry names to absolute paths;
    ``local_roots`` lists the folders ``file:`` URLs may read (see ``vcat.localfiles``).
    Either key may be absent, empty or null."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    roots: dict[Annotated[str, AfterValidator(_entry_name)], AbsolutePath] = Field(
        default_factory=dict
    )
    local_roots: tuple[AbsolutePath, ...] = ()

    @field_validator("roots", "local_roots", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any, info: Any) -> Any:
        if value is None:
            return {} if info.field_name == "roots" else ()
        return value


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

    Raises ``SettingsError`` naming the file and line when it is not valid. The parsed file
    is kept while its bytes stay the same, so a command that asks for thousands of roots
    reads the small file each time but parses it once.
    """
    path = settings_path(project_root)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return Settings()
    except OSError:
        raw = None  # load_yaml reports it with the file's name
    cached = _CACHE.get(path)
    if raw is not None and cached is not None and cached[0] == raw:
        return cached[1]
    settings = _parse(path)
    if raw is not None:
        _CACHE[path] = (raw, settings)
    return settings


_CACHE: dict[Path, tuple[bytes, Settings]] = {}


def _parse(path: Path) -> Settings:
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

    Other roots are kept, also those other processes record at the same time (see
    ``update_settings``).
    """
    _entry_name(entry_name)
    root = str(Path(path).expanduser().resolve())
    return update_settings(
        project_root, lambda old: old.model_copy(update={"roots": {**old.roots, entry_name: root}})
    )


def forget_root(project_root: Path | None, entry_name: str) -> bool:
    """Remove the remembered root of ``entry_name``; False when none was remembered."""
    found = False

    def change(old: Settings) -> Settings:
        nonlocal found
        found = entry_name in old.roots
        roots = {name: root for name, root in old.roots.items() if name != entry_name}
        return old.model_copy(update={"roots": roots})

    update_settings(project_root, change)
    return found


def set_local_root(project_root: Path | None, folder: Path, allowed: bool) -> bool:
    """Add ``folder`` (made absolute) to ``local_roots``, or remove it when ``allowed`` is
    False; False when there was nothing to change."""
    target = str(Path(folder).expanduser().resolve())
    changed = False

    def change(old: Settings) -> Settings:
        nonlocal changed
        changed = (target in old.local_roots) != allowed
        if not changed:
            return old
        kept = tuple(root for root in old.local_roots if root != target)
        return old.model_copy(update={"local_roots": (*kept, target) if allowed else kept})

    update_settings(project_root, change)
    return changed


def update_settings(project_root: Path | None, change: Callable[[Settings], Settings]) -> Path:
    """Apply ``change`` to the settings file and write the result; returns the file.

    The read, the change and the write happen under an exclusive ``flock`` on
    ``.<name>.lock`` beside the file, so concurrent updates never lose one another; the new
    file (mode 0600) replaces the old one atomically. A file that does not validate is left
    as it is (``SettingsError``).
    """
    target = settings_path(project_root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _locked(target):
        old = _parse(target) if target.exists() else Settings()
        new = Settings.model_validate(change(old).model_dump())
        _write(target, new)
    return target


@contextmanager
def _locked(target: Path) -> Iterator[None]:
    lock = target.with_name(f".{target.name}.lock")
    handle = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        os.close(handle)  # releases the lock


def _write(target: Path, settings: Settings) -> None:
    document: dict[str, Any] = {"roots": dict(sorted(settings.roots.items()))}
    if settings.local_roots:
        document["local_roots"] = list(settings.local_roots)
    text = _HEADER + yaml.safe_dump(
        document, default_flow_style=False, allow_unicode=True, sort_keys=False
    )
    write_private(target, text)


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
        return f"unknown key {str(loc[-1])!r}; the keys are {', '.join(map(repr, _KEYS))}"
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
