"""Stage ``locus-precompute``: Matterport3D scans to the inputs LoCUS trains on, in shards.

INPUT is a Matterport3D root (``<scan>/undistorted_camera_parameters/<scan>.conf``,
``undistorted_color_images/``, ``undistorted_depth_images/``). For every scan (sorted by name)
and every image of its camera file (in the file's order), as LoCUS's precompute script does:

- RGB: the colour image decoded with OpenCV, converted to RGB and resized to ``width`` x
  ``height`` (320 x 256) with ``cv2.INTER_LINEAR``: uint8 (H, W, 3);
- depth: the 16-bit PNG divided by 4000 (metres, float32), resized by nearest-exact sampling;
  a value below ``min_depth`` (0.01 m), above ``max_depth`` (20 m) or not finite is invalid.
  An image with at least ``max_invalid_fraction`` (20%) of its pixels invalid is dropped and
  listed in ``dropped.tsv`` with the fraction; in the others every invalid pixel takes the
  depth of the nearest valid pixel (Euclidean distance transform, ``scipy.ndimage``; LoCUS
  first ray-casts the scan's mesh and then inpaints, which needs the region meshes: this
  stage reads only the images and camera files);
- the overlap matrix of the kept images (:mod:`vcat.geometry.overlap`, from the filled depth
  at ``overlap_width`` x ``overlap_height``), rows and columns in the camera file's order.

OUTPUT is a shard folder (:mod:`vcat.shards`) whose samples unpack (``vcat shards unpack``) to
the data root LoCUS's ``MatterportDataset`` and ``SingleSceneBatchSampler`` read::

    <scan>/undistorted_camera_parameters/<scan>.conf   the camera file, unchanged
    <scan>/img_overlaps.npy                            float32 (k, k), kept images only
    <scan>/img_overlaps.order.txt                      their colour file names, one a line
    <scan>/rgb/<colour stem>.npy                       uint8 (256, 320, 3)
    <scan>/depth/<depth stem>.npy                      float32 (256, 320), metres

LoCUS's loader walks the camera file and skips images without an ``rgb`` file, so its dataset
order is the camera file's order of the kept images, which is the order of
``img_overlaps.npy`` (written beside it in ``img_overlaps.order.txt``). Beside the shards:
``dropped.tsv`` (scan, colour, depth, invalid fraction, reason), ``failures.tsv`` (scans or
images that could not be read: scan, image, failure, reason) and ``summary.json`` (counts).
The stage exits 1 when more than ``max_failed_fraction`` of the scans or of the images could
not be read. Resumable (sealed shards are kept, their images not decoded again), and
``--shard I/N`` / ``--merge N`` give the same bytes as a single run.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import typer
from numpy.typing import NDArray
from omegaconf import DictConfig
from PIL import Image, UnidentifiedImageError
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
from scipy import ndimage

from vcat.console import stderr, stderr_bars
from vcat.executors.run import run_sharded
from vcat.geometry import matterport
from vcat.geometry.overlap import (
    DepthRange,
    GeometryError,
    Tolerance,
    View,
    grid_views,
    nearest_exact,
    overlap_counts,
    overlap_fractions,
    scale_intrinsics,
    write_atomic,
)
from vcat.parts import (
    MergeOption,
    PartsError,
    ShardOption,
    ShardSpec,
    finished_parts,
    merge_samples,
    part_folder,
    remove_parts,
)
from vcat.regular import open_regular
from vcat.shards import INDEX_NAME, ShardWriter
from vcat.stage import (
    MetricsOption,
    OverwriteOption,
    ParamsOption,
    StageError,
    merge_conf,
    write_json,
)
from vcat.stage_cli import StageFailed, folder_argument, output_argument, run_stage, shard_or_merge

NAME = "locus-precompute"
default_conf: dict[str, Any] = {
    "width": 320,  # LoCUS's precomputed size
    "height": 256,
    "min_depth": 0.01,  # metres; depth outside [min_depth, max_depth] is invalid
    "max_depth": 20.0,
    "max_invalid_fraction": 0.2,  # an image with at least this much invalid depth is dropped
    "overlap_width": 40,  # the grid of the overlap matrix (LoCUS: 40 x 32)
    "overlap_height": 32,
    "tolerance": 0.01,  # metres a point may lie behind the surface and still count as seen
    "neighbourhood": True,  # False: LoCUS's depth test against the nearest grid pixel only
    "max_failed_fraction": 0.0,  # of scans, and of images, that cannot be read
    "shard_max_count": 10_000,
    "shard_max_bytes": 1 << 30,
}
# params.yaml keys that only dvc.yaml reads: which catalog entries to process
pipeline_keys = ("entries",)


RUN_NAME = ".run.json"
DROPPED_NAME = "dropped.tsv"
DROPPED_HEADER = "scan\tcolor\tdepth\tinvalid_fraction\treason\n"
FAILURES_NAME = "failures.tsv"
FAILURES_HEADER = "scan\timage\tfailure\treason\n"
SUMMARY_NAME = "summary.json"
_COUNTS = ("scans", "scans_failed", "images", "images_kept", "images_dropped")
_COUNTS += ("images_unreadable", "pixels_filled")


class TooManyFailed(StageFailed):
    """More scans or images could not be read than the stage allows."""


@dataclass
class _Kept:
    """An image that stays: its names, view at the output size and filled-pixel count."""

    color_name: str
    depth_name: str
    view: View
    filled: int


@dataclass
class _Scan:
    """What the first pass over a scan's depth images decided."""

    name: str
    conf_bytes: bytes
    kept: list[_Kept] = field(default_factory=list)
    images: int = 0
    dropped: list[str] = field(default_factory=list)  # dropped.tsv lines
    failures: list[str] = field(default_factory=list)  # failures.tsv lines (images)
    overlaps: NDArray[np.float32] | None = None


