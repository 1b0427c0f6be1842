"""Stage ``vsc-train``: the VSC 2022 copy-detection training set from extracted video frames.

REFERENCES is a finished ``video-frames`` output of the reference videos (one frame per second
or denser). Class ``cls`` is the ``cls``-th reference video with frames: its middle
one-per-second frame written as ``<cls>_0`` and ``copies`` augmented copies ``<cls>_<j>``,
exactly as ``copydetect-train`` makes them (one WebDataset sample per image with ``jpg`` and
``json``, whose ``source`` names the frame; ``ground_truth.csv``, ``retries.tsv``,
``failures.tsv``; resumable, ``--shard``/``--merge``). Blends, overlays and stacks draw from
the images of ``--others`` (the guide uses DISC21's training images ending in 9: set
``mix_every: 10`` and ``mix_offset: 9``), or from the middle frames themselves without it.

GROUND_TRUTH (``train_matching_ground_truth.csv``) gives copied segments; ``pairs.csv`` in the
output lists a positive pair for every second along each (:mod:`vcat.copydetect.vsc`): pair
number, query id and time, reference id and time, and the frame numbers shown then in
``--queries`` (the queries' ``video-frames`` output) and REFERENCES, empty where a video has no
frames or the time is past its end.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from omegaconf import DictConfig

from vcat.copydetect.generate import (
    GenerateError,
    Job,
    Source,
    every,
    list_images,
    write_text,
)
from vcat.copydetect.options import EmojiOption, FontsOption
from vcat.copydetect.overlays import EMOJI_SUFFIXES, FONT_SUFFIXES, AssetError, Assets, asset_files
from vcat.copydetect.runner import COMMON_CONF, recipe_of, run
from vcat.copydetect.vsc import (
    PAIRS_NAME,
    SegmentError,
    middle_frames,
    pairs_text,
    read_segments,
    video_ids,
)
from vcat.executors.run import run_sharded
from vcat.parts import MergeOption, ShardOption, ShardSpec
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    merge_conf,
)
from vcat.stage_cli import run_stage, shard_or_merge
from vcat.video.frames import VideoFrames

NAME = "vsc-train"
default_conf: dict[str, Any] = {
    "mix_every": 1,  # images of --others (or middle frames) to blend with: every one ...
    "mix_offset": 0,  # ... from the first
    **COMMON_CONF,
    "k_min": 3,  # the guide's VSC set (train_v1_s3_r1_all) takes exactly 3 transforms per copy
    "k_max": 3,
}
pipeline_keys = ("entry",)  # params keys only dvc.yaml reads


def _frames(folder: Path, what: str) -> VideoFrames:
    try:
        return VideoFrames(folder)
    except FileNotFoundError as exc:
        raise GenerateError(f"{what}: {exc}") from None


def main(
    conf: Mapping[str, Any] | None,
    references: Path,
    ground_truth: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    spec: ShardSpec | None = None,
    merge: int | None = None,
    queries: Path | None = None,
    others: Path | None = None,
    fonts: Path | None = None,
    emoji: Path | None = None,
) -> Path:
    """Make the VSC training set of the reference frames ``references`` into ``output`` and
    write its ``pairs.csv`` from ``ground_truth`` (``spec``/``merge``: as copydetect-train).

    ``queries``: the queries' frames output, to name the pairs' query frames; ``others``: a
    folder of images to blend with; ``fonts``, ``emoji``: as copydetect-train.
    """
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    segments = read_segments(ground_truth)  # a bad file stops before any work
    reference_frames = _frames(references, "references")
    query_frames = _frames(queries, "queries") if queries is not None else None
    sources: list[Source] = list(middle_frames(references, reference_frames))
    pool: list[Source] = list(list_images(others)) if others is not None else sources
    mixed = every(pool, int(settings.mix_every), int(settings.mix_offset))
    assets = Assets(
        asset_files(fonts, FONT_SUFFIXES, "font"), asset_files(emoji, EMOJI_SUFFIXES, "emoji")
    )
    job = Job(sources, mixed, recipe_of(settings), assets)

    def write_pairs(folder: Path) -> dict[str, Any]:
        known_queries = video_ids(query_frames) if query_frames is not None else None
        text, count, without = pairs_text(segments, known_queries, video_ids(reference_frames))
        write_text(folder / PAIRS_NAME, text)
        return {"segments": len(segments), "pairs": count, "pairs_without_frames": without}

    try:
        return run(
            settings,
            job,
            output,
            label=references.name,
            overwrite=overwrite,
            metrics=metrics,
            spec=spec,
            merge=merge,
            finished=write_pairs,
        )
    finally:
        reference_frames.close()
        if query_frames is not None:
            query_frames.close()


def command(
    context: typer.Context,
    references: Annotated[
        Path,
        typer.Argument(
            help="video-frames output of the reference videos.",
            metavar="REFERENCES",
            exists=True,
            file_okay=False,
        ),
    ],
    ground_truth: Annotated[
        Path,
        typer.Argument(
            help="train_matching_ground_truth.csv (query_id, ref_id, query_start, query_end, "
            "ref_start, ref_end).",
            metavar="GROUND_TRUTH",
            exists=True,
            dir_okay=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Argument(
            help="Folder of shards to write, with pairs.csv, ground_truth.csv, retries.tsv "
            "and failures.tsv.",
            metavar="OUTPUT",
            file_okay=False,
        ),
    ],
    queries: Annotated[
        Path | None,
        typer.Option(
            "--queries",
            help="video-frames output of the query videos, to name each pair's query frame.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    others: Annotated[
        Path | None,
        typer.Option(
            "--others",
            help="Folder of images to blend with, overlay onto and stack beside copies "
            "(default: the middle frames).",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    fonts: FontsOption = None,
    emoji: EmojiOption = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Make the VSC copy-detection training set: augmented middle frames and positive pairs."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(
                conf,
                references,
                ground_truth,
                output,
                overwrite,
                metrics,
                spec,
                merge,
                queries,
                others,
                fonts,
                emoji,
            )

        run_sharded(context, output, params, spec, merge, run)

    run_stage(
        NAME,
        default_conf,
        params,
        work,
        pipeline_keys,
        input_errors=(GenerateError, SegmentError, AssetError),
    )
