"""`vcat check ARTIFACT`: run a data-quality gate on an artifact.

The checks in force are the kind's defaults, then the catalog entry's ``quality:`` and the
``checks`` of the gate declared for the artifact in ``params.yaml`` (``--suite NAME`` picks a
gate by name; otherwise the one whose ``artifact`` is ARTIFACT, if any). The gate's folder
(``<artifact>.gate/``, or ``--out``) receives ``result.json``, ``bad-items.tsv`` and the
great-expectations Data Docs (``docs/index.html``).

Exit codes: 0 the gate passed, 1 it failed, 2 it could not run (no such artifact, unknown
kind or check, unreadable index). ``--json`` prints ``result.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.cli.options import CatalogOption, JsonOption
from vcat.console import fail, stderr, stdout


def check(
    artifact: Annotated[
        Path | None,
        typer.Argument(help="The artifact: a shard folder, a path-list folder or file, ..."),
    ] = None,
    kind: Annotated[
        str | None, typer.Option("--kind", help="Its kind (default: declared, else detected).")
    ] = None,
    suite: Annotated[
        str | None,
        typer.Option("--suite", help="The gate declared under this name in params.yaml."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="The gate's folder (default: <artifact>.gate).", file_okay=False
        ),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params", help="Params file (default: the project's params.yaml).", dir_okay=False
        ),
    ] = None,
    max_items: Annotated[
        int, typer.Option("--max-items", min=0, help="Failing items shown per check.")
    ] = 10,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, help="Processes (default: every core).")
    ] = None,
    list_checks: Annotated[
        bool, typer.Option("--list", help="List the kinds and their checks, and exit.")
    ] = False,
    summary: Annotated[
        bool,
        typer.Option(
            "--summary",
            help="One line: the last result of every gate in params.yaml (exit 1 unless all "
            "passed).",
        ),
    ] = False,
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Run a data-quality gate on an artifact: profile it, validate it with great-expectations,
    list what failed."""
    from vcat.gates.checks import DeclarationError
    from vcat.gates.profile import ProfileError
    from vcat.gates.validate import ValidationError

    if list_checks:
        _list_kinds()
        return
    if summary:
        try:
            line, passed = _summary(params)
        except DeclarationError as exc:
            fail(str(exc))
        stdout.print(escape(line), highlight=False)
        if not passed:
            raise typer.Exit(1)
        return
    if artifact is None:
        fail("give the artifact to check (or --list for the kinds and their checks)")
    try:
        result = _run(artifact, kind, suite, out, params, catalog_dir, workers)
    except (ProfileError, DeclarationError, ValidationError) as exc:
        fail(str(exc))
    from vcat.gates.report import summary_lines, to_json

    if as_json:
        payload = to_json(result)
        typer.echo(json.dumps(payload, indent=2, default=str))
    else:
        for line in summary_lines(result, max_items):
            stdout.print(escape(line), highlight=False)
        failed_tables = {outcome.table for outcome in result.failed}
        for table, page in result.run.pages.items():
            if table in failed_tables:
                stdout.print(f"Data Docs ({table}): {escape(str(page))}", highlight=False)
        if result.run.docs is not None:
            stdout.print(f"Data Docs: {escape(str(result.run.docs))}", highlight=False)
    if not result.success:
        raise typer.Exit(1)


def _run(
    artifact: Path,
    kind: str | None,
    suite: str | None,
    out: Path | None,
    params: Path | None,
    catalog_dir: Path | None,
    workers: int | None,
):
    from vcat.gates.checks import DeclarationError
    from vcat.gates.declarations import gate_for_artifact, read_gates
    from vcat.gates.gate import check_artifact
    from vcat.stage import default_params_path

    params_path = params if params is not None else default_params_path()
    gates = read_gates(params_path) if params_path is not None else {}
    if suite is not None:
        if suite not in gates:
            where = params_path or "params.yaml"
            known = ", ".join(gates) or "none"
            raise DeclarationError(f"{where}: no gate {suite!r} under 'gates' (known: {known})")
        gate = gates[suite]
    else:
        gate = gate_for_artifact(gates, artifact)
    with stderr.status(f"checking {escape(str(artifact))}"):
        return check_artifact(artifact, gate, kind, out, catalog_dir, workers)


def _list_kinds() -> None:
    from vcat.gates.checks import declare
    from vcat.gates.profile import kinds

    for name, kind in kinds().items():
        stdout.print(f"[bold]{name}[/bold]: {escape(kind.description)}")
        for declared in declare(kind.checks, []):
            params = ", ".join(f"{k}={v!r}" for k, v in declared.params.items())
            state = "" if declared.enabled else " (off until declared)"
            stdout.print(f"  {declared.check.name}{state}: {escape(params)}", highlight=False)


def _summary(params: Path | None) -> tuple[str, bool]:
    """``gates: 6 passed, 1 failed (name), 1 not run (name)`` from each declared gate's
    ``result.json``, and whether every gate passed."""
    from vcat.gates.declarations import read_gates
    from vcat.gates.gate import default_folder
    from vcat.gates.report import RESULT_NAME
    from vcat.stage import default_params_path

    path = params if params is not None else default_params_path()
    gates = read_gates(path) if path is not None else {}
    groups: dict[str, list[str]] = {"passed": [], "failed": [], "not run": []}
    for name, gate in gates.items():
        result = None if gate.artifact is None else default_folder(gate.artifact) / RESULT_NAME
        try:
            success = json.loads(result.read_text(encoding="utf-8"))["success"] if result else None
        except (OSError, ValueError, KeyError, TypeError):
            success = None
        groups["not run" if success is None else "passed" if success else "failed"].append(name)
    parts = [f"{len(groups['passed'])} passed"]
    parts += [f"{len(names)} {state} ({', '.join(names)})" for state, names in groups.items()
              if state != "passed" and names]  # fmt: skip
    return f"gates: {', '.join(parts)}", not groups["failed"] and not groups["not run"]
