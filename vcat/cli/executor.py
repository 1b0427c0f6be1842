"""`vcat executor shard`: what each task of a ``data: remote`` run executes.

Exit codes: the stage's own (0 its part is on the remote; 1 it failed a threshold), 2 the
shard could not run (no such run, remote unreachable).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vcat.console import fail
from vcat.parts import ShardOption, shard_spec

app = typer.Typer(
    no_args_is_help=True,
    help="The shards of sharded stages (the executor: section of params.yaml).",
)


@app.command("shard")
def shard(
    run: Annotated[str, typer.Argument(help="The run, as its submitter named it.")],
    spec: ShardOption = None,
    remote: Annotated[
        str, typer.Option("--remote", help='The DVC remote holding the run ("": the default).')
    ] = "",
    scratch: Annotated[
        Path | None,
        typer.Option(
            "--scratch", file_okay=False, help="Folder to work in (default: $TMPDIR or /tmp)."
        ),
    ] = None,
) -> None:
    """Do one shard of a data: remote run on this node: fetch what its block reads from the
    DVC remote, run the stage, send the part back."""
    from vcat.executors.store import RemoteDataError
    from vcat.executors.worker import default_scratch, run_remote_shard

    if spec is None:
        raise typer.BadParameter("give the shard to do: --shard I/N")
    try:
        code = run_remote_shard(run, shard_spec(spec), remote, scratch or default_scratch())
    except RemoteDataError as error:
        fail(str(error))
    raise typer.Exit(code)
