"""Changing values of one source in a catalog entry file, keeping everything else as written.

The file is edited with ruamel.yaml's round-trip mode, which keeps comments, key order,
quoting and flow style. An edit is made only when re-writing the unchanged file reproduces it
byte for byte (so the only lines that change are those of the new values), and only when the
edited text parses, with vcat's own loader, to the old values with exactly the new ones set
and still fits the schema. The file is replaced atomically, keeping its permissions.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import YAMLError

from vcat.catalog.schema import ENTRY_MODELS, KIND_FOLDERS
from vcat.catalog.yaml_source import Location, parse_yaml
from vcat.problems import CatalogError, format_location

#: The order of a source's keys in the catalog; a new key goes after those before it here.
SOURCE_KEY_ORDER = (
    "name", "url", "filename", "size", "size_published", "checksum", "checksum_source", "etag",
    "archive", "unpack_to", "description", "known_issue",
)  # fmt: skip
#: The indentations the catalog is written in: (mapping, sequence, offset of "- ").
_STYLES = ((2, 4, 2), (2, 2, 0), (4, 6, 4), (4, 4, 0))


class EditError(Exception):
    """The entry cannot be changed in place; the message names the file and what to do."""


def set_source_values(path: Path, loc: Location, values: Mapping[str, Any]) -> None:
    """Set ``values`` (key -> plain value or mapping) in the source at ``loc`` of the entry
    ``path`` (``("sources", 2)`` or ``("weights",)``), adding missing keys in catalog order."""
    text = _read(path)
    yaml = _round_trip(path, text)
    document = yaml.load(text)
    source = _source_at(path, document, loc)
    for key, value in values.items():
        new = _block(value)
        if key in source:
            source[key] = new
        else:
            source.insert(_position(source, key), key, new)
    out = io.StringIO()
    yaml.dump(document, out)
    edited = out.getvalue()
    _check(path, text, edited, loc, values)
    _replace(path, edited)


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise EditError(f"{path}: cannot read the entry: {exc}") from exc


def _round_trip(path: Path, text: str) -> YAML:
    """A round-trip YAML writer that reproduces ``text`` exactly, or ``EditError``."""
    for mapping, sequence, offset in _STYLES:
        yaml = YAML(typ="rt")
        yaml.preserve_quotes = True
        yaml.width = 4096  # never fold a long line the file did not fold
        yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
        try:
            out = io.StringIO()
            yaml.dump(yaml.load(text), out)
        except YAMLError as exc:
            raise EditError(f"{path}: not valid YAML: {' '.join(str(exc).split())}") from exc
        if out.getvalue() == text:
            return yaml
    raise EditError(
        f"{path}: cannot be rewritten without changing its layout (indentation or line "
        "breaks vcat does not reproduce); write the values by hand"
    )


def _source_at(path: Path, document: Any, loc: Location) -> CommentedMap:
    node = document
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            raise EditError(f"{path}: no source at {format_location(loc)}") from None
    if not isinstance(node, CommentedMap):
        raise EditError(f"{path}: {format_location(loc)} is not a mapping of keys to values")
    return node


def _block(value: Any) -> Any:
    if isinstance(value, Mapping):
        mapping = CommentedMap()
        for key, item in value.items():
            mapping[key] = _block(item)
        return mapping
    return value


def _position(source: CommentedMap, key: str) -> int:
    """Index after the last existing key that comes before ``key`` in catalog order."""
    rank = SOURCE_KEY_ORDER.index(key) if key in SOURCE_KEY_ORDER else len(SOURCE_KEY_ORDER)
    keys = list(source)
    position = 0
    for index, existing in enumerate(keys):
        if existing in SOURCE_KEY_ORDER and SOURCE_KEY_ORDER.index(existing) < rank:
            position = index + 1
    return position


def _check(path: Path, before: str, after: str, loc: Location, values: Mapping[str, Any]) -> None:
    """The edit changed exactly ``values`` and the entry still fits the schema."""
    try:
        old = parse_yaml(before, path).data
        new = parse_yaml(after, path).data
    except CatalogError as exc:
        raise EditError(f"{path}: the edited entry does not parse: {exc}") from exc
    expected = _with_values(old, loc, values)
    if new != expected:
        raise EditError(
            f"{path}: editing would change more than the new values; write them by hand"
        )
    kind = KIND_FOLDERS.get(path.parent.name)
    if kind is not None:
        try:
            ENTRY_MODELS[kind].model_validate(new)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = format_location(first["loc"])
            raise EditError(
                f"{path}: the new values do not fit the schema: {where}: {first['msg']}"
            ) from exc


def _with_values(data: Any, loc: Sequence[str | int], values: Mapping[str, Any]) -> Any:
    if not loc:
        return {**data, **{k: _plain(v) for k, v in values.items()}}
    head, *rest = loc
    if isinstance(data, list):
        copy = list(data)
        copy[head] = _with_values(data[head], rest, values)  # type: ignore[index]
        return copy
    return {**data, head: _with_values(data[head], rest, values)}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        shutil.copymode(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
