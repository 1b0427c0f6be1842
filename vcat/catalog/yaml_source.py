"""Safe YAML loading that remembers where every value came from.

Catalog entries are written by people, so every problem must point at a line. This loader
composes a node tree with PyYAML's safe composer (no object tags, no code execution), then
builds plain Python values itself so that it can:

- record the line of every mapping key and sequence item (``LineMap``);
- reject duplicate keys, which PyYAML silently overwrites;
- reject any tag outside the YAML core schema (``!!python/object`` and friends);
- bound the number of values and characters that aliases expand to, so an alias bomb fails
  fast, and the nesting depth.

The tree is composed by libyaml (PyYAML's C parser) when PyYAML was built with it and that
libyaml refuses deep nesting itself (its composer recurses in C); otherwise, or when
``$VCAT_YAML_PARSER`` is ``pure``, by PyYAML's Python parser, about 30x slower. Both give
nodes with lines, and the checks above run on the nodes, so both paths refuse the same
things. libyaml's grammar decides on its path; a file it refuses is parsed again by the
Python parser only to word the error as on the pure path (which names the offending
character), when the file is short enough for that to be quick.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from functools import cache
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
#: Upper bound on the characters of text after alias expansion (keys and values).
MAX_EXPANDED_CHARS = 10 * MAX_FILE_BYTES
#: Upper bound on nesting (a real entry nests fewer than ten levels).
MAX_DEPTH = 64
#: ``pure`` makes every parse use PyYAML's Python parser (for comparison and tests).
PARSER_ENV = "VCAT_YAML_PARSER"
#: A file libyaml refuses is parsed again by the Python parser, to word the error as on the
#: pure path, when it is at most this long (hand-written entries are a few thousand).
REWORD_MAX_CHARS = 16_000

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
    """A parsed YAML document: its plain value and where each part of it was written.

    ``chars`` counts the characters of text in ``data`` with aliases expanded (at most
    ``MAX_EXPANDED_CHARS``): what writing it out in full would take.
    """

    path: Path
    data: Any
    lines: LineMap
    chars: int = 0


def load_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file safely; raise ``CatalogError`` naming the file and line."""
    return parse_yaml(decode_source(read_source(path), path), path)


