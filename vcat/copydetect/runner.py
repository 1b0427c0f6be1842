"""Running a copy-detection stage: the settings both stages share, progress, parts, metrics.

``copydetect-train`` (a folder of images) and ``vsc-train`` (middle frames of videos) differ
only in where their sources come from; once they have a :class:`~vcat.copydetect.generate.Job`,
:func:`run` does the rest: the whole run, one shard's part, or the merge of the parts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.copydetect.generate import (
    GenerateError,
    Job,
    Limits,
    Recipe,
    check_part,
    fill,
    finish,
    merge_parts,
)
from vcat.copydetect.names import GUIDE_POOL
from vcat.parts import ShardSpec, finished_parts, part_folder, remove_parts
from vcat.stage import write_json

#: The settings of the recipe and of the run, shared by both stages (each adds its selection).
COMMON_CONF: dict[str, Any] = {
    "seed": 0,
    "copies": 19,  # augmented copies per class, besides <cls>_0
    "k_min": 2,  # transforms per copy, uniform in k_min..k_max (3..3 for the s3 variants)
    "k_max": 7,
    "transforms": list(GUIDE_POOL),  # the pool, by name (vcat.copydetect.pool)
    "size": 256,
    "quality": 100,
    "grayscale": False,  # the guide's _bw variants
    "max_attempts": 10,  # per copy; a copy failing all of them fails its class
    "max_failed_fraction": 0.0,  # of the classes
    "jobs": 2,  # worker processes
    "shard_max_count": 10_000,
    "shard_max_bytes": 1 << 30,
}


def recipe_of(settings: Mapping[str, Any]) -> Recipe:
    return Recipe(
        seed=int(settings["seed"]),
        copies=int(settings["copies"]),
        k_min=int(settings["k_min"]),
        k_max=int(settings["k_max"]),
        transforms=tuple(str(name) for name in settings["transforms"]),
        size=int(settings["size"]),
        quality=int(settings["quality"]),
        grayscale=bool(settings["grayscale"]),
        max_attempts=int(settings["max_attempts"]),
    )


def _progress() -> Progress:
    return stderr_bars(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]} failed"),
        TimeRemainingColumn(),
    )


def run(
    settings: Mapping[str, Any],
    job: Job,
    output: Path,
    *,
    label: str,
    overwrite: bool = False,
    metrics: Path | None = None,
    spec: ShardSpec | None = None,
    merge: int | None = None,
    finished: Callable[[Path], Mapping[str, Any]] | None = None,
) -> Path:
    """The work of ``copydetect-train`` and ``vsc-train`` once their sources are known: the
    classes of ``job`` into ``output``: all of them (``spec`` None), the block of shard
    ``spec`` (even 0/1) into its part beside ``output``, or the merge of ``merge`` parts.

    ``finished(output)``, when given, runs once the output is complete (not for a part) and
    returns counts added to the metrics."""
    jobs = int(settings["jobs"])
    if jobs < 1:
        raise GenerateError(f"jobs must be at least 1, not {jobs}")
    limits = Limits(int(settings["shard_max_count"]), int(settings["shard_max_bytes"]))
    fraction = float(settings["max_failed_fraction"])
    total = len(job.sources)
    if merge is not None:
        if spec is not None:
            raise GenerateError("give either --shard or --merge, not both")
        job.check()
        parts = finished_parts(output, merge)
        for index, part in enumerate(parts):
            check_part(job, part, ShardSpec(index, merge))
        summary = merge_parts(
            parts,
            output,
            signature=job.signature(range(total)),
            limits=limits,
            allowed_failures=int(fraction * total),
            overwrite=overwrite,
        )
        remove_parts(output)
    else:
        classes = range(total) if spec is None else spec.block(total)
        folder = output if spec is None else part_folder(output, spec)
        if spec is None:
            remove_parts(output)
        with _progress() as progress:
            task = progress.add_task(label, total=len(classes), failed=0)

            def advance(done: int, failed: int) -> None:
                progress.update(task, advance=done, failed=failed)

            fill(
                job,
                folder,
                classes,
                jobs=jobs,
                limits=limits,
                allowed_failures=int(fraction * len(classes)),
                overwrite=overwrite,
                progress=advance,
            )
        if spec is not None:
            stderr.print(f"{folder}: part {spec} done ({len(classes):,} classes)", highlight=False)
            return folder
        summary = finish(output)
    extra = dict(finished(output)) if finished is not None else {}
    stderr.print(
        f"{output}: {summary.images:,} images of {summary.classes:,} classes in "
        f"{summary.shards} shard(s), {summary.retries:,} retried attempt(s), "
        f"{summary.failed_classes:,} failed class(es)",
        highlight=False,
    )
    if metrics is not None:
        write_json(metrics, {**summary.metrics(), **extra})
    return output
