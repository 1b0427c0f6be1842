"""Options that several commands share, in a module that imports nothing slow."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

CatalogOption = Annotated[
    Path | None,
    typer.Option(
        "--catalog",
        help="Catalog folder (default: $VCAT_CATALOG, else catalog/ of the enclosing project).",
        file_okay=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (see docs/cli-json.md).")]