def _clean(text: str) -> str:
    return " ".join(text.split())


def load_depth(path: Path, size: tuple[int, int]) -> NDArray[np.float32]:
    """A Matterport depth PNG in metres at ``size`` (width, height), nearest-exact."""
    return nearest_exact(matterport.read_depth_png(path), size)


def fill_invalid(depth: NDArray[np.float32], invalid: NDArray[np.bool_]) -> NDArray[np.float32]:
    """``depth`` with every invalid pixel set to the depth of the nearest valid pixel (the
    Euclidean distance transform's choice on ties); at least one pixel must be valid."""
    if not invalid.any():
        return depth
    indices = ndimage.distance_transform_edt(invalid, return_distances=False, return_indices=True)
    return np.ascontiguousarray(depth[tuple(indices)], dtype=np.float32)


def _image_size(path: Path) -> tuple[int, int]:
    try:
        with open_regular(path) as stream, Image.open(stream) as image:
            return image.size
    except FileNotFoundError:
        raise GeometryError(f"{path}: colour image missing") from None
    except (OSError, UnidentifiedImageError) as exc:
        raise GeometryError(f"{path}: not a readable image ({exc})") from None


def _first_pass(
    scan_dir: Path, settings: Mapping[str, Any], step: Callable[[], None] = lambda: None
) -> _Scan:
    """Read the scan's camera file and depth images: which images stay, and the overlaps;
    ``step()`` after each image."""
    size = (int(settings.width), int(settings.height))
    conf_path = matterport.camera_file(scan_dir)
    images = matterport.read_camera_file(conf_path)
    scan = _Scan(scan_dir.name, conf_path.read_bytes(), images=len(images))
    depth_range = DepthRange(float(settings.min_depth), float(settings.max_depth))
    limit = float(settings.max_invalid_fraction)
    grid = (int(settings.overlap_width), int(settings.overlap_height))
    grid_depths: list[NDArray[np.float64]] = []
    grid_K: list[NDArray[np.float64]] = []
    for image in images:
        step()
        depth_path = scan_dir / matterport.DEPTH_FOLDER / image.depth_name
        try:
            _image_size(scan_dir / matterport.COLOR_FOLDER / image.color_name)
            full = matterport.read_depth_png(depth_path)
        except GeometryError as exc:
            scan.failures.append(
                f"{scan.name}\t{image.color_name}\tunreadable\t{_clean(str(exc))}\n"
            )
            continue
        depth = nearest_exact(full, size)
        invalid = ~depth_range.valid(depth)
        fraction = float(np.count_nonzero(invalid)) / invalid.size
        if fraction >= limit or invalid.all():
            reason = (
                f"depth invalid (< {settings.min_depth} m, > {settings.max_depth} m or not "
                f"finite) in {fraction:.1%} of the pixels, at least {limit:.0%}"
            )
            scan.dropped.append(
                f"{scan.name}\t{image.color_name}\t{image.depth_name}\t{fraction:.6f}\t{reason}\n"
            )
            continue
        view = image.view(full.shape[1], full.shape[0])
        K = scale_intrinsics(view.K, (view.width, view.height), size)
        small = View(view.name, K, view.world_to_camera, size[0], size[1])
        scan.kept.append(
            _Kept(image.color_name, image.depth_name, small, int(np.count_nonzero(invalid)))
        )
        grid_depth, grid_K_one = grid_views([small], [fill_invalid(depth, invalid)], grid)
        grid_depths.append(grid_depth[0])
        grid_K.append(grid_K_one[0])
    tolerance = Tolerance(float(settings.tolerance), 0.0, bool(settings.neighbourhood))
    poses = [kept.view.world_to_camera for kept in scan.kept]
    seen, valid = overlap_counts(
        np.stack(grid_depths) if poses else np.zeros((0, grid[1], grid[0])),
        np.stack(grid_K) if poses else np.zeros((0, 3, 3)),
        np.stack(poses) if poses else np.zeros((0, 4, 4)),
        depth_range,
        tolerance,
    )
    scan.overlaps = overlap_fractions(seen, valid).astype(np.float32)
    return scan


