"""Find catalog entry files, parse them, and validate each against the schema.

Loading never stops at the first bad file: each file either becomes an ``Entry`` or adds
``Problem``s naming its path and line, and the rest of the catalog still loads. Parsed files
are kept in the project's parse cache (``vcat.catalog.parse_cache``), so loading a catalog
again parses only the entries that changed. A command about one entry loads only that
entry's file (``load_around``), and other entries when something asks for them by name.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from vcat.catalog.files import ENTRY_NAME_PATTERN, ENTRY_SUFFIXES, entry_files, kind_folders
from vcat.catalog.parse_cache import ParseCache, cache_for
from vcat.catalog.schema import (
    ENTRY_MODELS,
    KIND_FOLDERS,
    DatasetEntry,
    EntryKind,
    ModelEntry,
    Strict,
)
from vcat.catalog.values import unsafe_values
from vcat.catalog.yaml_source import LineMap, Location, load_yaml
from vcat.problems import CatalogError, Problem, Severity, format_location

ENTRY_SUFFIX = ENTRY_SUFFIXES[0]


@dataclass(frozen=True)
class Entry:
    """A validated catalog entry and where each of its values was written."""

    name: str
    kind: EntryKind
    path: Path
    spec: DatasetEntry | ModelEntry
    lines: LineMap = field(repr=False, compare=False)

    def line(self, *loc: str | int) -> int:
        return self.lines.line_of(loc)

    def problem(self, loc: Location, message: str, severity: Severity = Severity.ERROR) -> Problem:
        return Problem(self.path, self.lines.line_of(loc), severity, message)


@dataclass
class Catalog:
    """Every entry that loaded, plus the problems of those that did not."""

    entries: list[Entry]
    problems: list[Problem]

    def by_name(self) -> Mapping[str, Entry]:
        """Entries keyed by name; on duplicate names the first file (sorted by path) wins."""
        result: dict[str, Entry] = {}
        for entry in self.entries:
            result.setdefault(entry.name, entry)
        return result

    def get(self, name: str) -> Entry:
        """The entry called ``name``; ``KeyError`` with close names when there is none."""
        entries = self.by_name()
        if name in entries:
            return entries[name]
        close = difflib.get_close_matches(name, [n for n in entries if n != name], n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise KeyError(f"no catalog entry named {name!r}.{hint}")

    def of_kind(self, kind: EntryKind | None) -> list[Entry]:
        return [e for e in self.entries if kind is None or e.kind == kind]


def find_entry_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """Entry files under ``paths``: catalog roots, ``datasets``/``models`` folders, or files."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_file():
            files.append(path)
        elif path.is_dir():
            folders = kind_folders(path)
            folders = [folder for folder in folders if folder.is_dir()]
            if not folders:
                problems.append(
                    Problem(
                        path,
                        1,
                        Severity.ERROR,
                        "not a catalog: expected a 'datasets' or 'models' folder of entries",
                    )
                )
            for folder in folders:
                files.extend(p for p in folder.iterdir() if p.suffix in ENTRY_SUFFIXES)
        else:
            problems.append(Problem(path, 1, Severity.ERROR, "no such file or folder"))
    return sorted(set(files)), problems


def load_catalog(paths: Sequence[Path]) -> Catalog:
    """Load every entry under ``paths``; bad files become problems, not exceptions."""
    files, problems = find_entry_files(paths)
    entries: list[Entry] = []
    for path in files:
        try:
            entries.append(load_entry(path, cache_for(path)))
        except CatalogError as exc:
            problems.extend(exc.problems)
    return Catalog(entries=entries, problems=problems)


def load_around(folder: Path, name: str) -> Catalog:
    """The catalog in ``folder`` as one command about entry ``name`` needs it, without
    reading the other entries' files.

    ``entries`` holds the entry ``name`` when it loads (the first file by path, as in
    ``load_catalog``); ``problems`` holds the problems of the files that bear its name.
    ``by_name()`` loads any other entry when it is asked for, and lists the names of all
    files for close-name hints without reading them.
    """
    names = _LazyEntries(folder)
    entry = names.get(name)
    return _PartialCatalog(
        entries=[] if entry is None else [entry],
        problems=list(names.problems_of(name)),
        names=names,
    )


