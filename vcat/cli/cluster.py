"""`vcat cluster up|down|status|env`: the local single-node SLURM cluster.

``--json`` on status prints ``vcat.cluster.status/1`` (documented in docs/scaling.md).
Exit codes: 0 done, 2 the command could not run.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.cli.options import JsonOption
from vcat.console import fail, stdout

app = typer.Typer(
    no_args_is_help=True,
    help="A single-node SLURM cluster on 127.0.0.1 (Debian's slurm-wlm, munge, slurmdbd).",
)

FolderOption = Annotated[
    Path | None,
    typer.Option(
        "--folder",
        file_okay=False,
        help="The cluster's folder: configuration, state, database, logs "
        "(default: $XDG_DATA_HOME/vcat/slurm).",
    ),
]


def _say(message: str) -> None:
    stdout.print(escape(message), highlight=False)


def _folder(folder: Path | None) -> Path:
    from vcat.cluster.local import default_folder

    return (folder or default_folder()).absolute()


@app.command("up")
def up(
    folder: FolderOption = None,
    cpus: Annotated[
        int | None,
        typer.Option("--cpus", min=1, help="CPUs of the node (default: the machine's)."),
    ] = None,
) -> None:
    """Start the cluster unless it runs; wait until its node takes jobs."""
    from vcat.cluster.local import ClusterError, DaemonError, cluster_up

    try:
        report = cluster_up(_folder(folder), cpus)
    except (ClusterError, DaemonError) as exc:
        fail(str(exc))
    state = report.state
    verb = "started" if report.started else "already running:"
    _say(
        f"{verb} SLURM cluster in {state.folder} (1 node, {state.cpus} CPUs, {state.memory_mb} MB)"
    )
    _say(f"clients need: export SLURM_CONF={shlex.quote(str(state.layout.slurm_conf))}")
    _say('(or run: eval "$(vcat cluster env)")')


@app.command("down")
def down(folder: FolderOption = None) -> None:
    """Cancel the cluster's jobs and stop its daemons; its state and accounting are kept."""
    from vcat.cluster.local import ClusterError, cluster_down

    try:
        state = cluster_down(_folder(folder))
    except ClusterError as exc:
        fail(str(exc))
    if state is None:
        _say(f"no cluster was started in {_folder(folder)}")
    else:
        _say(f"stopped the SLURM cluster in {state.folder}; state and accounting kept")


@app.command("status")
def status(folder: FolderOption = None, as_json: JsonOption = False) -> None:
    """Show which daemons run, the node's state and the number of queued or running jobs."""
    from vcat.cluster.local import ClusterError, cluster_status

    try:
        report = cluster_status(_folder(folder))
    except ClusterError as exc:
        fail(str(exc))
    if as_json:
        stdout.print_json(json.dumps(report.to_json()))
        return
    if report.state is None:
        _say(f"no cluster in {report.folder}: run `vcat cluster up`")
        return
    down_daemons = [name for name, alive in report.running.items() if not alive]
    if report.up:
        _say(f"cluster in {report.folder}: up, node {report.node}, {report.jobs} job(s) queued")
    elif len(down_daemons) == len(report.running):
        _say(f"cluster in {report.folder}: down; run `vcat cluster up`")
    else:
        _say(
            f"cluster in {report.folder}: partly up ({', '.join(down_daemons)} not running); "
            f"run `vcat cluster up` to restart it, logs in {report.state.layout.log_dir}"
        )


@app.command("env")
def env(folder: FolderOption = None) -> None:
    """Print the shell lines that point SLURM's clients (and submitit) at the cluster."""
    from vcat.cluster.local import ClusterError, read_state

    where = _folder(folder)
    try:
        state = read_state(where)
    except ClusterError as exc:
        fail(str(exc))
    if state is None:
        fail(f"no cluster in {where}: run `vcat cluster up` first")
    for name, value in state.environment().items():
        typer.echo(f"export {name}={shlex.quote(value)}")
