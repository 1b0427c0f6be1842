"""Stage ``copydetect-train``: a DISC21-style copy-detection training set from a folder of images.

The images of SOURCES are sorted by relative path. Every ``select_every``-th from
``select_offset`` is a class source (the guide's ``i % 10 == 0``); every ``mix_every``-th from
``mix_offset`` may be blended with, overlaid on or stacked beside a copy (the guide's
``training_images_9``, the names ending in 9). Class ``cls`` is written as ``<cls>_0`` (the
source at ``size`` x ``size``) and ``copies`` augmented copies ``<cls>_<j>``, as one
WebDataset sample per image with ``jpg`` and ``json`` (see :mod:`vcat.copydetect.generate`
for the records, the retries of failing transforms and resuming); ``vcat shards unpack``
gives the guide's flat folder of ``<cls>_<j>.jpg``. The folder also holds
``ground_truth.csv`` (DISC21's ``query_id,reference_id``, each copy a query of its
``<cls>_0``), ``retries.tsv`` and ``failures.tsv``.

``--shard I/N`` makes the contiguous block I of N of the classes into a part beside OUTPUT;
``--merge N`` combines the N parts into OUTPUT, byte-identical to a single run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from vcat.console import fail, stderr, stderr_bars
from vcat.copydetect.generate import (
    GenerateError,
    Job,
    Limits,
    Recipe,
    Source,
    TooManyFailed,
    check_part,
    every,
    fill,
    finish,
    list_images,
    merge_parts,
)
from vcat.copydetect.overlays import EMOJI_SUFFIXES, FONT_SUFFIXES, AssetError, Assets, asset_files
from vcat.parts import (
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    finished_parts,
    part_folder,
    remove_parts,
    shard_spec,
)
from vcat.shards import ShardError
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    stage_conf,
    write_json,
)

NAME = "copydetect-train"
DEFAULT_TRANSFORMS = [
    "change_channel",
    "pad_square",
    "random_resized_crop",
    "rotate",
    "blend",
    "grayscale",
    "color_jitter",
    "blur",
    "pixelize",
    "pad",
    "noise",
    "vflip",
    "hflip",
    "jpeg",
    "stripes",
    "sharpen",
    "skew",
    "shuffle_pixels",
    "meme",
    "emoji",
    "text",
    "perspective",
    "overlay_onto",
    "stack",
]
default_conf: dict[str, Any] = {
    "seed": 0,
    "select_every": 10,  # class sources: every 10th image by sorted name ...
    "select_offset": 0,  # ... starting with the first (the guide's i % 10 == 0)
    "mix_every": 10,  # images to blend with, overlay onto and stack beside: every 10th ...
    "mix_offset": 9,  # ... starting with the tenth (the guide's names ending in 9)
    "copies": 19,  # augmented copies per class, besides <cls>_0
    "k_min": 2,  # transforms per copy, uniform in k_min..k_max (3..3 for the s3 variant)
    "k_max": 7,
    "transforms": DEFAULT_TRANSFORMS,  # the pool, by name (vcat.copydetect.pool)
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
) -> Path:
    """The work of ``copydetect-train`` and ``vsc-train`` once their sources are known: the
    classes of ``job`` into ``output``: all of them (``spec`` None), the block of shard
    ``spec`` (even 0/1) into its part beside ``output``, or the merge of ``merge`` parts."""
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
    stderr.print(
        f"{output}: {summary.images:,} images of {summary.classes:,} classes in "
        f"{summary.shards} shard(s), {summary.retries:,} retried attempt(s), "
        f"{summary.failed_classes:,} failed class(es)",
        highlight=False,
    )
    if metrics is not None:
        write_json(metrics, summary.metrics())
    return output


def main(
    conf: Mapping[str, Any] | None,
    sources: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    spec: ShardSpec | None = None,
    merge: int | None = None,
    fonts: Path | None = None,
    emoji: Path | None = None,
) -> Path:
    """Make the training set of the images in ``sources`` into the shard folder ``output``
    (``spec``: only that shard's block of classes, into its part; ``merge``: combine parts).

    ``fonts`` and ``emoji``: folders of font (.ttf, .otf) and emoji (.png) files for the
    overlays (default: Pillow's built-in font and drawn emoji). Resumes an interrupted run,
    skips a finished one, and starts afresh when the inputs or settings changed (or with
    ``overwrite``). ``metrics`` receives the counts as JSON.
    """
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    images: list[Source] = list(list_images(sources))
    selected = every(images, int(settings.select_every), int(settings.select_offset))
    others = every(images, int(settings.mix_every), int(settings.mix_offset))
    assets = Assets(
        asset_files(fonts, FONT_SUFFIXES, "font"), asset_files(emoji, EMOJI_SUFFIXES, "emoji")
    )
    job = Job(selected, others, recipe_of(settings), assets)
    return run(
        settings,
        job,
        output,
        label=sources.name,
        overwrite=overwrite,
        metrics=metrics,
        spec=spec,
        merge=merge,
    )


def command(
    sources: Annotated[
        Path,
        typer.Argument(
            help="Folder of source images (searched recursively, sorted by relative path).",
            metavar="SOURCES",
            exists=True,
            file_okay=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder of shards to write (a sample per image, <cls>_<j> with jpg and json), "
            "with ground_truth.csv, retries.tsv and failures.tsv.",
            metavar="OUTPUT",
            file_okay=False,
        ),
    ],
    fonts: Annotated[
        Path | None,
        typer.Option(
            "--fonts",
            help="Folder of .ttf/.otf fonts for text and meme overlays (e.g. AugLy's fonts); "
            "default: Pillow's built-in font.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    emoji: Annotated[
        Path | None,
        typer.Option(
            "--emoji",
            help="Folder of .png emoji for emoji overlays (e.g. AugLy's twemojis); default: "
            "drawn faces, hearts and stars.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Make a DISC21-style copy-detection training set (originals and augmented copies)."""
    spec = None if shard is None else shard_spec(shard)
    try:
        conf = stage_conf(NAME, default_conf, params)
        main(conf, sources, output, overwrite, metrics, spec, merge, fonts, emoji)
    except TooManyFailed as exc:
        fail(str(exc), code=1)
    except (StageError, GenerateError, AssetError, ShardError, PartsError) as exc:
        fail(str(exc))
