"""Stage ``overlap``: per scene, the matrix of how much of each image every other image sees.

INPUT is a MegaDepth root (``scene_info/<scene>.npz``, glue-factory's layout) or a
Matterport3D root (``<scan>/undistorted_camera_parameters/<scan>.conf``, as the undistorted
archives unpack); see :mod:`vcat.geometry.scenes`. For each scene (sorted by name) the stage
writes ``OUTPUT/<scene>.npz`` (:func:`vcat.geometry.overlap.overlap_bytes`):

- ``names``: the images, which is the order of the matrix's rows and columns: the scene
  file's order for MegaDepth (image paths), the camera file's scan lines for Matterport3D
  (colour file names). Consumers select rows by these names, never by a listing of their own;
- ``overlap`` (n, n) float64: entry (i, j) is the fraction of image i's pixels with valid
  depth that image j sees (:mod:`vcat.geometry.overlap`: unprojected with depth on a
  ``width`` x ``height`` grid, carried into j, inside its image, in front of it and at most
  ``tolerance`` behind the surface it sees); ones on the diagonal;
- ``valid``: image i's grid pixels with valid depth (the denominator of row i).

``failures.tsv`` lists the scenes that could not be read (``scene``, ``failure``, ``reason``,
naming the file and line); the stage exits 1 once more than ``max_failed_fraction`` of the
scenes failed. Each scene's file is written whole under a temporary name, so a stopped run
resumes with the scenes it has not finished; a run with other settings starts afresh.
``--shard I/N`` computes a block of the scenes into a part beside OUTPUT and ``--merge N``
copies the parts' files into OUTPUT: the same bytes as a single run.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer
from omegaconf import DictConfig
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.executors.run import run_sharded
from vcat.geometry.overlap import (
    FORMAT,
    DepthRange,
    GeometryError,
    Tolerance,
    overlap_bytes,
    read_overlap,
    views_overlap,
    write_atomic,
)
from vcat.geometry.scenes import (
    SceneSource,
    ViewWithDepth,
    discovery_files,
    find_scenes,
    scene_files,
)
from vcat.parts import (
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    finished_parts,
    part_folder,
    remove_parts,
)
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    write_json,
)
from vcat.stage_cli import StageFailed, folder_argument, output_argument, run_stage, shard_or_merge

NAME = "overlap"
default_conf: dict[str, Any] = {
    "width": 40,  # the grid the overlap is computed on (LoCUS: 40 x 32)
    "height": 32,
    "tolerance": 0.01,  # how far (depth units: metres) behind the surface a point still counts
    "relative_tolerance": 0.0,  # plus this fraction of the surface's depth (MegaDepth's SfM
    # depths have no unit: a relative tolerance suits them)
    "neighbourhood": True,  # False: LoCUS's test against the nearest grid pixel only
    "min_depth": 0.01,  # depth outside [min_depth, max_depth] is no depth (max 0: no bound);
    # Matterport3D stores sensor noise as readings under 1 cm
    "max_depth": 0.0,
    "allow_pickle": False,  # original MegaDepth scene files store paths as pickled objects
    "max_failed_fraction": 0.0,  # of the scenes; more failed makes the stage fail
}
# params.yaml keys that only dvc.yaml reads: which catalog entries to process
pipeline_keys = ("entries",)


FAILURES_NAME = "failures.tsv"
FAILURES_HEADER = "scene\tfailure\treason\n"
RUN_NAME = ".run.json"
PART_INDEX = "index.json"  # a part's record, written last (vcat.parts looks for it)
BINS = (0.1, 0.7)  # VOP's and glue-factory's pair bins: min < overlap <= max


class TooManyFailed(StageFailed):
    """More scenes failed than the stage allows."""


@dataclass(frozen=True)
class Failure:
    scene: str
    failure: str
    reason: str

    def line(self) -> str:
        return f"{self.scene}\t{self.failure}\t{' '.join(self.reason.split())}\n"


def _signature(settings: Mapping[str, Any], kind: str) -> dict[str, Any]:
    keys = ("width", "height", "tolerance", "relative_tolerance", "neighbourhood")
    keys += ("min_depth", "max_depth")
    return {"format": FORMAT, "source": kind, **{key: settings[key] for key in keys}}


def _prepare_folder(folder: Path, signature: dict[str, Any], overwrite: bool) -> None:
    """Empty ``folder`` unless it holds scenes made with the same settings."""
    run_file = folder / RUN_NAME
    try:
        same = json.loads(run_file.read_text(encoding="utf-8")) == signature
    except (FileNotFoundError, ValueError):
        same = False
    if overwrite or not same:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, (json.dumps(signature, sort_keys=True) + "\n").encode())


def _scene_file(folder: Path, scene: str) -> Path:
    return folder / f"{scene}.npz"


def _compute(
    scene: SceneSource, settings: Mapping[str, Any], step: Callable[[], None] = lambda: None
) -> bytes:
    """The scene's overlap file; ``step()`` after each view read and each view compared."""
    size = (int(settings.width), int(settings.height))
    depth_range = DepthRange(float(settings.min_depth), float(settings.max_depth))
    tolerance = Tolerance(
        float(settings.tolerance), float(settings.relative_tolerance), bool(settings.neighbourhood)
    )

    def counted() -> Iterator[ViewWithDepth]:
        for view in scene.views():
            yield view
            step()

    names, matrix, valid = views_overlap(counted(), size, depth_range, tolerance, lambda _: step())
    return overlap_bytes(names, matrix, valid)


