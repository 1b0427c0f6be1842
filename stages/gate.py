"""Stage ``gate``: the data-quality gate declared as ``gates.NAME`` in params.yaml.

Profiles the gate's artifact, validates it against the checks in force (the kind's defaults,
the catalog entry's ``quality:``, the gate's ``checks``; see :mod:`vcat.gates.declarations`)
and writes the gate's folder (``<artifact>.gate/``: ``result.json``, ``bad-items.tsv``,
Data Docs) and a metrics file. A failed gate exits 1 after writing them all, so ``dvc repro``
runs no stage that reads the gate's folder; one that cannot run exits 2.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from vcat.cli.options import CatalogOption
from vcat.console import fail, stdout
from vcat.stage import ParamsOption, default_params_path, write_json

NAME = "gate"
default_conf: dict[str, Any] = {}  # each gate's settings are its own section, gates.NAME
SHOWN_ITEMS = 10


def main(
    conf: Mapping[str, Any] | None,
    name: str,
    params: Path,
    metrics: Path | None = None,
    catalog_dir: Path | None = None,
    workers: int | None = None,
) -> Path:
    """Run gate ``name`` of ``params``; return its folder. Raises GateFailed (with the
    summary) when the gate fails, after writing everything."""
    from vcat.gates.checks import DeclarationError
    from vcat.gates.declarations import read_gates
    from vcat.gates.gate import check_artifact, default_folder
    from vcat.gates.report import metrics as gate_metrics
    from vcat.gates.report import summary_lines

    gates = read_gates(params)
    if name not in gates:
        known = ", ".join(gates) or "none"
        raise DeclarationError(f"{params}: no gate {name!r} under 'gates' (known: {known})")
    gate = gates[name]
    if gate.artifact is None:
        raise DeclarationError(f"{params}: gate {name!r} names no artifact; add 'artifact:'")
    folder = default_folder(gate.artifact)
    result = check_artifact(gate.artifact, gate, None, folder, catalog_dir, workers)
    if metrics is not None:
        write_json(metrics, gate_metrics(result))
    lines = summary_lines(result, SHOWN_ITEMS)
    if not result.success:
        raise GateFailed("\n".join(lines))
    stdout.print(lines[0], markup=False, highlight=False)
    return folder


class GateFailed(Exception):
    """The artifact failed its gate; the message is the summary."""


def command(
    name: Annotated[str, typer.Argument(help="The gate: a key of the gates section.")],
    metrics: Annotated[
        Path | None, typer.Option("--metrics", help="Write the gate's metrics (JSON) here.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: every core).")
    ] = None,
    params: ParamsOption = None,
    catalog_dir: CatalogOption = None,
) -> None:
    """Run the data-quality gate NAME declared in params.yaml; exit 1 when it fails."""
    from vcat.gates.checks import DeclarationError
    from vcat.gates.profile import ProfileError
    from vcat.gates.validate import ValidationError

    path = params if params is not None else default_params_path()
    if path is None:
        fail("no params.yaml: run inside the project or pass --params")
    try:
        main(None, name, path, metrics, catalog_dir, workers)
    except GateFailed as exc:
        fail(str(exc), code=1)
    except (DeclarationError, ProfileError, ValidationError) as exc:
        fail(str(exc))
