"""Command-line options that both copy-detection stages take (overlay assets)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

FontsOption = Annotated[
    Path | None,
    typer.Option(
        "--fonts",
        help="Folder of .ttf/.otf fonts for text and meme overlays (e.g. AugLy's fonts); "
        "default: Pillow's built-in font.",
        exists=True,
        file_okay=False,
    ),
]
EmojiOption = Annotated[
    Path | None,
    typer.Option(
        "--emoji",
        help="Folder of .png emoji for emoji overlays (e.g. AugLy's twemojis); default: "
        "drawn faces, hearts and stars.",
        exists=True,
        file_okay=False,
    ),
]