def _run_scenes(
    scenes: Sequence[SceneSource], folder: Path, settings: Mapping[str, Any]
) -> list[Failure]:
    """Each scene not yet in ``folder`` computed into it; the scenes that failed."""
    failures = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with stderr_bars(*columns, TimeRemainingColumn()) as progress:
        task = progress.add_task("scenes", total=len(scenes))
        # per scene: each view read, then each view compared with all (the total is known
        # once the views are read)
        views = progress.add_task("views", total=None)
        for scene in scenes:
            target = _scene_file(folder, scene.name)
            if not target.is_file():
                progress.reset(views, total=None, description=f"{scene.name}: views")
                try:
                    data = _compute(scene, settings, lambda: progress.advance(views))
                    write_atomic(target, data)
                except GeometryError as exc:
                    failures.append(Failure(scene.name, "unreadable_scene", str(exc)))
            progress.advance(task)
    return failures


def _remove_others(folder: Path, scenes: Sequence[SceneSource]) -> None:
    """Drop scene files of scenes no longer in the input (a folder reused in place)."""
    wanted = {f"{scene.name}.npz" for scene in scenes}
    for path in folder.glob("*.npz"):
        if path.name not in wanted:
            path.unlink()


def _write_failures(folder: Path, failures: Sequence[Failure]) -> None:
    text = FAILURES_HEADER + "".join(failure.line() for failure in failures)
    write_atomic(folder / FAILURES_NAME, text.encode("utf-8"))


def _check_failures(
    failures: Sequence[Failure], scenes: int, settings: Mapping[str, Any], folder: Path
) -> None:
    allowed = int(float(settings.max_failed_fraction) * scenes)
    if len(failures) > allowed:
        first = failures[0]
        raise TooManyFailed(
            f"{len(failures)} of {scenes} scene(s) failed, more than the {allowed} that "
            f"{NAME}.max_failed_fraction={settings.max_failed_fraction} allows; see "
            f"{folder / FAILURES_NAME}. First: {first.reason}"
        )


def scene_metrics(folder: Path, scenes: Sequence[str], failed: int) -> dict[str, Any]:
    """Counts over the scene files of ``folder``: images, off-diagonal pairs, their mean
    overlap, pairs in glue-factory's and VOP's bins ``0.1 < overlap <= 0.7`` and pairs with
    no overlap (VOP's negatives), images without any valid depth."""
    images = pairs = in_bins = zero = no_depth = 0
    total = 0.0
    for scene in scenes:
        path = _scene_file(folder, scene)
        if not path.is_file():
            continue
        names, matrix = read_overlap(path)
        with np.load(path) as data:
            no_depth += int(np.count_nonzero(data["valid"] == 0))
        off = matrix[~np.eye(len(names), dtype=bool)]
        images += len(names)
        pairs += off.size
        total += float(off.sum())
        in_bins += int(np.count_nonzero((off > BINS[0]) & (off <= BINS[1])))
        zero += int(np.count_nonzero(off == 0))
    return {
        "scenes": len(scenes) - failed,
        "scenes_failed": failed,
        "images": images,
        "images_without_depth": no_depth,
        "pairs": pairs,
        "mean_overlap": round(total / pairs, 6) if pairs else 0.0,
        "pairs_in_bins": in_bins,
        "pairs_zero_overlap": zero,
    }


