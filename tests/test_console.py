"""Output read through a pipe is never cut; in a terminal, long cells fold, never drop text."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from rich.markdown import Markdown
from rich.table import Column, Table
from typer.testing import CliRunner

from vcat.catalog.docs import render_entry
from vcat.catalog.loader import load_catalog
from vcat.cli import app
from vcat.console import UNBOUNDED, WholeLinesConsole, stderr, stdout

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog"
URL = "https://example.org/" + "/".join(f"segment{index:03d}" for index in range(12)) + ".tar"
runner = CliRunner()


def console(terminal: bool = False) -> tuple[WholeLinesConsole, io.StringIO]:
    out = io.StringIO()
    return WholeLinesConsole(file=out, force_terminal=terminal or None, soft_wrap=True), out


def test_the_commands_consoles_keep_whole_lines() -> None:
    assert isinstance(stdout, WholeLinesConsole) and isinstance(stderr, WholeLinesConsole)


def test_through_a_pipe_the_width_is_unbounded_unless_columns_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    piped, out = console()
    assert piped.width == UNBOUNDED
    piped.print("x" * 500, URL)
    assert out.getvalue() == "x" * 500 + " " + URL + "\n"
    monkeypatch.setenv("COLUMNS", "72")  # read when printing, not when the console was made
    assert piped.width == 72


def test_in_a_terminal_the_width_is_the_terminals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "50")
    terminal, _ = console(terminal=True)
    assert terminal.is_terminal and terminal.width == 50


@pytest.mark.parametrize("width", [30, 45, 80])
@pytest.mark.parametrize("no_wrap", [False, True], ids=["wrapping column", "no_wrap column"])
def test_a_narrow_table_folds_long_cells_and_drops_nothing(
    monkeypatch: pytest.MonkeyPatch, width: int, no_wrap: bool
) -> None:
    monkeypatch.setenv("COLUMNS", str(width))
    narrow, out = console()
    table = Table(Column("url", no_wrap=no_wrap), "state", box=None, show_header=False)
    table.add_row(URL, "verified")
    narrow.print(table)
    lines = out.getvalue().splitlines()
    assert "…" not in out.getvalue()
    assert max(len(line) for line in lines) <= width
    assert "".join(line.split()[0] for line in lines if line.strip()) == URL
    assert lines[0].split()[1] == "verified"


def test_markdown_is_its_source_through_a_pipe_and_rendered_in_a_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    source = "# Title\n\n- a list item that is long " + "word " * 40 + "\n\n---\n\n`code`\n"
    piped, out = console()
    piped.print(Markdown(source))
    assert out.getvalue() == source + "\n"
    monkeypatch.setenv("COLUMNS", "60")
    terminal, rendered = console(terminal=True)
    terminal.print(Markdown(source))
    plain = re.sub(r"\x1b\[[0-9;]*m", "", rendered.getvalue())  # colours aside
    assert "# Title" not in plain and "Title" in plain
    assert max(len(line) for line in plain.splitlines()) <= 60


@pytest.mark.parametrize("columns", [None, "80", "40"], ids=["no COLUMNS", "80", "40"])
def test_catalog_show_through_a_pipe_prints_whole_lines(
    monkeypatch: pytest.MonkeyPatch, columns: str | None
) -> None:
    env = {"COLUMNS": columns} if columns else {}
    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    entry = load_catalog([CATALOG]).get("flickr-cc")
    source = render_entry(entry)
    assert max(len(line) for line in source.splitlines()) > 100  # else this proves nothing
    result = runner.invoke(
        app, ["catalog", "show", "flickr-cc", "--catalog", str(CATALOG)], env=env
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == source + "\n"


def test_catalog_list_through_a_pipe_shows_every_title_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["catalog", "list", "--catalog", str(CATALOG)])
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    for entry in load_catalog([CATALOG]).entries:
        line = next(line for line in result.stdout.splitlines() if f" {entry.name} " in line)
        assert entry.spec.title in line


def test_catalog_list_at_40_columns_folds_and_drops_nothing() -> None:
    result = runner.invoke(
        app, ["catalog", "list", "--catalog", str(CATALOG)], env={"COLUMNS": "40"}
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 40
