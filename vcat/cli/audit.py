"""`vcat audit`: checks across datasets; `vcat audit leakage` finds held-out data in training.

Held out: every catalog split marked ``held_out: true``, by its ``scenes`` and ``images``, and
the image files of those found under the entry's data root (``--root NAME=DIR``, else the root
remembered in ``.vcat/settings.yaml``, else ``data/sources/<name>``). Training artifacts: the
folders named on the command line (or names under ``audit.training`` in params.yaml), by
default every one that ``audit.training`` lists.

Exit codes: 0 no hit, 1 hits found (a gate forbids any), 2 the audit could not run (missing
artifact, no held-out split, an image that cannot be hashed, bad settings).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from vcat.cli.options import CatalogOption, JsonOption
from vcat.console import fail, stderr, stdout

if TYPE_CHECKING:  # imported where used: `vcat audit --help` imports none of them
    from vcat.audit.artifacts import TrainingArtifact
    from vcat.audit.leakage import Report

app = typer.Typer(
    no_args_is_help=True,
    help="Checks across datasets: `vcat audit leakage` finds held-out scenes and images, or near "
    "duplicates of them, in training artifacts.",
)


@app.callback()
def _group() -> None:
    """Checks across datasets (a group, so that `vcat audit leakage` keeps its name)."""


SECTION = "audit"
default_conf: dict[str, Any] = {
    "max_distance": 8,  # bits: a training image this close to a held-out image is a hit
    "jobs": 0,  # processes hashing images; 0: one per available core
}
SHOWN_HITS = 200  # rows of the table; --json and --out hold every hit


def _roots(given: list[str]) -> dict[str, Path]:
    roots: dict[str, Path] = {}
    for text in given:
        name, sep, folder = text.partition("=")
        if not sep or not name or not folder:
            raise typer.BadParameter(f"{text!r}: write NAME=DIR, e.g. megadepth=/data/MegaDepth")
        roots[name] = Path(folder)
    return roots


def _settings(params: Path | None) -> tuple[Any, dict[str, TrainingArtifact]]:
    """The audit section of the params file: settings, and the training artifacts by name."""
    from vcat.audit import AuditError
    from vcat.audit.artifacts import artifact_from_params
    from vcat.stage import default_params_path, merge_conf, read_params_section

    path = params if params is not None else default_params_path()
    if path is None:
        return merge_conf(default_conf, None, origin=SECTION), {}
    section, locate = read_params_section(path, SECTION)
    training = section.get("training") or {}
    if not isinstance(training, dict):
        raise AuditError(f"{locate('training')} must map artifact names to their settings")
    others = {key: value for key, value in section.items() if key != "training"}
    settings = merge_conf(default_conf, others, locate=locate)
    artifacts = {}
    for name, values in training.items():
        if not isinstance(values, dict):
            raise AuditError(f"{locate(f'training.{name}')} must be a mapping (kind, path, ...)")
        artifacts[str(name)] = artifact_from_params(
            str(name), values, path.resolve().parent, locate
        )
    return settings, artifacts


def _chosen(given: list[str], known: dict[str, TrainingArtifact]) -> list[TrainingArtifact]:
    from vcat.audit import AuditError
    from vcat.audit.artifacts import artifact_from_folder

    if not given:
        return list(known.values())
    chosen = []
    for text in given:
        if text in known:
            chosen.append(known[text])
        elif Path(text).is_dir():
            chosen.append(artifact_from_folder(Path(text)))
        else:
            names = ", ".join(known) or "none"
            raise AuditError(
                f"{text}: no such folder, and not a training artifact of params.yaml's "
                f"audit.training (those are: {names})"
            )
    return chosen


def _root_finder(roots: dict[str, Path]) -> Callable[[str], Path]:
    from vcat.project import ProjectNotFound
    from vcat.settings import dataset_root

    def root_of(entry: str) -> Path:
        if entry in roots:
            return roots[entry]
        try:
            return dataset_root(entry)
        except ProjectNotFound:
            return Path("/nonexistent") / entry  # no data on this machine that we know of

    return root_of


@contextmanager
def _bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

    from vcat.console import stderr_bars

    with stderr_bars(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    ) as progress:

        def bar(description: str, total: int) -> Callable[[int], None]:
            task = progress.add_task(escape(description), total=total)
            return lambda steps: progress.update(task, advance=steps)

        yield bar


def _print(report: Report) -> None:
    for note in report.notes:
        stderr.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
    if report.hits:
        table = Table(title=f"{len(report.hits):,} leak(s)", title_justify="left")
        for column in ("kind", "training item", "training path", "held out", "held-out path"):
            table.add_column(column)
        table.add_column("bits", justify="right")
        for hit in report.hits[:SHOWN_HITS]:
            table.add_row(
                hit.kind,
                escape(f"{hit.artifact}: {hit.item}"),
                escape(hit.item_path),
                escape(f"{hit.entry}/{hit.split}: {hit.held_item}"),
                escape(hit.held_path),
                "" if hit.distance is None else str(hit.distance),
            )
        stdout.print(table)
        if len(report.hits) > SHOWN_HITS:
            stdout.print(f"... and {len(report.hits) - SHOWN_HITS:,} more (--json or --out)")
    for counts in report.artifacts:
        checked = (
            f"{counts.sources_checked:,} source images checked by scene and path"
            if counts.kind == "croco-crops"
            else f"{counts.images_hashed:,} images hashed"
        )
        mark = "[red]LEAK[/red]" if counts.hits else "[green]ok[/green]"
        stdout.print(
            f"{mark} {escape(counts.name)}: {checked}, {counts.hits:,} hit(s)", highlight=False
        )


@app.command("leakage")
def leakage(
    artifacts: Annotated[
        list[str] | None,
        typer.Argument(
            help="Training artifacts: names under params.yaml's audit.training, or folders "
            "(a croco-crops output or a shard folder). Default: every one audit.training lists.",
            metavar="[ARTIFACT]...",
        ),
    ] = None,
    max_distance: Annotated[
        int | None,
        typer.Option(
            "--max-distance",
            min=0,
            max=63,
            help="Bits a training image may differ from a held-out image and still be a hit "
            "(default: audit.max_distance, 8).",
        ),
    ] = None,
    json_output: JsonOption = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="Write the whole report (every hit) as JSON here.", dir_okay=False
        ),
    ] = None,
    metrics: Annotated[
        Path | None,
        typer.Option(
            "--metrics", help="Write the summary counts as JSON here (DVC metrics).", dir_okay=False
        ),
    ] = None,
    root: Annotated[
        list[str] | None,
        typer.Option("--root", metavar="NAME=DIR", help="Where entry NAME's data is (repeatable)."),
    ] = None,
    params: Annotated[
        Path | None,
        typer.Option(
            "--params",
            help="Params file (default: params.yaml of the project).",
            dir_okay=False,
            exists=True,
        ),
    ] = None,
    catalog: CatalogOption = None,
) -> None:
    """Check every held-out split of the catalog against training artifacts, by scene and
    image identifiers and by near-duplicate perceptual hash; each hit names both sides."""
    from vcat.audit import AuditError
    from vcat.audit.held_out import held_out
    from vcat.audit.leakage import audit
    from vcat.catalog.loader import load_catalog
    from vcat.problems import CatalogError
    from vcat.processes import WorkerDied, usable_cores
    from vcat.project import ProjectNotFound, default_catalog_dir
    from vcat.stage import StageError, write_json

    roots = _roots(root or [])
    try:
        settings, known = _settings(params)
        chosen = _chosen(artifacts or [], known)
        folder = catalog or default_catalog_dir()
        held = held_out(load_catalog([folder]), _root_finder(roots))
        distance = int(settings.max_distance) if max_distance is None else max_distance
        if not 0 <= distance < 64:
            raise AuditError(f"audit.max_distance must lie in [0, 63], not {distance}")
        with _bars() as bar:
            report = audit(
                held,
                chosen,
                max_distance=distance,
                jobs=int(settings.jobs) or usable_cores(),
                progress=bar,
            )
    except (AuditError, StageError, ProjectNotFound, CatalogError, WorkerDied) as exc:
        fail(str(exc))  # a CatalogError here is the settings file's first problem, with its line
    document = _inside_project(report.to_json())
    if out is not None:
        write_json(out, document)
    if metrics is not None:
        write_json(metrics, report.metrics())
    if json_output:
        typer.echo(json.dumps(document, indent=2))
    else:
        _print(report)
    if report.hits:
        raise typer.Exit(1)


def _inside_project(value: Any) -> Any:
    """``value`` with every path under the project written relative to it: the report a stage
    writes is then the same bytes in any checkout of the project."""
    from vcat.project import ProjectNotFound, find_project_root

    try:
        prefix = f"{find_project_root()}/"
    except ProjectNotFound:
        return value

    def relative(item: Any) -> Any:
        if isinstance(item, str):
            return item.removeprefix(prefix)
        if isinstance(item, list):
            return [relative(element) for element in item]
        if isinstance(item, dict):
            return {key: relative(element) for key, element in item.items()}
        return item

    return relative(value)
