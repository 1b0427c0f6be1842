"""Parsed catalog files kept on disk by content, so that an unchanged entry is not parsed again.

The cache of a project is ``<project>/.vcat/cache/catalog/`` (``$VCAT_CACHE`` names another
folder, or ``off`` for none; a catalog outside any project has none). Each parsed file is one
JSON file named by a key: the SHA-256 of the file's bytes together with a tag of everything
that decides the parse (this format, the source of ``yaml_source``, PyYAML's version, the
parser in use). An edit that keeps the size and modification time still changes the key, and
so does a new vcat. Files are written whole under a temporary name and then renamed, so
processes writing and reading at once never see half a file; a file that does not read back
as a cached document is ignored and replaced. Only files that parsed cleanly are stored: a
broken one is parsed, and its problems reported, every time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from vcat.catalog import yaml_source
from vcat.catalog.yaml_source import (
    LineMap,
    YamlDocument,
    decode_source,
    parse_yaml,
    parser_in_use,
    read_source,
)
from vcat.project import ProjectNotFound, find_project_root

CACHE_ENV = "VCAT_CACHE"
CACHE_FOLDER = Path(".vcat") / "cache" / "catalog"
#: Bumped whenever the layout of a cached document changes.
FORMAT = 2
#: A cached document larger than this was not written by us (text is bounded by the parser).
_MAX_CACHED_BYTES = 8 * yaml_source.MAX_EXPANDED_CHARS


@dataclass(frozen=True)
class ParseCache:
    """A folder of parsed documents; ``load`` reads through it."""

    folder: Path
    tag: bytes

    def load(self, path: Path) -> YamlDocument:
        """``load_yaml(path)``, from the cache when this content was parsed before."""
        raw = read_source(path)
        key = hashlib.sha256(self.tag + raw).hexdigest()
        cached = self._read(key, path)
        if cached is not None:
            return cached
        document = parse_yaml(decode_source(raw, path), path)
        self._write(key, document)
        return document

    def _read(self, key: str, path: Path) -> YamlDocument | None:
        try:
            with (self.folder / f"{key}.json").open("rb") as stream:
                text = stream.read(_MAX_CACHED_BYTES + 1)
        except OSError:
            return None
        if len(text) > _MAX_CACHED_BYTES:
            return None
        return _decode(text, key, path)

    def _write(self, key: str, document: YamlDocument) -> None:
        payload = {
            "format": FORMAT,
            "key": key,
            "data": document.data,
            "locations": list(document.lines.lines),
            "lines": list(document.lines.lines.values()),
            "chars": document.chars,
        }
        try:
            # dumps, not dump: dump streams through the pure-Python encoder, 5x slower
            # ASCII: whatever a value holds, the file is plain text in any locale
            text = json.dumps(payload, separators=(",", ":"))
        except (ValueError, TypeError, RecursionError):
            return
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(prefix=".tmp-", dir=self.folder)
        except OSError:
            return  # a read-only or full disk: work without the cache
        try:
            with os.fdopen(handle, "w", encoding="ascii") as stream:
                stream.write(text)
            os.replace(temporary, self.folder / f"{key}.json")
        except BaseException as exc:
            Path(temporary).unlink(missing_ok=True)
            if not isinstance(exc, OSError):
                raise


def _decode(text: bytes, key: str, path: Path) -> YamlDocument | None:
    """The document stored in ``text``, or None when it is not one we wrote for ``key``."""
    try:
        payload = json.loads(text)
        if (
            not isinstance(payload, dict)
            or payload.get("format") != FORMAT
            or payload.get("key") != key
        ):
            return None
        locations, numbers = payload["locations"], payload["lines"]
        # Type checks by set, at C speed (this runs for every entry of every command). A
        # location part of another type can only fail to match; lines must be numbers.
        if (
            type(locations) is not list
            or type(numbers) is not list
            or len(locations) != len(numbers)
            or not set(map(type, locations)) <= {list}
            or not set(map(type, numbers)) <= {int}
        ):
            return None
        lines = dict(zip(map(tuple, locations), numbers, strict=True))
        chars = payload["chars"]
        if type(chars) is not int:
            return None
        data: Any = payload["data"]
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    return YamlDocument(path=path, data=data, lines=LineMap(lines), chars=chars)


def cache_for(path: Path) -> ParseCache | None:
    """The cache for catalog file ``path``: ``$VCAT_CACHE``, else its project's; None when
    caching is off or the file is in no project."""
    configured = os.environ.get(CACHE_ENV)
    if configured == "off":
        return None
    parser = parser_in_use()
    if configured:
        return _cache(Path(configured), parser)
    project = _project_of(os.path.abspath(path.parent))
    return None if project is None else _cache(project / CACHE_FOLDER, parser)


@cache
def _cache(folder: Path, parser: str) -> ParseCache:
    return ParseCache(folder, _tag(parser))


@cache
def _project_of(folder: str) -> Path | None:
    try:
        return find_project_root(Path(folder))
    except (ProjectNotFound, OSError):
        return None


def _tag(parser: str) -> bytes:
    """What, besides the file's bytes, decides a parse: a new vcat or PyYAML gets new keys."""
    code = Path(yaml_source.__file__).read_bytes()
    about = f"vcat-catalog-parse/{FORMAT}/pyyaml-{yaml.__version__}/{parser}/".encode()
    return hashlib.sha256(about + code).digest()
