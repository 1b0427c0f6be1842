"""The `vcat` command line: one typer sub-app per command group."""

from __future__ import annotations

import typer

from vcat.cli import catalog, compare, demo, fetch, release, remote, shards, status, verify
from vcat.stage import app as stage_app

app = typer.Typer(
    name="vcat",
    help="A declarative catalog of computer-vision datasets and models, versioned with DVC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")
app.command("fetch")(fetch.fetch)
app.command("status")(status.status)
app.command("verify")(verify.verify)
app.add_typer(verify.manifest_app, name="manifest")
app.add_typer(demo.app, name="demo")
app.command("compare")(compare.compare)
app.add_typer(remote.app, name="remote")
app.command("release")(release.release)
app.add_typer(stage_app, name="stage")
app.add_typer(shards.app, name="shards")


def main() -> None:
    """Console-script entry point."""
    app()
