"""`vcat manifest build`, and the root, options and progress bars it shares with `vcat verify`.

NAME must be an entry that passes `vcat catalog lint` (the same message and exit 2 as every
command otherwise); it names the manifest and finds the remembered root. The root is found
as `vcat verify` finds it.

Exit codes: 0 the manifest was written, 2 it could not be (unknown entry, no root, a file
that cannot be read). ``--json``: docs/cli-json.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.filesize import decimal
from rich.markup import escape
from rich.progress import BarColumn, TaskProgressColumn, TextColumn, TimeRemainingColumn

from vcat.cli.common import load_entry, print_problems
from vcat.cli.options import CatalogOption, JsonOption
from vcat.console import fail, stderr_bars, stdout
from vcat.problems import CatalogError, display_path
from vcat.project import ProjectNotFound, find_project_root
from vcat.verify.manifest import (
    HashProgress,
    ManifestError,
    ProgressCallback,
    TreeError,
    build_manifest,
    default_manifest_name,
)

BUILD_FORMAT = "vcat.manifest.build/1"
MANIFESTS_DIR = Path("data") / "manifests"


manifest_app = typer.Typer(
    help="Manifests: the size and digest of every file of a dataset, to verify copies with.",
    no_args_is_help=True,
)


class AlgorithmChoice(StrEnum):
    md5 = "md5"
    sha256 = "sha256"


NameArgument = Annotated[str, typer.Argument(help="Entry name, as in `vcat catalog list`.")]
RootOption = Annotated[
    Path | None,
    typer.Option(
        "--root",
        help="The dataset's folder (default: the remembered root, else data/sources/NAME).",
        file_okay=False,
    ),
]
WorkersOption = Annotated[
    int | None,
    typer.Option("--workers", min=1, help="Threads that hash files (default: every core)."),
]


def dataset_folder(name: str, given: Path | None) -> tuple[Path, bool]:
    """The root to check and whether it was given on the command line."""
    if given is not None:
        return given, True
    from vcat.settings import default_root, load_settings

    try:
        remembered = load_settings().roots.get(name)
    except CatalogError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None
    except ProjectNotFound:
        remembered = None
    if remembered is not None:
        return Path(remembered), False
    try:
        fallback = default_root(name)
    except ProjectNotFound:
        fallback = None
    if fallback is not None and fallback.is_dir():
        return fallback, False
    fail(
        f"no root is known for {name!r}: pass --root DIR, the folder that holds its data "
        "(vcat remembers it once the check passes)"
    )


@contextmanager
def hash_progress(verb: str) -> Iterator[ProgressCallback]:
    """Two bars on stderr, files and bytes, fed by the hashing progress callback."""
    with stderr_bars(
        TextColumn("{task.description:>13}"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeRemainingColumn(),
    ) as bars:
        files = bars.add_task(f"{verb} files", total=None, detail="")
        data = bars.add_task("bytes", total=None, detail="")

        def update(state: HashProgress) -> None:
            bars.update(
                files,
                completed=state.files_done,
                total=state.files_total,
                detail=f"{state.files_done:,}/{state.files_total:,}",
            )
            bars.update(
                data,
                completed=state.bytes_done,
                total=state.bytes_total,
                detail=f"{decimal(state.bytes_done)}/{decimal(state.bytes_total)}",
            )

        yield update


@manifest_app.command("build")
def build(
    name: NameArgument,
    root: RootOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Manifest file; '.gz' compresses it "
            "(default: data/manifests/NAME.ALGORITHM.manifest.tsv in the project).",
            dir_okay=False,
        ),
    ] = None,
    algorithm: Annotated[
        AlgorithmChoice, typer.Option("--algorithm", help="Digest of each file.")
    ] = AlgorithmChoice.md5,
    workers: WorkersOption = None,
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Hash every file under the dataset's root into a manifest (never written inside it).

    The manifest lists each file's digest, size and path, sorted; `vcat verify NAME
    --manifest M` checks a copy against it. Format: docs/cli-json.md.
    """
    load_entry(name, catalog_dir)
    folder, _ = dataset_folder(name, root)
    target = out if out is not None else _default_out(name, algorithm)
    started = time.perf_counter()
    try:
        with hash_progress("hashing") as progress:
            written = build_manifest(folder, target, algorithm, workers, progress)
    except (ManifestError, TreeError) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")
    seconds = time.perf_counter() - started
    total = sum(record.size for record in written.records)
    if as_json:
        payload = {
            "format": BUILD_FORMAT,
            "name": name,
            "root": display_path(folder.resolve()),
            "manifest": display_path(target.resolve()),
            "algorithm": str(algorithm),
            "files": len(written.records),
            "bytes": total,
            "seconds": round(seconds, 3),
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    rate = total / seconds / 1e6 if seconds else 0.0
    stdout.print(
        f"wrote {escape(display_path(target.resolve()))}: {len(written.records):,} files, "
        f"{total:,} bytes in {seconds:.1f} s ({rate:,.0f} MB/s)",
        highlight=False,
    )


def _default_out(name: str, algorithm: str) -> Path:
    try:
        project = find_project_root()
    except ProjectNotFound:
        fail("not inside a vcat project, so there is no default manifest folder: pass --out")
    return project / MANIFESTS_DIR / default_manifest_name(name, algorithm)
