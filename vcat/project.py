"""Where the project and its catalog are, found from the working directory."""

from __future__ import annotations

import os
from pathlib import Path

CATALOG_ENV = "VCAT_CATALOG"


class ProjectNotFound(Exception):
    """Raised when no vcat project encloses the working directory."""


def find_project_root(start: Path | None = None) -> Path:
    """The nearest folder at or above ``start`` holding both ``dvc.yaml`` and ``catalog/``."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "catalog").is_dir():
            return folder
    raise ProjectNotFound(
        f"no vcat project at or above {here}: run inside a checkout (a folder with dvc.yaml "
        f"and catalog/), or set {CATALOG_ENV} to a catalog folder"
    )


def default_catalog_dir() -> Path:
    """``$VCAT_CATALOG`` when set, else ``catalog/`` of the enclosing project."""
    configured = os.environ.get(CATALOG_ENV)
    if configured:
        return Path(configured)
    return find_project_root() / "catalog"


def user_data_dir(*parts: str) -> Path:
    """``$XDG_DATA_HOME/vcat/<parts>``, else ``~/.local/share/vcat/<parts>``: where vcat keeps
    what outlives a checkout (local servers' data, a local cluster's state)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser().joinpath("vcat", *parts)
