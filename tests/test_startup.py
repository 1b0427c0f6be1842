"""What a command imports: listing the commands, and each command, load only what they use.

Deterministic checks of ``sys.modules`` in a fresh interpreter, not timings (those are in
bench/startup.py).
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import typer

from vcat.cli import COMMANDS
from vcat.cli.lazy import load_command

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog"

# Runs the CLI in-process with the given arguments, then writes the imported module names.
PROBE = """
import json, os, sys
from vcat.cli import app
try:
    app(sys.argv[1:], prog_name="vcat")
except SystemExit:
    pass
with open(os.environ["VCAT_PROBE_OUT"], "w") as out:
    json.dump(sorted(sys.modules), out)
"""
# Slow imports that no listing of commands needs (seconds together). Typer's help renderer
# itself imports rich.markdown, so that one is allowed here.
NEVER_FOR_HELP = (
    "dvc",
    "omegaconf",
    "matplotlib",
    "torch",
    "numpy",
    "PIL",
    "pydantic",
    "yaml",
    "requests",
    "vcat.catalog",
    "vcat.stage",
    "stages",
)
# What reading the catalog never needs.
NEVER_FOR_CATALOG = (
    "dvc",
    "omegaconf",
    "matplotlib",
    "torch",
    "markdown_it",
    "rich.markdown",
    "vcat.catalog.docs",
    "vcat.catalog.lint",
    "vcat.stage",
)


def imported(tmp_path: Path, *args: str) -> list[str]:
    out = tmp_path / "modules.json"
    env = {**os.environ, "VCAT_PROBE_OUT": str(out)}
    subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        check=True,
        timeout=120,
    )
    return json.loads(out.read_text())


def found(modules: list[str], banned: tuple[str, ...]) -> list[str]:
    return [m for m in modules if any(m == b or m.startswith(b + ".") for b in banned)]


@pytest.mark.parametrize("args", [["--help"], []], ids=["--help", "no arguments"])
def test_listing_the_commands_imports_none_of_them(tmp_path: Path, args: list[str]) -> None:
    modules = imported(tmp_path, *args)
    assert found(modules, NEVER_FOR_HELP) == []
    commands = {target.partition(":")[0] for target, _ in COMMANDS.values()}
    assert commands.isdisjoint(modules)


@pytest.mark.parametrize(
    "args",
    [
        ["catalog", "list", "--catalog", str(CATALOG)],
        ["catalog", "list", "--json", "--catalog", str(CATALOG)],
        ["status", "--catalog", str(CATALOG)],
    ],
    ids=["catalog list", "catalog list --json", "status"],
)
def test_reading_the_catalog_imports_no_pipeline_or_rendering(
    tmp_path: Path, args: list[str]
) -> None:
    assert found(imported(tmp_path, *args), NEVER_FOR_CATALOG) == []


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_commands_help_imports_no_other_command(tmp_path: Path, name: str) -> None:
    modules = imported(tmp_path, name, "--help")
    banned = ["dvc", "matplotlib", "torch"] + (["omegaconf"] if name != "stage" else [])
    assert found(modules, tuple(banned)) == []
    own = COMMANDS[name][0].partition(":")[0]
    others = {target.partition(":")[0] for target, _ in COMMANDS.values()} - {own}
    assert others.isdisjoint(modules)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    """The line `vcat --help` shows (kept in COMMANDS) is the first paragraph of the help
    that the command itself prints: edit both together."""
    target, listed = COMMANDS[name]
    command = load_command(name, target)
    own = inspect.cleandoc(command.short_help or command.help or "").split("\n\n")[0]
    assert listed == " ".join(own.split()), f"update COMMANDS[{name!r}] in vcat/cli/__init__.py"


def test_every_command_runs_under_its_listed_name() -> None:
    group = typer.main.get_command(__import__("vcat.cli", fromlist=["app"]).app)
    context = typer.Context(group)
    assert group.list_commands(context)[: len(COMMANDS)] == list(COMMANDS)
    for name in COMMANDS:
        command = group.get_command(context, name)
        assert command is not None and command.name == name
        assert (command.help or "").strip(), name
    assert group.get_command(context, "no-such-command") is None
