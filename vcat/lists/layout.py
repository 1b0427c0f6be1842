"""The names of the files in a list folder (see :mod:`vcat.lists.folder`), and reading its
``list.json``; light enough for DataLoader workers to import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

META_NAME = "list.json"
PATHS_NAME = "paths.memmap"
N_FRAMES_NAME = "n_frames.npy"
LABELS_NAME = "labels.npy"
CLASSES_NAME = "classes.txt"
LAYOUT = "vcat.path-list/1"


def read_meta(folder: Path) -> dict[str, Any] | None:
    """The ``list.json`` of a finished list folder, or None (absent, or not readable JSON)."""
    try:
        meta = json.loads((folder / META_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("layout") == LAYOUT else None
