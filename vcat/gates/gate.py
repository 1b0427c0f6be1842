"""Running one gate: profile the artifact, validate it, write the gate's folder."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from vcat.gates.checks import Declared
from vcat.gates.declarations import GateDeclaration, declared_checks
from vcat.gates.profile import Kind, detect_kind, load_kind
from vcat.gates.report import GateResult, write_outputs
from vcat.gates.validate import DOCS_FOLDER, run_suite

GATE_SUFFIX = ".gate"


def default_folder(artifact: Path) -> Path:
    """``<artifact>.gate``: beside the artifact, never inside it (a DVC output of its own)."""
    return artifact.with_name(artifact.name + GATE_SUFFIX)


def run_gate(
    name: str,
    artifact: Path,
    kind: Kind,
    declared: Sequence[Declared],
    folder: Path,
    workers: int | None = None,
) -> GateResult:
    """Profile ``artifact``, validate it against ``declared`` and write ``folder``: the result,
    the bad items and fresh Data Docs. Raises ProfileError for an artifact that cannot be
    read."""
    profile = kind.profile(artifact, workers, {d.check.name: d.params for d in declared})
    docs = folder / DOCS_FOLDER
    if docs.exists():
        shutil.rmtree(docs)  # GX adds a page per run; only this run's belongs here
    folder.mkdir(parents=True, exist_ok=True)
    result = GateResult(name, profile, run_suite(name, profile, declared, docs))
    write_outputs(result, folder)
    return result


def check_artifact(
    artifact: Path,
    gate: GateDeclaration | None = None,
    kind_name: str | None = None,
    folder: Path | None = None,
    catalog_dir: Path | None = None,
    workers: int | None = None,
) -> GateResult:
    """The gate for ``artifact``: its kind (given, declared by ``gate``, else detected), the
    checks in force (defaults, the gate's catalog entry, the gate's own), run into ``folder``
    (default ``<artifact>.gate``). Raises ProfileError or DeclarationError when it cannot run."""
    name = kind_name or (gate.kind if gate is not None else None)
    kind = load_kind(name) if name else detect_kind(artifact)
    declared = declared_checks(kind, gate, catalog_dir)
    gate_name = gate.name if gate is not None else artifact.name
    return run_gate(
        gate_name, artifact, kind, declared, folder or default_folder(artifact), workers
    )
