"""Entry text reaches the terminal as the text it is: Rich markup printed literally, control
characters (from file names, paths and arguments, since entries refuse them) made visible, and
no entry that loads can crash a command. An entry that lint refuses is refused by every command
that uses it, with lint's own lines."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from tests.http_server import MisbehavingServer, Route
from vcat.catalog.fields import MAX_COUNT
from vcat.cli import app
from vcat.controls import visible
from vcat.display import SafeConsole, literal, shown

MARKUP = "[/bold] [red]alarm[/red] [link=https://evil.example]click[/link] [bold"

MARKUP_ENTRY = f"""\
title: "{MARKUP}"
description: "Described as {MARKUP}"
licence:
  name: "MIT {MARKUP}"
  redistribution: allowed
  notes: "notes {MARKUP}"
access:
  kind: manual
  instructions: "Ask [/red] for [the data](https://evil.example/phish) {MARKUP}"
known_issues:
  - "issue {MARKUP}"
layout:
  rules:
    - glob: "images/[[]x]*"
      description: "rule {MARKUP}"
"""

#: Valid, at the edges of every number: no command may fail on it.
EXTREME_ENTRY = f"""\
title: Extreme
description: Every number at its largest.
licence: {{name: MIT, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: huge
    url: https://example.org/huge.bin
    filename: huge.bin
    size: {2**50}
    size_published: 1024 TiB
    checksum: unpublished
  - name: tiny
    url: https://example.org/tiny.bin
    filename: tiny.bin
    size_published: 0.0000001 B
    checksum: unpublished
counts:
  - unit: images
    published: {MAX_COUNT}
    released: 0
"""


def dataset(name: str, sources: str) -> str:
    return f"""\
title: {name}
description: Sources of a test.
licence: {{name: MIT, redistribution: allowed}}
access: {{kind: public}}
sources:
{sources}"""


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def add(project: Path, name: str, text: str, kind: str = "datasets") -> None:
    (project / "catalog" / kind / f"{name}.yaml").write_text(text, encoding="utf-8")


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert "Traceback" not in result.output
    return result


def no_escapes(result: Result) -> None:
    """Nothing but text reached the terminal: CliRunner is no terminal, so Rich adds no
    colour codes; any ESC, BEL or CR came from the data."""
    for stream in (result.stdout, result.stderr):
        for character in ("\x1b", "\x07", "\r", "\x9b", "\u202e"):
            assert character not in stream, (character, stream)


@pytest.mark.parametrize(
    "args",
    [
        ["catalog", "list"],
        ["catalog", "show", "marked"],
        ["catalog", "lint"],
        ["status", "marked"],
        ["verify", "marked", "--root", "nowhere"],
    ],
    ids=["list", "show", "lint", "status", "verify"],
)
def test_markup_in_entry_text_is_printed_literally(project: Path, args: list[str]) -> None:
    add(project, "marked", MARKUP_ENTRY)
    result = invoke(*args)
    assert result.exit_code in (0, 1), result.output
    output = result.stdout + result.stderr
    if args[0] == "catalog" and args[1] == "lint":
        assert "0 error(s)" in result.stderr
        return
    if args[0] == "status":
        assert "marked" in output
        return
    if args[0] == "verify":
        assert "Ask [/red] for" in output
        # a link is shown with its address, never as a terminal hyperlink hiding it
        assert "https://evil.example/phish" in output
        return
    assert "[/bold] [red]alarm[/red] [link=https://evil.example]click[/link] [bold" in output
    no_escapes(result)


def test_show_prints_every_text_field_literally(project: Path) -> None:
    add(project, "marked", MARKUP_ENTRY)
    output = invoke("catalog", "show", "marked").stdout
    for prefix in ("Described as ", "MIT ", "notes ", "issue ", "rule "):
        assert prefix + "[/bold] [red]alarm[/red]" in output, prefix


def test_docs_keep_markup_as_text(project: Path) -> None:
    add(project, "marked", MARKUP_ENTRY)
    result = invoke("catalog", "docs", "--out", str(project / "pages"))
    assert result.exit_code == 0, result.output
    page = (project / "pages" / "marked.md").read_text()
    assert MARKUP in page


@pytest.mark.parametrize(
    "args",
    [
        ["catalog", "list"],
        ["catalog", "list", "--json"],
        ["catalog", "show", "extreme"],
        ["catalog", "show", "extreme", "--json"],
        ["catalog", "lint"],
        ["status", "extreme"],
        ["status", "--json"],
    ],
)
def test_entries_at_the_limits_crash_no_command(project: Path, args: list[str]) -> None:
    add(project, "extreme", EXTREME_ENTRY)
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    if args[1] == "lint":
        assert "1 entries checked: 0 error(s), 0 warning(s)" in result.stderr
    else:
        assert "extreme" in result.stdout or "Extreme" in result.stdout
    if "--json" in args:
        json.loads(result.stdout)


def test_docs_of_entries_at_the_limits(project: Path) -> None:
    add(project, "extreme", EXTREME_ENTRY)
    assert invoke("catalog", "docs", "--out", str(project / "pages")).exit_code == 0
    page = (project / "pages" / "extreme.md").read_text()
    assert "1,125,899,906,842,624 B" in page
    assert f"{MAX_COUNT:,}" in page


@pytest.mark.parametrize("command", ["list", "lint", "status"])
def test_an_entry_that_once_crashed_every_command_is_one_problem(
    project: Path, command: str
) -> None:
    # size_published of 400 digits overflowed a float: every catalog command raised
    add(project, "extreme", EXTREME_ENTRY)
    huge = "  - name: a\n    url: https://example.org/a\n    filename: a\n"
    huge += "    size_published: " + "9" * 400 + "T\n    checksum: unpublished\n"
    add(project, "overflow", dataset("overflow", huge))
    args = ["catalog", command] if command != "status" else ["status", "extreme"]
    result = invoke(*args)
    if command == "lint":
        assert result.exit_code == 1
        assert "catalog/datasets/overflow.yaml:9: error: sources[0].size_published" in (
            result.stdout
        )
    else:
        assert result.exit_code == 0, result.output


def test_escapes_in_an_entry_file_name_are_shown_not_sent(project: Path) -> None:
    add(project, "good", EXTREME_ENTRY)
    (project / "catalog" / "datasets" / "\x1b]0;owned\x07\x1b[2J.yaml").write_text("title: x\n")
    result = invoke("catalog", "lint")
    assert result.exit_code == 1
    no_escapes(result)
    assert "\\x1b]0;owned\\x07\\x1b[2J.yaml:1: error: file name" in result.stdout
    listed = invoke("catalog", "list")
    no_escapes(listed)


@pytest.mark.parametrize("command", ["fetch", "status", "verify", "catalog show"])
def test_escapes_in_a_name_argument_are_shown_not_sent(project: Path, command: str) -> None:
    add(project, "good", EXTREME_ENTRY)
    result = invoke(*command.split(), "\x1b]8;;https://evil.example\x07good\x1b]8;;\x07")
    assert result.exit_code in (1, 2)
    no_escapes(result)
    assert "\\x1b]8;;https://evil.example\\x07good" in result.stderr


def test_fetch_shows_a_destination_with_escapes_and_markup_as_text(
    project: Path, server: MisbehavingServer
) -> None:
    data = b"payload\n" * 100
    url = server.add("/x.bin", Route(data))
    source = f"  - name: x\n    url: {url}\n    filename: x.bin\n    size: {len(data)}\n"
    source += f"    checksum: md5:{hashlib.md5(data).hexdigest()}\n"
    add(project, "served", dataset("served", source))
    dest = project / "out" / "\x1b[31m[/red]red\x07"
    result = invoke("fetch", "served", "--dest", str(dest), "--no-dvc")
    assert result.exit_code == 0, result.output
    assert (dest / "x.bin").read_bytes() == data
    no_escapes(result)
    assert "\\x1b[31m[/red]red\\x07" in result.stderr


# --- an entry that lint refuses is not used --------------------------------------------------


TWO_WRITERS = dataset(
    "clash",
    "  - name: a\n    url: https://example.org/a\n    filename: data.bin\n"
    "    checksum: unpublished\n"
    "  - name: b\n    url: https://example.org/b\n    filename: data.bin\n"
    "    checksum: unpublished\n",
)
UNKNOWN_STAGE = (
    dataset(
        "later",
        "  - name: a\n    url: https://example.org/later\n    filename: a.bin\n"
        "    checksum: unpublished\n",
    )
    + "prepare:\n  - name: segmentations\n    stage: mesh-segmentation\n"
)


@pytest.mark.parametrize(
    ("name", "text", "line", "message"),
    [
        ("clash", TWO_WRITERS, 12, "source 'b' writes 'data.bin', as source 'a' (line 6) does"),
        ("later", UNKNOWN_STAGE, 12, "stage 'mesh-segmentation' is not a registered stage"),
    ],
    ids=["two-sources-one-file", "unknown-stage"],
)
@pytest.mark.parametrize("command", ["fetch", "status", "verify"])
def test_commands_refuse_an_entry_lint_refuses(
    project: Path, name: str, text: str, line: int, message: str, command: str
) -> None:
    add(project, name, text)
    lint = invoke("catalog", "lint")
    assert lint.exit_code == 1
    expected = f"catalog/datasets/{name}.yaml:{line}: error: {message}"
    assert any(row.startswith(expected) for row in lint.stdout.splitlines()), lint.stdout
    dest = project / "dest"
    args = [command, name] + (["--dest", str(dest)] if command == "fetch" else [])
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert f"entry {name!r} does not pass `vcat catalog lint`" in result.stderr
    assert not dest.exists()


# --- the helpers themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\x1b[31mred", "\\x1b[31mred"),
        ("bell\x07", "bell\\x07"),
        ("over\rwrite", "over\\rwrite"),
        ("c1 \x9b2J", "c1 \\x9b2J"),
        ("a\u202eb\u2066c", "a\\u202eb\\u2066c"),
        ("nul\x00", "nul\\x00"),
        ("line\nand\ttab stay", "line\nand\ttab stay"),
        ("ünïcödé and 漢字 stay", "ünïcödé and 漢字 stay"),
    ],
)
def test_visible(text: str, expected: str) -> None:
    assert visible(text) == expected


def test_a_real_terminal_gets_styles_but_never_data_escapes() -> None:
    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, color_system="standard", width=200)
    message = f"[red]error:[/red] {shown('[/red] x' + chr(27) + ']8;;evil' + chr(7))}"
    console.print(message, highlight=False)
    text = out.getvalue()
    assert "\x1b[31m" in text  # the program's own style
    assert "[/red] x\\x1b]8;;evil\\x07" in text
    assert "\x1b]8" not in text and "\x07" not in text
    plain = io.StringIO()
    Console(file=plain, width=200).print(literal("[bold]x[/bold]\x1b"))
    assert plain.getvalue() == "[bold]x[/bold]\\x1b\n"


def test_a_value_left_unescaped_in_markup_is_printed_not_raised() -> None:
    sink = io.StringIO()
    console = SafeConsole(file=sink, width=200)
    console.print("[red]error:[/red] /data/[/x].jpg is \x1b[31mred", highlight=False)
    console.print("[red]error:[/red] fine", highlight=False)
    lines = sink.getvalue().splitlines()
    assert lines[0] == "[red]error:[/red] /data/[/x].jpg is \\x1b[31mred"
    assert lines[1] == "error: fine"
