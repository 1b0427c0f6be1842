"""`vcat settings show|forget|allow|disallow`: this checkout's local settings.

The settings live in ``.vcat/settings.yaml`` (see ``vcat.settings``): the remembered root of
each dataset, and the folders ``file:`` URLs may read (``local_roots``, see
``vcat.localfiles``). ``--json`` on show prints ``vcat.settings/1``::

    {"format": "vcat.settings/1", "file": "/abs/.vcat/settings.yaml",
     "roots": {"<entry>": {"path": "/abs", "exists": true}},
     "local_roots": ["/abs", ...],            # as written in the file
     "readable_roots": ["/abs", ...]}          # all that file: URLs may read, resolved

Exit codes: 0 done, 2 the command could not run (no project, an invalid settings file, a
name with no remembered root).
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.markup import escape

from vcat.cli.common import print_problems
from vcat.cli.options import JsonOption
from vcat.console import fail, stdout
from vcat.failures import FetchFailure
from vcat.localfiles import LOCAL_ROOTS_ENV, policy_for
from vcat.problems import CatalogError, display_path
from vcat.project import ProjectNotFound, find_project_root
from vcat.settings import (
    Settings,
    forget_root,
    load_settings,
    set_local_root,
    settings_path,
)

FORMAT = "vcat.settings/1"
_T = TypeVar("_T")

app = typer.Typer(
    no_args_is_help=True,
    help="This checkout's local settings: remembered dataset roots and readable local folders.",
)

FolderArgument = Annotated[
    Path, typer.Argument(help="A folder on this machine.", file_okay=False, resolve_path=True)
]


def _say(message: str) -> None:
    stdout.print(escape(message), highlight=False)


def _project() -> Path:
    try:
        return find_project_root()
    except ProjectNotFound as exc:
        fail(str(exc))


def _run(action: Callable[[], _T]) -> _T:
    """``action()``, or exit 2 with the settings file's problems when it is invalid."""
    try:
        return action()
    except CatalogError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None


@app.command("show")
def show(as_json: JsonOption = False) -> None:
    """Print the settings file, the remembered roots and the folders file: URLs may read."""
    project = _project()
    settings: Settings = _run(lambda: load_settings(project))
    path = settings_path(project)
    try:
        readable = [str(root) for root in policy_for(project).roots]
    except FetchFailure as exc:
        fail(exc.reason)
    if as_json:
        document = {
            "format": FORMAT,
            "file": str(path),
            "roots": {
                name: {"path": root, "exists": os.path.isdir(root)}
                for name, root in sorted(settings.roots.items())
            },
            "local_roots": list(settings.local_roots),
            "readable_roots": readable,
        }
        stdout.print_json(json.dumps(document))
        return
    state = "" if path.exists() else " (not written yet)"
    _say(f"settings: {display_path(path)}{state}")
    _say("roots:" if settings.roots else "roots: none remembered")
    for name, root in sorted(settings.roots.items()):
        missing = "" if os.path.isdir(root) else "  (missing)"
        _say(f"  {name}: {root}{missing}")
    _say(f"folders file: URLs may read (local_roots, ${LOCAL_ROOTS_ENV}, the demo world):")
    for root in readable:
        _say(f"  {root}")


@app.command("forget")
def forget(
    name: Annotated[str, typer.Argument(help="Entry name whose remembered root to drop.")],
) -> None:
    """Forget the remembered root of NAME; later commands use data/sources/NAME again."""
    project = _project()
    remembered = _run(lambda: load_settings(project)).roots
    if name not in remembered:
        close = difflib.get_close_matches(name, list(remembered), n=3)
        hint = f"; did you mean {' or '.join(map(repr, close))}?" if close else ""
        known = ", ".join(sorted(remembered)) or "none"
        fail(f"no root is remembered for {name!r} (remembered: {known}){hint}")
    _run(lambda: forget_root(project, name))
    _say(f"forgot the root of {name} ({remembered[name]}); the folder itself is untouched")


@app.command("allow")
def allow(folder: FolderArgument) -> None:
    """Let file: URLs in entries and lists read files below FOLDER (e.g. a NAS mount)."""
    project = _project()
    changed = _run(lambda: set_local_root(project, folder, allowed=True))
    already = "" if changed else " (already allowed)"
    _say(f"file: URLs may read below {folder}{already}")


@app.command("disallow")
def disallow(folder: FolderArgument) -> None:
    """Stop file: URLs from reading below FOLDER (undoes `vcat settings allow`)."""
    project = _project()
    changed = _run(lambda: set_local_root(project, folder, allowed=False))
    if not changed:
        fail(f"{folder} is not in local_roots of {display_path(settings_path(project))}")
    _say(f"file: URLs may no longer read below {folder}")
