"""`vcat shards`: look into a folder of WebDataset shards, or turn it back into files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.console import fail, stderr, stdout
from vcat.shards import ShardError, ShardReader, unpack_shards

app = typer.Typer(no_args_is_help=True, help="Folders of WebDataset shards (vcat.shards).")

ShardFolder = Annotated[
    Path,
    typer.Argument(help="Folder holding shard-*.tar and index.json.", exists=True, file_okay=False),
]


@app.command("list")
def list_samples(folder: ShardFolder) -> None:
    """Print the key of every sample, in shard order."""
    try:
        with ShardReader(folder) as reader:
            keys = reader.keys()
    except ShardError as exc:
        fail(str(exc))
    for key in keys:
        stdout.print(escape(key), highlight=False)


@app.command("unpack")
def unpack(
    folder: ShardFolder,
    dest: Annotated[Path, typer.Argument(help="Tree to write (<key>.<ext> per file).")],
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace DEST.")] = False,
) -> None:
    """Write the samples as the plain file tree a loader that wants files expects.

    An interrupted unpack resumes; DEST appears only when complete.
    """
    try:
        count = unpack_shards(folder, dest, overwrite=overwrite)
    except ShardError as exc:
        fail(str(exc))
    stderr.print(f"{count:,} files in {escape(str(dest))}", highlight=False)
