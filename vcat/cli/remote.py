"""`vcat remote up|down|status`: the local S3 server that releases are pushed to.

``--json`` on status prints ``vcat.remote.status/1`` (documented in docs/releases.md).
Exit codes: 0 done, 2 the command could not run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.cli.common import print_problems
from vcat.cli.options import JsonOption
from vcat.console import fail, stderr, stdout
from vcat.problems import display_path
from vcat.project import ProjectNotFound, find_project_root
from vcat.remote import (
    DEFAULT_NAME,
    RELEASES_FILE,
    ReleasesError,
    RemoteError,
    remote_down,
    remote_status,
    remote_up,
)

STATUS_FORMAT = "vcat.remote.status/1"

app = typer.Typer(
    no_args_is_help=True, help="Local S3 remotes for releases (SeaweedFS on 127.0.0.1)."
)

NameArgument = Annotated[str, typer.Argument(help="The DVC remote's name.")]
DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        file_okay=False,
        help="The server's folder (default: $XDG_DATA_HOME/vcat/s3/NAME).",
    ),
]


def _say(message: str) -> None:
    stdout.print(escape(message), highlight=False)


@app.command("up")
def up(
    name: NameArgument = DEFAULT_NAME,
    data_dir: DataDirOption = None,
    public: Annotated[
        bool, typer.Option("--public", help=f"Mark the remote public in {RELEASES_FILE}.")
    ] = False,
) -> None:
    """Start the remote's S3 server unless it runs, and point this checkout's DVC at it."""
    from dvc.config import ConfigError

    try:
        root = find_project_root()
    except ProjectNotFound as exc:
        fail(str(exc))
    try:
        report = remote_up(root, name, data_dir, public)
    except ReleasesError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None
    except (RemoteError, ConfigError) as exc:
        fail(str(exc))
    state = report.state
    for note in report.notes:
        stderr.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    verb = "started" if report.started else "already running:"
    _say(
        f"{verb} S3 server for remote {name!r} at {state.endpoint} (pid {state.pid}, "
        f"data in {display_path(state.data_dir)})"
    )
    _say(
        f"remote {name!r}: {state.url} in .dvc/config; endpoint and credentials in "
        ".dvc/config.local (git-ignored)"
    )
    if report.default_set:
        _say(f"{name!r} is now the default DVC remote")
    _say(f"audience: {report.audience} (in {RELEASES_FILE}); commit it with .dvc/config")


@app.command("down")
def down(name: NameArgument = DEFAULT_NAME, data_dir: DataDirOption = None) -> None:
    """Stop the remote's S3 server; its data is kept for the next `vcat remote up`."""
    try:
        stopped = remote_down(name, data_dir)
    except RemoteError as exc:
        fail(str(exc))
    if stopped is None:
        _say(f"the S3 server of remote {name!r} is not running")
    else:
        _say(f"stopped the S3 server of remote {name!r} (pid {stopped.pid}); data kept")


@app.command("status")
def status(
    name: NameArgument = DEFAULT_NAME, data_dir: DataDirOption = None, as_json: JsonOption = False
) -> None:
    """Show whether the remote's server runs, where, and who may read the remote."""
    from dvc.config import ConfigError

    try:
        root: Path | None = find_project_root()
    except ProjectNotFound:
        root = None
    try:
        report = remote_status(root, name, data_dir)
    except ReleasesError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None
    except (RemoteError, ConfigError) as exc:
        fail(str(exc))
    if as_json:
        stdout.print_json(json.dumps({"format": STATUS_FORMAT, **report.to_json()}))
        return
    where = f" at {report.endpoint} (pid {report.pid})" if report.state == "running" else ""
    _say(f"remote {name!r}: server {report.state}{where}, data in {report.data_dir}")
    if report.ports_closed is False:
        _say(
            "its filer, master and volume ports take requests without credentials (an older "
            f"vcat started it): run `vcat remote up {name}` to restart it with them closed"
        )
    if root is None:
        return
    declared = f"in {RELEASES_FILE}" if report.audience_declared else f"not in {RELEASES_FILE}"
    _say(f"audience: {report.audience} ({declared})")
    if report.checkout_endpoint is None:
        _say(f"this checkout has no endpoint for it: run `vcat remote up {name}`")
    elif report.endpoint is not None and report.checkout_endpoint != report.endpoint:
        _say(
            f"this checkout points at {report.checkout_endpoint}, the server listens at "
            f"{report.endpoint}: run `vcat remote up {name}`"
        )
