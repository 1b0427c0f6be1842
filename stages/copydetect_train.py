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
from omegaconf import DictConfig

from vcat.copydetect.generate import GenerateError, ImageFile, Job, every, list_images
from vcat.copydetect.options import EmojiOption, FontsOption
from vcat.copydetect.overlays import EMOJI_SUFFIXES, FONT_SUFFIXES, AssetError, Assets, asset_files
from vcat.copydetect.runner import COMMON_CONF, recipe_of, run
from vcat.executors.run import run_sharded
from vcat.parts import MergeOption, ShardOption, ShardSpec
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    merge_conf,
)
from vcat.stage_cli import folder_argument, run_stage, shard_or_merge

NAME = "copydetect-train"
default_conf: dict[str, Any] = {
    "select_every": 10,  # class sources: every 10th image by sorted name ...
    "select_offset": 0,  # ... starting with the first (the guide's i % 10 == 0)
    "mix_every": 10,  # images to blend with, overlay onto and stack beside: every 10th ...
    "mix_offset": 9,  # ... starting with the tenth (the guide's names ending in 9)
    **COMMON_CONF,
}
pipeline_keys = ("entries",)  # params keys only dvc.yaml reads (whose references to use)


def _selection(settings: Any, sources: Path) -> tuple[list[ImageFile], list[ImageFile]]:
    """The images that become classes, and those to mix with."""
    images = list_images(sources)
    selected = every(images, int(settings.select_every), int(settings.select_offset))
    return selected, every(images, int(settings.mix_every), int(settings.mix_offset))


def _assets(fonts: Path | None, emoji: Path | None) -> Assets:
    return Assets(
        asset_files(fonts, FONT_SUFFIXES, "font"), asset_files(emoji, EMOJI_SUFFIXES, "emoji")
    )


def block_sources(
    conf: Mapping[str, Any] | None,
    sources: Path,
    fonts: Path | None,
    emoji: Path | None,
    count: int,
) -> list[list[Path]]:
    """The files each of ``count`` shards reads (for executor data: remote): the sources of
    its block of classes, and every image to mix with, font and emoji (any class may draw
    any of them)."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    selected, others = _selection(settings, sources)
    assets = _assets(fonts, emoji)
    shared = [image.path for image in others] + [*assets.fonts, *assets.emoji]
    blocks = [ShardSpec(index, count).block(len(selected)) for index in range(count)]
    return [[selected[cls].path for cls in block] + shared for block in blocks]


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
    selected, others = _selection(settings, sources)
    job = Job(selected, others, recipe_of(settings), _assets(fonts, emoji))
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
    context: typer.Context,
    sources: folder_argument(
        "Folder of source images (searched recursively, sorted by relative path).", "SOURCES"
    ),
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder of shards to write (a sample per image, <cls>_<j> with jpg and json), "
            "with ground_truth.csv, retries.tsv and failures.tsv.",
            metavar="OUTPUT",
            file_okay=False,
        ),
    ],
    fonts: FontsOption = None,
    emoji: EmojiOption = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Make a DISC21-style copy-detection training set (originals and augmented copies)."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(conf, sources, output, overwrite, metrics, spec, merge, fonts, emoji)

        def blocks(count: int) -> list[list[Path]]:
            return block_sources(conf, sources, fonts, emoji, count)

        run_sharded(context, output, params, spec, merge, run, block_inputs=blocks)

    run_stage(
        NAME, default_conf, params, work, pipeline_keys, input_errors=(GenerateError, AssetError)
    )
