"""The C (libyaml) and the pure-Python parse paths keep every guarantee of ``yaml_source``.

Each hostile case runs on both paths: duplicate keys, tags (also where a merge hides them),
alias bombs by count and by text, nesting (below, at and beyond libyaml's own limit), size,
files that are not regular, and syntax errors located at the right line with the same words.
The whole of ``test_bad_entries.py`` also runs again with the pure parser (the default run
uses libyaml).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from vcat.catalog.yaml_source import (
    MAX_EXPANDED_CHARS,
    MAX_EXPANDED_VALUES,
    MAX_FILE_BYTES,
    PARSER_ENV,
    REWORD_MAX_CHARS,
    load_yaml,
    parse_yaml,
    parser_in_use,
)
from vcat.problems import CatalogError

REPO = Path(__file__).resolve().parents[1]
PARSERS = ["libyaml", "pure"]


@pytest.fixture(params=PARSERS)
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Selects a parse path for the test and checks that it is the one in use."""
    use(request.param, monkeypatch)
    return request.param


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def error_of(text: str) -> tuple[int, str]:
    with pytest.raises(CatalogError) as raised:
        parse_yaml(text, Path("bad.yaml"))
    [problem] = raised.value.problems
    assert problem.path == Path("bad.yaml")
    assert "\n" not in problem.message
    return problem.line, problem.message


def test_libyaml_is_used_by_default() -> None:
    assert yaml.__with_libyaml__, "PyYAML was built without libyaml: parsing is 30x slower"
    env = {k: v for k, v in os.environ.items() if k != PARSER_ENV}
    code = "from vcat.catalog.yaml_source import parser_in_use; print(parser_in_use())"
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "libyaml"


HOSTILE: dict[str, tuple[str, int, str]] = {
    "duplicate-top-level": ("a: 1\nb: 2\na: 3\n", 3, "duplicate key 'a' (first defined on line 1)"),
    "duplicate-nested": ("x:\n  a: 1\n  a: 2\n", 3, "duplicate key 'a' (first defined on line 2)"),
    "duplicate-in-flow": ("x: {a: 1, b: 2, a: 3}\n", 1, "duplicate key 'a'"),
    "duplicate-after-merge": (
        "d: &d {k: 1}\nx:\n  <<: *d\n  y: 1\n  y: 2\n",
        5,
        "duplicate key 'y' (first defined on line 4)",
    ),
    "python-object": ("a: !!python/object/apply:os.system [ls]\n", 1, "is not allowed"),
    "python-name-nested": ("x:\n  y:\n    - !!python/name:os.system\n", 3, "is not allowed"),
    "local-tag": ("a: !include other.yaml\n", 1, "tag '!include' is not allowed"),
    "binary": ("a: !!binary aGVsbG8=\n", 1, "'tag:yaml.org,2002:binary' is not allowed"),
    "tag-on-key": ("? !!python/name:os.system\n: 1\n", 1, "mapping keys must be plain strings"),
    "tag-in-overridden-merge-value": (
        "x:\n  <<:\n    a: !!python/name:os.system\n  a: 1\n",
        3,
        "is not allowed",
    ),
    "tag-on-merged-mapping": ("x:\n  <<: !custom {a: 1}\n", 2, "'!custom' is not allowed"),
    "alias-bomb": ("", 2, f"aliases expand to more than {MAX_EXPANDED_VALUES:,} values"),
    "text-bomb": ("", 2, f"more than {MAX_EXPANDED_CHARS:,} characters of text"),
    "recursive-sequence": ("a: &a [1, *a]\n", 1, "recursive alias"),
    "recursive-mapping": ("a: 1\nb: &b\n  c: *b\n", 2, "recursive alias"),
    "recursive-merge": ("a: &a\n  b: 1\n  c:\n    <<: *a\n", 1, "recursive alias"),
    "nested-flow-100": ("a: " + "[" * 100 + "]" * 100 + "\n", 1, "nested more than 64"),
    "nested-flow-1500": ("a: " + "[" * 1500 + "]" * 1500 + "\n", 1, "nested more than 64"),
    "nested-block-200": ("".join(" " * i + "a:\n" for i in range(200)) + " " * 200 + "b\n", 66,
                         "nested more than 64"),
    "nested-dashes-1500": ("- " * 1500 + "x\n", 1, "nested more than 64"),
    "unclosed-flow": ("a: 1\nb: [one, two\nc: 3\n", 3, "invalid YAML: expected ',' or ']'"),
    "indentation": ("a:\n  b: 1\n    c: 2\n", 3, "mapping values are not allowed here"),
    "tab": ("a:\n\tb: 1\n", 2, "found character '\\t' that cannot start any token"),
    "undefined-alias": ("a: *nothing\n", 1, "invalid YAML: found undefined alias 'nothing'"),
    "control-character": ("a: b\x07c\n", 1, "invalid YAML"),
    "two-documents": ("a: 1\n---\nb: 2\n", 3, "holds more than one document"),
    "empty": ("", 1, "file is empty"),
    "scalar-merge": ("x:\n  <<: 3\n", 2, "invalid merge key"),
    "int-over-4300-digits": ("size: " + "9" * 5000 + "\n", 1, "invalid int value"),
    "bool-tag": ("a: !!bool maybe\n", 1, "invalid bool value"),
}  # fmt: skip


def _bomb(size: int, per_level: int = 9, levels: int = 9) -> str:
    lines = [f"a0: &a0 [{', '.join(['x' * size] * per_level)}]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * per_level)}]")
    return "title: bomb\n" + "\n".join(lines) + "\n"


