"""Safe YAML loading that remembers where every value came from.

Catalog entries are written by people, so every problem must point at a line. This loader
parses with PyYAML's safe composer (no object tags, no code execution), then builds plain
Python values itself so that it can:

- record the line of every mapping key and sequence item (``LineMap``);
- reject duplicate keys, which PyYAML silently overwrites;
- reject any tag outside the YAML core schema (``!!python/object`` and friends);
- bound the number of values that aliases expand to, so an alias bomb fails fast.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vcat.problems import CatalogError

#: Tags a catalog entry may carry, explicitly or by implicit resolution.
ALLOWED_TAGS = frozenset(
    "tag:yaml.org,2002:" + name
    for name in ("str", "int", "float", "bool", "null", "map", "seq", "timestamp")
)
#: An entry larger than this is not a hand-written catalog entry.
MAX_FILE_BYTES = 1_000_000
#: Upper bound on values after alias expansion (a real entry has a few thousand).
MAX_EXPANDED_VALUES = 100_000
#: Upper bound on nesting (a real entry nests fewer than ten levels).
MAX_DEPTH = 64

Location = tuple[str | int, ...]


@dataclass
class LineMap:
    """Line numbers (1-based) of the keys and items of a YAML document, by their path."""

    lines: dict[Location, int] = field(default_factory=dict)

    def line_of(self, loc: Location) -> int:
        """The line of the deepest known element along ``loc``.

        ``loc`` may contain elements that are not in the document (pydantic inserts union
        member names); they are skipped, so an error inside a union still gets a line.
        """
        best = self.lines.get((), 1)
        prefix: Location = ()
        for part in loc:
            candidate = (*prefix, part)
            if candidate in self.lines:
                prefix = candidate
                best = self.lines[candidate]
        return best


@dataclass
class YamlDocument:
    """A parsed YAML document: its plain value and where each part of it was written."""

    path: Path
    data: Any
    lines: LineMap


def load_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file safely; raise ``CatalogError`` naming the file and line."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CatalogError(path, 1, f"cannot read file: {exc.strerror}") from exc
    if len(raw) > MAX_FILE_BYTES:
        raise CatalogError(
            path,
            1,
            f"file is {len(raw):,} bytes; catalog entries are limited to "
            f"{MAX_FILE_BYTES:,} bytes (move long lists into a source file)",
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogError(path, line, "file is not valid UTF-8") from exc
    return parse_yaml(text, path)


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse YAML text that came from ``path`` (used in messages only)."""
    last_line = text.count("\n") + 1
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = min(mark.line + 1, last_line) if mark is not None else 1
        message = f"invalid YAML: {exc.problem or 'syntax error'}"
        if exc.context and exc.context_mark is not None:
            message += f" ({exc.context} on line {exc.context_mark.line + 1})"
        raise CatalogError(path, line, message) from exc
    except yaml.YAMLError as exc:
        raise CatalogError(path, 1, f"invalid YAML: {_one_line(str(exc))}") from exc
    except RecursionError as exc:
        raise CatalogError(path, 1, _TOO_DEEP) from exc
    if len(nodes) != 1:
        line = nodes[1].start_mark.line + 1 if len(nodes) > 1 else 1
        what = "is empty" if not nodes else "holds more than one document"
        raise CatalogError(path, line, f"file {what}; an entry is exactly one YAML mapping")
    builder = _Builder(path)
    data = builder.build(nodes[0], ())
    return YamlDocument(path=path, data=data, lines=builder.lines)


_TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep; flatten the entry"
#: Read as plain text: a catalog records no dates, and `title: 2024-13-45` is a title.
_TEXT_TAGS = frozenset({"tag:yaml.org,2002:timestamp"})
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: What PyYAML's scalar constructors raise for a value that matches a tag's pattern but
#: not its range (`!!int ''`, `!!bool maybe`, a 5,000-digit integer).
_CONSTRUCTION_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError, AttributeError)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Builder:
    """Turns a composed node tree into plain values while recording line numbers."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = LineMap()
        self.expanded = 0
        self.constructor = yaml.constructor.SafeConstructor()
        self.active: set[int] = set()

    def build(self, node: yaml.Node, loc: Location) -> Any:
        line = node.start_mark.line + 1
        if len(loc) > MAX_DEPTH:
            raise CatalogError(self.path, line, _TOO_DEEP)
        self.expanded += 1
        if self.expanded > MAX_EXPANDED_VALUES:
            raise CatalogError(
                self.path,
                line,
                f"aliases expand to more than {MAX_EXPANDED_VALUES:,} values "
                "(an alias bomb?); write the values out or use fewer aliases",
            )
        self.lines.lines.setdefault(loc, line)
        if node.tag not in ALLOWED_TAGS:
            raise CatalogError(
                self.path,
                line,
                f"tag {node.tag!r} is not allowed; catalog entries hold plain strings, "
                "numbers, booleans, lists and mappings",
            )
        if id(node) in self.active:
            raise CatalogError(self.path, line, "recursive alias: a value contains itself")
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        if node.tag in _TEXT_TAGS:
            return node.value
        try:
            return self.constructor.construct_object(node, deep=True)
        except _CONSTRUCTION_ERRORS as exc:
            reason = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            tag = node.tag.removeprefix("tag:yaml.org,2002:")
            raise CatalogError(
                self.path,
                node.start_mark.line + 1,
                _one_line(f"invalid {tag} value {node.value[:40]!r}: {reason}"),
            ) from exc

    def _mapping(self, node: yaml.MappingNode, loc: Location) -> dict[str, Any]:
        # After flattening, merged pairs come first, so the mapping's own keys override them.
        own_keys = {id(key) for key, _ in node.value if key.tag != _MERGE_TAG}
        try:
            self.constructor.flatten_mapping(node)  # resolves `<<` merge keys
        except yaml.MarkedYAMLError as exc:
            raise CatalogError(
                self.path, node.start_mark.line + 1, f"invalid merge key: {exc.problem}"
            ) from exc
        result: dict[str, Any] = {}
        written_here: set[str] = set()
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag not in ALLOWED_TAGS:
                raise CatalogError(self.path, key_line, "mapping keys must be plain strings")
            key = str(self._scalar(key_node))
            if key in written_here:
                first = self.lines.lines.get((*loc, key), key_line)
                raise CatalogError(
                    self.path,
                    key_line,
                    f"duplicate key {key!r} (first defined on line {first}); remove one",
                )
            if id(key_node) in own_keys:
                written_here.add(key)
            self.lines.lines[(*loc, key)] = key_line
            result[key] = self.build(value_node, (*loc, key))
        return result