def _merge(
    output: Path, count: int, signature: dict[str, Any], overwrite: bool
) -> tuple[list[str], list[Failure]]:
    """The finished parts' scene files copied (as bytes) into ``output``; the scene names
    and failures of all parts, in order."""
    parts = finished_parts(output, count)
    records = []
    for part in parts:
        try:
            made_with = json.loads((part / RUN_NAME).read_text(encoding="utf-8"))
            record = json.loads((part / PART_INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise PartsError(f"{part}: not a finished part ({exc}); run its shard again") from None
        if made_with != signature:
            raise PartsError(
                f"{part}: made with other settings than these; run its shard again with them"
            )
        records.append((part, record))
    _prepare_folder(output, signature, overwrite)
    names: list[str] = []
    failures: list[Failure] = []
    for part, record in records:
        for scene in record["scenes"]:
            names.append(scene)
            source = _scene_file(part, scene)
            if source.is_file():
                write_atomic(_scene_file(output, scene), source.read_bytes())
        failures += [Failure(*fields) for fields in record["failures"]]
    return names, failures


def block_scene_files(
    conf: Mapping[str, Any] | None, input_root: Path, count: int
) -> list[list[Path]]:
    """The files each of ``count`` shards reads (for executor data: remote): those that list
    every scene, and those of its block's scenes."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    allow_pickle = bool(settings.allow_pickle)
    try:
        scenes = find_scenes(input_root, allow_pickle=allow_pickle)
    except GeometryError as exc:
        raise StageError(str(exc)) from None
    files = [scene_files(scene, input_root, allow_pickle=allow_pickle) for scene in scenes]
    found = discovery_files(scenes)
    blocks = [ShardSpec(index, count).block(len(scenes)) for index in range(count)]
    return [found + [path for k in block for path in files[k]] for block in blocks]


def main(
    conf: Mapping[str, Any] | None,
    input_root: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    shard: ShardSpec | None = None,
    merge: int | None = None,
) -> Path:
    """The overlap matrix of every scene under ``input_root`` into the folder ``output``
    (module docstring); with ``shard`` only its block of scenes, into its part; with
    ``merge`` the parts combined. Returns the folder written."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    if int(settings.width) < 1 or int(settings.height) < 1:
        raise StageError(f"stage {NAME}: width and height must be at least 1")
    try:
        scenes = find_scenes(input_root, allow_pickle=bool(settings.allow_pickle))
    except GeometryError as exc:
        raise StageError(str(exc)) from None
    kind = scenes[0].kind if scenes else "none"
    signature = _signature(settings, kind)
    if merge is not None:
        names, failures = _merge(output, merge, signature, overwrite)
        if names != [scene.name for scene in scenes]:
            raise PartsError(f"{output}: the parts do not cover the scenes of {input_root}")
        _remove_others(output, scenes)
        folder = output
    else:
        folder = output if shard is None else part_folder(output, shard)
        if shard is None:
            remove_parts(output)
        (folder / PART_INDEX).unlink(missing_ok=True)
        _prepare_folder(folder, signature, overwrite)
        block = scenes if shard is None else [scenes[k] for k in shard.block(len(scenes))]
        _remove_others(folder, block)
        failures = _run_scenes(block, folder, settings)
        names = [scene.name for scene in block]
    _write_failures(folder, failures)
    if shard is not None:
        record = {
            "format": "vcat.overlap.part/1",
            "scenes": names,
            "failures": [[f.scene, f.failure, f.reason] for f in failures],
        }
        write_atomic(folder / PART_INDEX, (json.dumps(record, indent=1) + "\n").encode())
        stderr.print(
            f"{folder}: part {shard} done, {len(names) - len(failures)} of {len(names)} "
            "scene(s); merge with --merge once every part is done",
            highlight=False,
        )
        return folder
    counts = scene_metrics(folder, names, len(failures))
    if metrics is not None:
        write_json(metrics, counts)
    if merge is not None:
        remove_parts(output)
    _check_failures(failures, len(names), settings, folder)
    stderr.print(
        f"{folder}: {counts['scenes']} scene(s), {counts['images']} image(s), "
        f"{counts['pairs_in_bins']} pair(s) in ({BINS[0]}, {BINS[1]}], "
        f"{counts['pairs_zero_overlap']} with none; {len(failures)} failed",
        highlight=False,
    )
    return folder


def command(
    context: typer.Context,
    input_root: folder_argument(
        "Dataset root: MegaDepth (scene_info/) or Matterport3D (<scan>/ folders)."
    ),
    output: output_argument("Folder of <scene>.npz overlap files.", folder=True),
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
) -> None:
    """Per scene, the fraction of each image's pixels that every other image sees."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(conf, input_root, output, overwrite, metrics, spec, merge)

        def blocks(count: int) -> list[list[Path]]:
            return block_scene_files(conf, input_root, count)

        run_sharded(context, output, params, spec, merge, run, block_inputs=blocks)

    run_stage(NAME, default_conf, params, work, pipeline_keys, input_errors=(GeometryError,))
