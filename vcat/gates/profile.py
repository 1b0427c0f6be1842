"""Profiles: an artifact turned into tables that a suite runs on, and the kinds that make them.

A kind of artifact (``images``, ``pairs``, ``path-list``, ...) is a module of
``vcat.gates.kinds`` that provides:

- ``KIND``: its name; ``DESCRIPTION``: one line for ``vcat check --list``;
- ``detect(artifact) -> bool``: whether a path looks like one (for ``vcat check`` without
  ``--kind``);
- ``CHECKS``: its :class:`vcat.gates.checks.Check` list, the default suite;
- ``profile(artifact, workers, params) -> Profile``: the tables, read by streaming through
  the artifact (shards are read member by member, never whole), on ``workers`` processes;
  ``params`` are the parameters in force of each check, by name (a check such as ``present``
  tells the profiler where to look).

Kinds are imported only when used, so that listing them costs nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

from vcat.gates.checks import Check

#: kind -> module; the order is the order in which ``detect`` is tried.
KINDS: dict[str, str] = {
    "pairs": "vcat.gates.kinds.pairs",
    "frames": "vcat.gates.kinds.frames",
    "copydetect": "vcat.gates.kinds.copydetect",
    "overlap": "vcat.gates.kinds.overlap",
    "images": "vcat.gates.kinds.images",
    "path-list": "vcat.gates.kinds.path_list",
    "checkpoint": "vcat.gates.kinds.checkpoint",
    "features": "vcat.gates.kinds.features",
    "metrics": "vcat.gates.kinds.metrics",
}


class ProfileError(Exception):
    """An artifact that cannot be profiled (missing, not of its kind, unreadable index); the
    message names the path and what to do."""


@dataclass
class Table:
    """One row per item; ``item_column`` names each row in reports (a file or key)."""

    frame: pd.DataFrame
    item_column: str


@dataclass
class Profile:
    kind: str
    artifact: Path
    tables: dict[str, Table]
    #: Whole-artifact figures for the report and metrics (counts, failures by class).
    facts: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> dict[str, int]:
        return {name: len(table.frame) for name, table in self.tables.items()}


@dataclass(frozen=True)
class Kind:
    name: str
    module: ModuleType

    @property
    def description(self) -> str:
        return str(self.module.DESCRIPTION)

    @property
    def checks(self) -> Sequence[Check]:
        return self.module.CHECKS

    def detect(self, artifact: Path) -> bool:
        return bool(self.module.detect(artifact))

    def profile(
        self,
        artifact: Path,
        workers: int | None = None,
        params: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Profile:
        return self.module.profile(artifact, workers, params or {})


def load_kind(name: str) -> Kind:
    """The kind ``name``; ProfileError naming the known kinds for another name."""
    try:
        module_name = KINDS[name]
    except KeyError:
        known = ", ".join(KINDS)
        raise ProfileError(f"no artifact kind {name!r}; the kinds are: {known}") from None
    return Kind(name, importlib.import_module(module_name))


def detect_kind(artifact: Path) -> Kind:
    """The first kind whose ``detect`` accepts ``artifact``; ProfileError when none does."""
    if not artifact.exists():
        raise ProfileError(f"{artifact}: no such file or folder; give the artifact's path")
    for name in KINDS:
        kind = load_kind(name)
        if kind.detect(artifact):
            return kind
    raise ProfileError(
        f"{artifact}: cannot tell what kind of artifact this is; give --kind ({', '.join(KINDS)})"
    )


def kinds() -> Mapping[str, Kind]:
    return {name: load_kind(name) for name in KINDS}
