"""Where the file of a catalog entry is, found by its name without reading it.

Imports nothing beyond the standard library: the loader, lint and the settings share these
rules without importing the schema.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: What an entry name may be; the name is also the file's stem.
ENTRY_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
#: The folders of a catalog, one per kind of entry.
KIND_FOLDER_NAMES = ("datasets", "models")
#: Entry files end in the first; the second is read too, and lint asks to rename it.
ENTRY_SUFFIXES = (".yaml", ".yml")


def is_entry_name(name: str) -> bool:
    """Whether ``name`` can name an entry (and so a file: nothing that leaves the folder)."""
    # `$` in the pattern lets a final newline through
    return re.match(ENTRY_NAME_PATTERN, name) is not None and "\n" not in name


def kind_folders(folder: Path) -> list[Path]:
    """The kind folders of the catalog ``folder``, or ``folder`` itself when it is one."""
    if folder.name in KIND_FOLDER_NAMES:
        return [folder]
    return [folder / name for name in KIND_FOLDER_NAMES]


def entry_files(folder: Path, name: str) -> list[Path]:
    """The paths that exist for entry ``name`` in the catalog ``folder``, in lookup order;
    none for a name that is not an entry name."""
    if not is_entry_name(name):
        return []
    return [
        path
        for kind_folder in kind_folders(folder)
        for suffix in ENTRY_SUFFIXES
        if os.path.lexists(path := kind_folder / f"{name}{suffix}")
    ]
