"""The `vcat` command line: one typer sub-app per command group."""

from __future__ import annotations

import typer

from vcat.cli import catalog

app = typer.Typer(
    name="vcat",
    help="A declarative catalog of computer-vision datasets and models, versioned with DVC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(catalog.app, name="catalog")


def main() -> None:
    """Console-script entry point."""
    app()