def read_source(path: Path) -> bytes:
    """The bytes of ``path``, a regular file of at most ``MAX_FILE_BYTES``; else ``CatalogError``.

    Never blocks on a FIFO nor reads more than the limit from a device or a huge file.
    """
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise CatalogError(path, 1, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise CatalogError(
                path, 1, "not a regular file (a folder, FIFO or device); entries are plain files"
            )
        with os.fdopen(handle, "rb", closefd=False) as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CatalogError(path, 1, f"cannot read file: {exc.strerror or exc}") from exc
    finally:
        os.close(handle)
    if len(raw) > MAX_FILE_BYTES:
        raise CatalogError(
            path,
            1,
            f"file is larger than {MAX_FILE_BYTES:,} bytes, the limit for a catalog entry "
            "(move long lists into a source file)",
        )
    return raw


def decode_source(raw: bytes, path: Path) -> str:
    """``raw`` as UTF-8 text; ``CatalogError`` at the line of the first invalid byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogError(path, line, "file is not valid UTF-8") from exc


def parser_in_use() -> str:
    """``libyaml`` or ``pure``: the parser ``parse_yaml`` composes with in this process now."""
    if os.environ.get(PARSER_ENV) == "pure" or not _libyaml_is_bounded():
        return "pure"
    return "libyaml"


@cache
def _libyaml_is_bounded() -> bool:
    """True when PyYAML has libyaml and that libyaml refuses deep nesting (0.2.6 does, at
    1,000 levels): its composer recurses in C, so without the limit a deep file would
    overflow the C stack instead of raising."""
    if not getattr(yaml, "__with_libyaml__", False):
        return False
    depth = 1100
    try:
        yaml.compose("[" * depth + "]" * depth, Loader=yaml.CSafeLoader)
    except yaml.YAMLError:
        return True
    return False


def parse_yaml(text: str, path: Path) -> YamlDocument:
    """Parse YAML text that came from ``path`` (used in messages only)."""
    nodes = _compose(text, path, parser_in_use())
    if len(nodes) != 1:
        line = nodes[1].start_mark.line + 1 if len(nodes) > 1 else 1
        what = "is empty" if not nodes else "holds more than one document"
        raise CatalogError(path, line, f"file {what}; an entry is exactly one YAML mapping")
    builder = _Builder(path)
    try:
        data = builder.build(nodes[0], ())
    except RecursionError as exc:
        raise CatalogError(path, 1, _TOO_DEEP) from exc
    return YamlDocument(path=path, data=data, lines=builder.lines, chars=builder.chars)


def _compose(text: str, path: Path, parser: str) -> list[yaml.Node]:
    """The documents of ``text`` as node trees; ``CatalogError`` at the line of a syntax error.

    On the libyaml path, libyaml's verdict stands; the Python parser only words the error,
    as it does on the pure path, for a file of at most ``REWORD_MAX_CHARS`` (on a larger
    one, deep nesting could keep it busy for minutes).
    """
    if parser == "pure":
        return _compose_pure(text, path)
    try:
        return list(yaml.compose_all(text, Loader=yaml.CSafeLoader))
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.MarkedYAMLError) and "maximum nesting depth" in str(exc.problem):
            mark = exc.problem_mark
            raise CatalogError(path, 1 if mark is None else mark.line + 1, _TOO_DEEP) from exc
        if len(text) <= REWORD_MAX_CHARS:
            _compose_pure(text, path)  # raises the same error in PyYAML's words
        raise _syntax_error(exc, path, text) from exc


def _compose_pure(text: str, path: Path) -> list[yaml.Node]:
    try:
        return list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _syntax_error(exc, path, text) from exc
    except RecursionError as exc:
        raise CatalogError(path, 1, _TOO_DEEP) from exc


def _syntax_error(exc: yaml.YAMLError, path: Path, text: str) -> CatalogError:
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.position, int):
        line = text.count("\n", 0, exc.position) + 1
        where = (
            f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "a character"
        )
        return CatalogError(path, line, f"invalid YAML: {where}: {exc.reason}")
    if not isinstance(exc, yaml.MarkedYAMLError):
        return CatalogError(path, 1, f"invalid YAML: {_one_line(str(exc))}")
    mark = exc.problem_mark or exc.context_mark
    line = min(mark.line + 1, text.count("\n") + 1) if mark is not None else 1
    message = f"invalid YAML: {exc.problem or 'syntax error'}"
    if exc.context and exc.context_mark is not None:
        message += f" ({exc.context} on line {exc.context_mark.line + 1})"
    return CatalogError(path, line, _one_line(message))


_TOO_DEEP = f"values are nested more than {MAX_DEPTH} levels deep; flatten the entry"
#: Read as plain text: a catalog records no dates, and `title: 2024-13-45` is a title.
_TEXT_TAGS = frozenset({"tag:yaml.org,2002:timestamp"})
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: PyYAML resolves a plain ``=`` key to this tag and reads it as the text ``=``.
_VALUE_TAG = "tag:yaml.org,2002:value"
_STR_TAG = "tag:yaml.org,2002:str"
#: Tags a mapping key may carry besides the allowed ones: ``<<`` and ``=``.
_KEY_TAGS = frozenset({_MERGE_TAG, _VALUE_TAG})
_SAFE = yaml.constructor.SafeConstructor
#: Constructors of the scalar tags, called directly: ``construct_object`` costs 5x more.
_SCALARS: dict[str, Any] = {
    "tag:yaml.org,2002:null": _SAFE.construct_yaml_null,
    "tag:yaml.org,2002:bool": _SAFE.construct_yaml_bool,
    "tag:yaml.org,2002:int": _SAFE.construct_yaml_int,
    "tag:yaml.org,2002:float": _SAFE.construct_yaml_float,
}
#: What PyYAML's scalar constructors raise for a value that matches a tag's pattern but
#: not its range (`!!int ''`, `!!bool maybe`, a 5,000-digit integer).
_CONSTRUCTION_ERRORS = (yaml.YAMLError, ValueError, TypeError, KeyError, IndexError, AttributeError)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_tags(root: yaml.Node, path: Path) -> None:
    """Refuse a tag outside the core schema anywhere under ``root``: for values that a merge
    overrides, which are never built (``build`` checks the others)."""
    seen: set[int] = set()
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, is_key = pending.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.tag not in ALLOWED_TAGS and not (is_key and node.tag in _KEY_TAGS):
            raise CatalogError(
                path,
                node.start_mark.line + 1,
                f"tag {node.tag!r} is not allowed; catalog entries hold plain strings, "
                "numbers, booleans, lists and mappings",
            )
        if isinstance(node, yaml.SequenceNode):
            pending.extend((item, False) for item in reversed(node.value))
        elif isinstance(node, yaml.MappingNode):
            for key, value in reversed(node.value):
                pending.append((value, False))
                pending.append((key, True))


#: A mapping's pairs after merging: key -> (key node, value node), in PyYAML's order.
_Pairs = dict[str, tuple[yaml.Node, yaml.Node]]


class _Builder:
    """Turns a composed node tree into plain values while recording line numbers.

    Nodes are never modified (an alias shares its node with the anchor): merge keys are
    resolved into a table of pairs per mapping node, computed once.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines = LineMap()
        self.expanded = 0
        self.chars = 0
        self.constructor = _SAFE()
        self.active: set[int] = set()
        self.pairs: dict[int, _Pairs] = {}

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
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        if id(node) in self.active:
            raise CatalogError(self.path, line, "recursive alias: a value contains itself")
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            return self._mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode) -> Any:
        self.chars += len(node.value)
        if self.chars > MAX_EXPANDED_CHARS:
            raise CatalogError(
                self.path,
                node.start_mark.line + 1,
                f"aliases expand to more than {MAX_EXPANDED_CHARS:,} characters of text "
                "(an alias bomb?); write the values out or use fewer aliases",
            )
        tag = node.tag
        if tag == _STR_TAG or tag in _TEXT_TAGS:
            return node.value
        try:
            construct = _SCALARS.get(tag)
            if construct is not None:
                return construct(self.constructor, node)
            return self.constructor.construct_object(node, deep=True)
        except _CONSTRUCTION_ERRORS as exc:
            reason = getattr(exc, "problem", None) or f"{type(exc).__name__}: {exc}"
            name = tag.removeprefix("tag:yaml.org,2002:")
            raise CatalogError(
                self.path,
                node.start_mark.line + 1,
                _one_line(f"invalid {name} value {node.value[:40]!r}: {reason}"),
            ) from exc

    def _mapping(self, node: yaml.MappingNode, loc: Location) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in self._pairs(node, len(loc)).items():
            self.lines.lines[(*loc, key)] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, (*loc, key))
        return result

    def _pairs(self, node: yaml.MappingNode, depth: int) -> _Pairs:
        """``node``'s pairs with ``<<`` merge keys resolved as PyYAML does: merged pairs
        first (of several merged mappings, the earlier wins), then the mapping's own, which
        override them; an own key written twice is an error."""
        known = self.pairs.get(id(node))
        if known is not None:
            return known
        line = node.start_mark.line + 1
        if depth > MAX_DEPTH:
            raise CatalogError(self.path, line, _TOO_DEEP)
        merged: list[_Pairs] = []
        own: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self._merge_sources(node, value_node, depth))
            else:
                own.append((key_node, value_node))
        result: _Pairs = {}
        overridden: list[yaml.Node] = []
        for table in merged:
            overridden.extend(result[key][1] for key in table.keys() & result.keys())
            result.update(table)
        written_here: dict[str, int] = {}
        for key_node, value_node in own:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode) or (
                key_node.tag not in ALLOWED_TAGS and key_node.tag != _VALUE_TAG
            ):
                raise CatalogError(self.path, key_line, "mapping keys must be plain strings")
            key = key_node.value if key_node.tag == _VALUE_TAG else str(self._scalar(key_node))
            if key in written_here:
                raise CatalogError(
                    self.path,
                    key_line,
                    f"duplicate key {key!r} (first defined on line {written_here[key]}); "
                    "remove one",
                )
            written_here[key] = key_line
            if key in result:
                overridden.append(result[key][1])
            result[key] = (key_node, value_node)
        for value_node in overridden:
            _check_tags(value_node, self.path)
        self.pairs[id(node)] = result
        return result

    def _merge_sources(self, node: yaml.MappingNode, value: yaml.Node, depth: int) -> list[_Pairs]:
        """The pair tables a ``<<`` value merges, the one that wins last."""
        if isinstance(value, yaml.MappingNode):
            sources = [value]
        elif isinstance(value, yaml.SequenceNode):
            sources = list(reversed(value.value))
            for source in sources:
                if not isinstance(source, yaml.MappingNode):
                    raise CatalogError(
                        self.path,
                        node.start_mark.line + 1,
                        f"invalid merge key: expected a mapping for merging, but found {source.id}",
                    )
        else:
            raise CatalogError(
                self.path,
                node.start_mark.line + 1,
                "invalid merge key: expected a mapping or list of mappings for merging, "
                f"but found {value.id}",
            )
        tables = []
        for source in sources:
            if source.tag not in ALLOWED_TAGS:
                _check_tags(source, self.path)
            if id(source) in self.active or source is node:
                raise CatalogError(
                    self.path,
                    source.start_mark.line + 1,
                    "recursive alias: a value contains itself",
                )
            self.active.add(id(source))
            try:
                tables.append(self._pairs(source, depth + 1))
            finally:
                self.active.discard(id(source))
        return tables
