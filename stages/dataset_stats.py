"""Stage ``dataset-stats``: the statistics of a fetched dataset, as a DVC metrics file.

Counts files, bytes and kinds, image sizes and video length, and for every subset with a
list file how many items it lists against the count its catalog entry expects (see
:mod:`vcat.stats`). The JSON is written with sorted keys so equal data gives equal bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from vcat.catalog.schema import DatasetEntry
from vcat.cli.catalog import CatalogOption
from vcat.cli.common import fail, load_entry, stderr
from vcat.stage import ParamsOption, StageError, merge_conf, stage_conf, write_json
from vcat.stats import StatsError, dataset_stats

NAME = "dataset-stats"
default_conf: dict[str, Any] = {}


def main(
    conf: Mapping[str, Any] | None,
    entry: DatasetEntry,
    root: Path,
    output: Path,
) -> Path:
    """Write the metrics of ``entry``'s tree at ``root`` to ``output`` (JSON); return it.

    The statistics are always recomputed (one walk over the tree, cheap next to fetching
    it); ``output`` is replaced only when they differ, so there is nothing to overwrite.
    """
    merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    if not root.is_dir():
        raise StatsError(f"{root}: no such folder; fetch the dataset first")
    write_json(output, dataset_stats(entry, root))
    return output


def command(
    entry_name: Annotated[str, typer.Argument(help="Catalog entry.", metavar="ENTRY")],
    root: Annotated[
        Path, typer.Argument(help="The dataset's root.", file_okay=False, metavar="ROOT")
    ],
    output: Annotated[
        Path, typer.Argument(help="The metrics JSON to write.", dir_okay=False, metavar="OUTPUT")
    ],
    params: ParamsOption = None,
    catalog_dir: CatalogOption = None,
) -> None:
    """Count files, bytes, image sizes, video length and subset items of a fetched dataset."""
    entry = load_entry(entry_name, catalog_dir)
    if not isinstance(entry.spec, DatasetEntry):
        fail(f"{entry_name} is a model entry; dataset-stats reads datasets")
    try:
        conf = stage_conf(NAME, default_conf, params)
        written = main(conf, entry.spec, root, output)
    except (StageError, StatsError) as exc:
        fail(str(exc))
    stderr.print(f"{written}: statistics of {entry_name}", highlight=False)