def _npy(array: NDArray[Any]) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def _rgb_sample(path: Path, size: tuple[int, int]) -> dict[str, bytes]:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise GeometryError(f"{path}: OpenCV cannot decode the colour image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return {"npy": _npy(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR))}


def _depth_sample(path: Path, settings: Mapping[str, Any]) -> dict[str, bytes]:
    size = (int(settings.width), int(settings.height))
    depth = load_depth(path, size)
    invalid = ~DepthRange(float(settings.min_depth), float(settings.max_depth)).valid(depth)
    return {"npy": _npy(fill_invalid(depth, invalid))}


def _add_scan(
    writer: ShardWriter, scan_dir: Path, scan: _Scan, settings: Mapping[str, Any]
) -> None:
    """The scan's samples: camera file, overlaps, then RGB and depth per kept image (decoded
    only when the writer still needs them)."""
    size = (int(settings.width), int(settings.height))
    name = scan.name
    writer.add(f"{name}/{matterport.CAMERA_FOLDER}/{name}", {"conf": scan.conf_bytes})
    order = "".join(f"{kept.color_name}\n" for kept in scan.kept).encode("utf-8")
    assert scan.overlaps is not None
    writer.add(f"{name}/img_overlaps", {"npy": _npy(scan.overlaps), "order.txt": order})
    for kept in scan.kept:
        color = scan_dir / matterport.COLOR_FOLDER / kept.color_name
        depth = scan_dir / matterport.DEPTH_FOLDER / kept.depth_name
        writer.add(
            f"{name}/rgb/{Path(kept.color_name).stem}",
            lambda color=color: _rgb_sample(color, size),
        )
        writer.add(
            f"{name}/depth/{Path(kept.depth_name).stem}",
            lambda depth=depth: _depth_sample(depth, settings),
        )


def _signature(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {"format": "vcat.locus-precompute/1", **dict(settings)}


def _prepare_folder(folder: Path, signature: dict[str, Any], overwrite: bool) -> None:
    run_file = folder / RUN_NAME
    try:
        same = json.loads(run_file.read_text(encoding="utf-8")) == signature
    except (FileNotFoundError, ValueError):
        same = False
    if overwrite or not same:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, (json.dumps(signature, sort_keys=True) + "\n").encode())


def _write_tables(folder: Path, dropped: list[str], failures: list[str], counts: dict) -> None:
    write_atomic(folder / DROPPED_NAME, (DROPPED_HEADER + "".join(dropped)).encode("utf-8"))
    write_atomic(folder / FAILURES_NAME, (FAILURES_HEADER + "".join(failures)).encode("utf-8"))
    write_atomic(
        folder / SUMMARY_NAME, (json.dumps(counts, indent=2, sort_keys=True) + "\n").encode()
    )


def _table_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines(keepends=True)[1:]


def _process(
    scans: Sequence[Path], folder: Path, settings: Mapping[str, Any]
) -> tuple[list[str], list[str], dict[str, int]]:
    counts = dict.fromkeys(_COUNTS, 0)
    dropped: list[str] = []
    failures: list[str] = []
    with ShardWriter(
        folder,
        max_count=int(settings.shard_max_count),
        max_bytes=int(settings.shard_max_bytes),
    ) as writer:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        with stderr_bars(*columns, TimeRemainingColumn()) as progress:
            task = progress.add_task("scans", total=len(scans))
            depths = progress.add_task("depth read", total=None)
            for scan_dir in scans:
                progress.reset(depths, total=None, description=f"{scan_dir.name}: depth read")
                counts["scans"] += 1
                try:
                    scan = _first_pass(scan_dir, settings, lambda: progress.advance(depths))
                except GeometryError as exc:
                    counts["scans_failed"] += 1
                    failures.append(f"{scan_dir.name}\t\tunreadable_scan\t{_clean(str(exc))}\n")
                    progress.advance(task)
                    continue
                _add_scan(writer, scan_dir, scan, settings)
                counts["images"] += scan.images
                counts["images_kept"] += len(scan.kept)
                counts["images_dropped"] += len(scan.dropped)
                counts["images_unreadable"] += len(scan.failures)
                counts["pixels_filled"] += sum(kept.filled for kept in scan.kept)
                dropped += scan.dropped
                failures += scan.failures
                progress.advance(task)
        _write_tables(folder, dropped, failures, counts)
    return dropped, failures, counts


def _check(counts: Mapping[str, int], settings: Mapping[str, Any], folder: Path) -> None:
    fraction = float(settings.max_failed_fraction)
    scans_allowed = int(fraction * counts["scans"])
    images_allowed = int(fraction * counts["images"])
    if counts["scans_failed"] > scans_allowed or counts["images_unreadable"] > images_allowed:
        raise TooManyFailed(
            f"{counts['scans_failed']} scan(s) and {counts['images_unreadable']} image(s) could "
            f"not be read, more than {NAME}.max_failed_fraction={settings.max_failed_fraction} "
            f"allows; see {folder / FAILURES_NAME}"
        )


def block_scan_files(input_root: Path, count: int) -> list[list[Path]]:
    """The files each of ``count`` shards reads (for executor data: remote): every scan's
    camera file (how the scans are found), and everything under its block's scan folders."""
    scans = matterport.find_scans(input_root)
    found = [matterport.camera_file(scan) for scan in scans]
    blocks = [ShardSpec(index, count).block(len(scans)) for index in range(count)]
    return [
        found + [path for k in block for path in sorted(scans[k].rglob("*")) if not path.is_dir()]
        for block in blocks
    ]


def main(
    conf: Mapping[str, Any] | None,
    input_root: Path,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    shard: ShardSpec | None = None,
    merge: int | None = None,
) -> Path:
    """LoCUS's precomputed inputs for every scan under ``input_root``, as shards in the
    folder ``output`` (module docstring); with ``shard`` only its block of scans, into its
    part; with ``merge`` the parts combined. Returns the folder written."""
    settings = merge_conf(default_conf, conf, origin=f"conf of stage {NAME}")
    for key in ("width", "height", "overlap_width", "overlap_height"):
        if int(settings[key]) < 1:
            raise StageError(f"stage {NAME}: {key} must be at least 1")
    scans = matterport.find_scans(input_root)
    if not scans and not input_root.is_dir():
        raise StageError(f"{input_root}: not a folder")
    signature = _signature(settings)
    if merge is not None:
        parts = finished_parts(output, merge)
        for part in parts:
            try:
                made_with = json.loads((part / RUN_NAME).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                made_with = None
            if made_with != signature:
                raise PartsError(f"{part}: made with other settings; run its shard again")
        _prepare_folder(output, signature, overwrite)
        merge_samples(
            parts,
            output,
            max_count=int(settings.shard_max_count),
            max_bytes=int(settings.shard_max_bytes),
        )
        counts = dict.fromkeys(_COUNTS, 0)
        dropped: list[str] = []
        failures: list[str] = []
        for part in parts:
            summary = json.loads((part / SUMMARY_NAME).read_text(encoding="utf-8"))
            counts = {key: counts[key] + int(summary[key]) for key in _COUNTS}
            dropped += _table_lines(part / DROPPED_NAME)
            failures += _table_lines(part / FAILURES_NAME)
        _write_tables(output, dropped, failures, counts)
        folder = output
    else:
        folder = output if shard is None else part_folder(output, shard)
        if shard is None:
            remove_parts(output)
        _prepare_folder(folder, signature, overwrite)
        if (folder / INDEX_NAME).is_file() and (folder / SUMMARY_NAME).is_file():
            counts = json.loads((folder / SUMMARY_NAME).read_text(encoding="utf-8"))
        else:
            (folder / SUMMARY_NAME).unlink(missing_ok=True)
            block = scans if shard is None else [scans[k] for k in shard.block(len(scans))]
            _, _, counts = _process(block, folder, settings)
    if shard is not None:
        stderr.print(f"{folder}: part {shard} done; merge with --merge", highlight=False)
        return folder
    if metrics is not None:
        write_json(metrics, counts)
    if merge is not None:
        remove_parts(output)
    _check(counts, settings, folder)
    stderr.print(
        f"{folder}: {counts['images_kept']} of {counts['images']} image(s) kept from "
        f"{counts['scans']} scan(s), {counts['images_dropped']} dropped for invalid depth, "
        f"{counts['images_unreadable']} unreadable",
        highlight=False,
    )
    return folder


def command(
    context: typer.Context,
    input_root: folder_argument(
        "Matterport3D root: <scan>/undistorted_camera_parameters, ..._images."
    ),
    output: output_argument("Folder of shards to write.", folder=True),
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
    shard: ShardOption = None,
    merge: MergeOption = None,
) -> None:
    """Matterport3D scans to LoCUS's 320x256 RGB, filled depth and overlaps, in shards."""
    spec, merge = shard_or_merge(shard, merge)

    def work(conf: DictConfig) -> None:
        def run(spec: ShardSpec | None, merge: int | None) -> None:
            main(conf, input_root, output, overwrite, metrics, spec, merge)

        def blocks(count: int) -> list[list[Path]]:
            return block_scan_files(input_root, count)

        run_sharded(context, output, params, spec, merge, run, block_inputs=blocks)

    run_stage(NAME, default_conf, params, work, pipeline_keys, input_errors=(GeometryError,))