@dataclass
class _PartialCatalog(Catalog):
    names: Mapping[str, Entry] = field(default_factory=dict)

    def by_name(self) -> Mapping[str, Entry]:
        return self.names


class _LazyEntries(Mapping[str, Entry]):
    """The entries of a catalog folder by name, each loaded the first time it is asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.kind_folders = kind_folders(folder)
        self.loaded: dict[str, Entry | None] = {}
        self.problems: dict[str, list[Problem]] = {}
        self._names: list[str] | None = None

    def __getitem__(self, name: str) -> Entry:
        if name not in self.loaded:
            self.loaded[name] = self._load(name)
        entry = self.loaded[name]
        if entry is None:
            raise KeyError(name)
        return entry

    def problems_of(self, name: str) -> list[Problem]:
        """The load problems of the files named ``name`` (after a lookup of ``name``)."""
        return self.problems.get(name, [])

    def _load(self, name: str) -> Entry | None:
        problems: list[Problem] = []
        for path in entry_files(self.folder, name):
            try:
                entry = load_entry(path, cache_for(path))
            except CatalogError as exc:
                problems.extend(exc.problems)
                continue
            self.problems[name] = problems
            return entry
        self.problems[name] = problems
        return None

    def __iter__(self) -> Iterator[str]:
        if self._names is None:
            names: set[str] = set()
            for folder in self.kind_folders:
                try:
                    names.update(
                        child.stem for child in folder.iterdir() if child.suffix in ENTRY_SUFFIXES
                    )
                except OSError:
                    continue
            self._names = sorted(names)
        return iter(self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def load_entry(path: Path, cache: ParseCache | None = None) -> Entry:
    """Load one entry file; raise ``CatalogError`` with every problem when it is invalid.

    With ``cache``, an unchanged file is not parsed again."""
    kind = KIND_FOLDERS.get(path.parent.name)
    if kind is None:
        raise CatalogError(
            path,
            1,
            "cannot tell whether this is a dataset or a model: put it in a folder "
            "named 'datasets' or 'models'",
        )
    if path.suffix != ENTRY_SUFFIX:
        raise CatalogError(path, 1, f"entry files end in {ENTRY_SUFFIX!r}; rename it")
    name = path.stem
    if not re.match(ENTRY_NAME_PATTERN, name):
        raise CatalogError(
            path,
            1,
            f"file name {name!r} is not a valid entry name: use lowercase letters, "
            "digits, '.', '_' and '-'",
        )
    document = load_yaml(path) if cache is None else cache.load(path)
    if not isinstance(document.data, dict):
        raise CatalogError(path, 1, "an entry must be a YAML mapping of keys to values")
    unsafe = [
        Problem(path, document.lines.line_of(loc), Severity.ERROR, message)
        for loc, message in unsafe_values(document.data)
    ]
    if unsafe:
        raise CatalogError.of(unsafe)
    model = ENTRY_MODELS[kind]
    try:
        spec = model.model_validate(document.data)
    except ValidationError as exc:
        raise CatalogError.of(
            [
                Problem(path, document.lines.line_of(err["loc"]), Severity.ERROR, describe(err))
                for err in exc.errors(include_url=False)
            ]
        ) from exc
    assert isinstance(spec, DatasetEntry | ModelEntry)
    return Entry(name=name, kind=kind, path=path, spec=spec, lines=document.lines)


def describe(error: Any) -> str:
    """A one-line message for a pydantic error, in terms of the YAML the user wrote."""
    loc = [part for part in error["loc"] if isinstance(part, int) or "[" not in part]
    where = format_location(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        parent = format_location(loc[:-1])
        close = difflib.get_close_matches(key, known_keys(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown key {key!r}" + (f" in {parent}" if parent else "") + hint
    if kind == "missing":
        parent = format_location(loc[:-1])
        return f"missing required key {str(loc[-1])!r}" + (f" in {parent}" if parent else "")
    message = error["msg"].removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


@cache
def known_keys() -> frozenset[str]:
    """Every key any catalog model accepts, for did-you-mean hints."""
    keys: set[str] = set()
    pending: list[type[BaseModel]] = [Strict]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        keys.update(cls.model_fields)
    return frozenset(keys)
