"""`vcat manifest build`: the size and digest of every file of a dataset, in a manifest.

NAME must be an entry that passes `vcat catalog lint` (the same message and exit 2 as every
command otherwise); it names the manifest and finds the remembered root. The root is found
as `vcat verify` finds it (vcat.cli.trees).

Exit codes: 0 the manifest was written, 2 it could not be (unknown entry, no root, a file
that cannot be read). ``--json``: docs/cli-json.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.markup import escape

from vcat.cli.entry_check import entry_checked
from vcat.cli.options import CatalogOption, JsonOption
from vcat.cli.trees import (
    NameArgument,
    RootOption,
    WorkersOption,
    dataset_folder,
    hash_progress,
)
from vcat.console import fail, stdout
from vcat.problems import display_path
from vcat.project import ProjectNotFound, find_project_root
from vcat.verify.manifest import (
    ManifestError,
    TreeError,
    check_destination,
    default_manifest_name,
    manifest_of,
    write_manifest,
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
    with entry_checked(name, catalog_dir) as check:
        folder, _ = dataset_folder(name, root, check.result)
        target = out if out is not None else _default_out(name, algorithm, check.fail)
        started = time.perf_counter()
        try:
            check_destination(target, folder)
            with hash_progress("hashing", check.poll) as progress:
                written = manifest_of(folder, target, algorithm, workers, progress)
            check.result()
            write_manifest(written, target)
        except (ManifestError, TreeError) as exc:
            check.fail(str(exc))
        except OSError as exc:
            check.fail(f"cannot read {exc.filename}: {exc.strerror}")
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


def _default_out(name: str, algorithm: str, fail: Callable[[str], NoReturn] = fail) -> Path:
    try:
        project = find_project_root()
    except ProjectNotFound:
        fail("not inside a vcat project, so there is no default manifest folder: pass --out")
    return project / MANIFESTS_DIR / default_manifest_name(name, algorithm)
