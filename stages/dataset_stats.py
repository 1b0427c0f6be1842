"""Stage ``dataset-stats``: the statistics of a fetched dataset, as a DVC metrics file.

Counts files, bytes and kinds, image sizes and video length, and for every subset with a
list file how many items it lists against the count its catalog entry expects (see
:mod:`vcat.stats`). The JSON is written with sorted keys so equal data gives equal bytes.

Every image is decoded (see :mod:`vcat.images`): an empty, truncated or bomb image, a web
page saved as ``.jpg``, a FIFO or a device in the tree is counted under ``failures`` with its
class and path. The metrics are written either way; the stage then fails (exit 1) when more
than ``max_failed_fraction`` of the files failed, naming the first of them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer

from vcat.catalog.schema import DatasetEntry
from vcat.cli.common import load_entry
from vcat.cli.options import CatalogOption
from vcat.console import fail, stderr
from vcat.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageLimits
from vcat.stage import ParamsOption, StageError, merge_conf, stage_conf, write_json
from vcat.stats import StatsError, dataset_stats

NAME = "dataset-stats"
default_conf: dict[str, Any] = {
    "jobs": 0,  # threads decoding images; 0: one per core
    "max_image_bytes": DEFAULT_MAX_BYTES,  # a larger image is a failure of class oversized
    "max_image_pixels": DEFAULT_MAX_PIXELS,  # more is a decompression_bomb failure
    "max_failed_fraction": 0.0,  # of the files; more fails the stage after writing metrics
}
SHOWN_FAILURES = 3  # failed files named in the error line


class TooManyFailures(StageError):
    """More files failed than the stage allows; the metrics were written."""


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
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    if not root.is_dir():
        raise StatsError(f"{root}: no such folder; fetch the dataset first")
    limits = ImageLimits(int(settings.max_image_bytes), int(settings.max_image_pixels))
    jobs = int(settings.jobs) or os.cpu_count() or 1
    if jobs < 0:
        raise StageError(f"stage {NAME}: jobs must be 0 (one per core) or more")
    metrics = dataset_stats(entry, root, limits, jobs)
    write_json(output, metrics)
    failures = metrics["failures"]
    # failed regular files are among "files"; a FIFO or an unlisted folder is not
    seen = metrics["files"] + failures["count"] - metrics["by_kind"].get("failed", 0)
    allowed = int(float(settings.max_failed_fraction) * seen)
    if failures["count"] > allowed:
        shown = list(failures.get("files", {}).items())[:SHOWN_FAILURES]
        named = ", ".join(f"{root / path} ({failure})" for path, failure in shown)
        more = failures["count"] - len(shown)
        raise TooManyFailures(
            f"{named}{f' and {more} more' if more else ''}: {failures['count']} of {seen} "
            f"files failed, more than the {allowed} that {NAME}.max_failed_fraction="
            f"{settings.max_failed_fraction} allows; see 'failures' in "
            f"{output}: remove or fetch them again"
        )
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
    except TooManyFailures as exc:
        fail(str(exc), code=1)
    except (StageError, StatsError) as exc:
        fail(str(exc))
    stderr.print(f"{written}: statistics of {entry_name}", highlight=False)