HOSTILE["alias-bomb"] = (_bomb(3), *HOSTILE["alias-bomb"][1:])
# few values, each long: 4 levels of 9 are 6,561 copies of a 2,000-character string
HOSTILE["text-bomb"] = (_bomb(2000, levels=5), *HOSTILE["text-bomb"][1:])


def use(parser: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if parser == "pure":
        monkeypatch.setenv(PARSER_ENV, "pure")
    else:
        monkeypatch.delenv(PARSER_ENV, raising=False)
    assert parser_in_use() == parser


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_yaml_fails_alike_on_both_paths(
    case: tuple[str, int, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    text, line, fragment = case
    found: dict[str, tuple[int, str]] = {}
    for name in PARSERS:
        use(name, monkeypatch)
        found[name] = error_of(text)
    assert found["libyaml"] == found["pure"]
    found_line, message = found["pure"]
    assert fragment in message
    assert found_line == line, message


def test_both_paths_give_the_same_values_and_lines_for_the_shipped_catalog(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    files = sorted((REPO / "catalog").glob("*/*.yaml"))
    assert len(files) > 20
    for path in files:
        use("libyaml", monkeypatch)
        fast = load_yaml(path)
        use("pure", monkeypatch)
        pure = load_yaml(path)
        assert fast.data == pure.data, path
        assert fast.lines.lines == pure.lines.lines, path
        assert fast.chars == pure.chars, path


MERGES = dedent(
    """
    base: &base
      archive: zip
      checksum: unpublished
    one: &one {a: 1, b: 1}
    two: &two {b: 2, c: 2}
    src: &src
      <<: *base
      archive: tar
    again: *src
    many:
      <<: [*one, *two]
      d: 4
    twice:
      <<: *one
      <<: *two
    "=": value key
    """
)


def test_merges_resolve_alike_on_both_paths(parser: str) -> None:
    document = parse_yaml(MERGES, Path("merges.yaml"))
    data = document.data
    assert data["src"] == {"archive": "tar", "checksum": "unpublished"}
    # an alias of a mapping that overrides a merged key is not a duplicate key
    assert data["again"] == data["src"]
    assert data["many"] == {"a": 1, "b": 1, "c": 2, "d": 4}  # the earlier mapping wins
    assert data["twice"] == {"a": 1, "b": 2, "c": 2}  # the later merge key wins
    assert data["="] == "value key"
    assert document.lines.line_of(("src", "archive")) == 8
    assert document.lines.line_of(("src", "checksum")) == 3
    assert document.lines.line_of(("again", "archive")) == 8


def test_merge_chains_resolve_once_each(parser: str) -> None:
    """Merges of merges of the same mapping: the pairs are shared, not copied per level."""
    lines = ["m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(50)) + "}"]
    for level in range(1, 30):
        sources = ", ".join([f"*m{level - 1}"] * 9)
        lines.append(f"m{level}: &m{level} {{<<: [{sources}], own{level}: {level}}}")
    document = parse_yaml("\n".join(lines) + "\n", Path("chain.yaml"))
    assert document.data["m29"]["k49"] == 49
    assert document.data["m29"]["own1"] == 1


def test_a_file_over_the_size_limit_is_refused_without_reading_it_all(
    parser: str, tmp_path: Path
) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as stream:
        stream.truncate(50 * MAX_FILE_BYTES)  # sparse: reading it all would take a while
    with pytest.raises(CatalogError) as raised:
        load_yaml(path)
    assert raised.value.problems[0].line == 1
    assert f"larger than {MAX_FILE_BYTES:,} bytes" in raised.value.problems[0].message


@pytest.mark.parametrize("kind", ["fifo", "folder", "device", "dangling-link"])
def test_what_is_not_a_regular_file_is_refused_without_blocking(
    parser: str, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "entry.yaml"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for reading without a writer would block
    elif kind == "folder":
        path.mkdir()
    elif kind == "device":
        path.symlink_to("/dev/zero")  # endless: reading it all would never end
    else:
        path.symlink_to(tmp_path / "missing.yaml")
    with pytest.raises(CatalogError) as raised:
        load_yaml(path)
    [problem] = raised.value.problems
    assert problem.path == path
    expected = "cannot read file" if kind == "dangling-link" else "not a regular file"
    assert expected in problem.message


@pytest.mark.slow
def test_every_bad_entry_case_passes_with_the_pure_parser() -> None:
    """The whole of test_bad_entries.py, unchanged, with the pure parser."""
    env = {**os.environ, PARSER_ENV: "pure"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_bad_entries.py"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:]


def test_a_long_file_libyaml_refuses_keeps_libyaml_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past REWORD_MAX_CHARS the Python parser does not see the file (deep nesting could keep
    it busy for minutes): the error is libyaml's, at the same line."""
    use("libyaml", monkeypatch)
    unit = "[" * 300 + "]" * 300 + ", "
    text = "a: [" + unit * (REWORD_MAX_CHARS // len(unit) + 1) + "]\nb: [x\nc: d\n"
    assert len(text) > REWORD_MAX_CHARS
    line, message = error_of(text)
    assert (line, message.split(" (")[0]) == (3, "invalid YAML: did not find expected ',' or ']'")


@pytest.mark.parametrize("character", ["\x07", "\x00", "\x1b"])
def test_a_control_character_is_located_on_its_line(parser: str, character: str) -> None:
    text = "a: 1\n" + "b: c\n" * 3000 + f"z: x{character}y\n"
    line, message = error_of(text)
    assert line == 3002
    assert f"#x{ord(character):04x}" in message
