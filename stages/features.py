"""Stage ``features``: every image of a dataset through a catalog backbone, into VOP's
``overlap_feats.h5``.

INPUT is a MegaDepth root (``scene_info/<scene>.npz``; the images of its scene files, with
camera, pose and depth) or a folder of images (no geometry); ``--model`` names a model entry
of the catalog, built by timm with its verified weights (:mod:`vcat.models.factory`). Each
image is resized so its long side is the entry's input size and padded to a square
(:mod:`vcat.features.images`); OUTPUT is one HDF5 file with a group per image, keyed by its
relative path (:mod:`vcat.features.h5layout` lists the datasets).

Images are read in ``workers`` DataLoader processes and run in batches of ``batch_size`` on
``device`` (``auto``: CUDA when available; there bf16 autocast, channels-last, pinned
memory). Finished batches are kept in ``OUTPUT.partial/``, so a stopped run resumes with the
images it had not finished, and the finished file has the same bytes however the run was
cut. A file made with the same model, weights and settings over the same images is left
alone. Images that cannot be read are named in the file's ``vcat_failures`` attribute and
the metrics; the stage exits 1 once more than ``max_failed_fraction`` of them failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.features import h5layout
from vcat.features.images import INTERPOLATIONS, InputError, find_items
from vcat.features.parts import group_reader, partial_folder, remove_partial
from vcat.stage import MetricsOption, OverwriteOption, ParamsOption, StageError, write_json
from vcat.stage_cli import StageFailed, folder_argument, output_argument, run_stage, settings

NAME = "features"
default_conf: dict[str, Any] = {
    "batch_size": 32,
    "workers": 4,  # DataLoader processes reading and resizing images (0: in this process)
    "device": "auto",  # auto (CUDA when available), cpu or cuda
    "store_depth": True,  # MegaDepth: the resized, padded depth in each group (VOP's `depth`)
    "interpolation": "area",  # image resize: area (VOP's, OpenCV INTER_AREA), bilinear, ...
    "allow_pickle": False,  # original MegaDepth scene files store paths as pickled objects
    "max_failed_fraction": 0.0,  # of the images; more failed makes the stage fail
}
# params.yaml keys that only dvc.yaml reads: which catalog entries to process, with which model
pipeline_keys = ("entries", "model")


class TooManyFailed(StageFailed):
    """More images failed than the stage allows."""


def _check(conf: Any) -> None:
    from vcat.devices import resolve_device

    if int(conf.batch_size) < 1:
        raise StageError(f"stage {NAME}: batch_size must be at least 1")
    if int(conf.workers) < 0:
        raise StageError(f"stage {NAME}: workers must be 0 or more")
    if conf.interpolation not in INTERPOLATIONS:
        known = ", ".join(INTERPOLATIONS)
        raise StageError(f"stage {NAME}: interpolation {conf.interpolation!r}; use one of {known}")
    try:
        resolve_device(str(conf.device))
    except ValueError as exc:
        raise StageError(f"stage {NAME}: {exc}") from None


def _signature(entry_name: str, checksum: str, size: int, config: Any, conf: Any) -> str:
    return h5layout.signature_text(
        {
            "model": entry_name,
            "weights": checksum,
            "size": size,
            "mean": list(config.mean),
            "std": list(config.std),
            "interpolation": str(conf.interpolation),
            "store_depth": bool(conf.store_depth),
        }
    )


def _recorded(output: Path, signature: str, names: list[str]) -> dict[str, Any] | None:
    """The root attributes of ``output`` when it was made with ``signature`` over ``names``
    (the images stored and failed), else None."""
    attrs = h5layout.read_attrs(output)
    if attrs is None or attrs.get(h5layout.SIGNATURE_ATTR) != signature:
        return None
    failed = [name for name, _ in json.loads(attrs[h5layout.FAILURES_ATTR])]
    stored = sorted(set(names) - set(failed))
    if attrs.get(h5layout.NAMES_ATTR) != h5layout.names_digest(stored):
        return None
    return attrs


def _metrics(output: Path, attrs: Mapping[str, Any]) -> dict[str, Any]:
    import h5py

    count = int(attrs[h5layout.COUNT_ATTR])
    patches = dims = 0
    if count:
        with h5py.File(output, "r") as file:
            group: Any = file
            while "descriptors" not in group:  # down the first names to the first image
                group = group[sorted(group)[0]]
            patches, dims = group["descriptors"].shape
    failed = len(json.loads(attrs[h5layout.FAILURES_ATTR]))
    return {"images": count, "dims": int(dims), "patches": int(patches), "failures": failed}


def _check_failures(attrs: Mapping[str, Any], count: int, conf: Any) -> None:
    failures = json.loads(attrs[h5layout.FAILURES_ATTR])
    allowed = int(float(conf.max_failed_fraction) * count)
    if len(failures) > allowed:
        raise TooManyFailed(
            f"{len(failures)} of {count} image(s) could not be read, more than the {allowed} "
            f"that {NAME}.max_failed_fraction={conf.max_failed_fraction} allows. "
            f"First: {failures[0][1]}"
        )


def main(
    conf: Mapping[str, Any] | None,
    input_root: Path,
    model_name: str,
    output: Path,
    overwrite: bool = False,
    metrics: Path | None = None,
    project: Path | None = None,
) -> Path:
    """The features of every image under ``input_root`` by the model entry ``model_name``
    into the HDF5 file ``output`` (module docstring); ``project`` (default: the enclosing
    one) holds the catalog and the weights. Returns ``output``."""
    from vcat.devices import resolve_device
    from vcat.features.extract import Extractor
    from vcat.features.run import extract_all
    from vcat.models.factory import build_model, input_config, model_entry
    from vcat.models.weights import verified_weights
    from vcat.project import find_project_root

    conf = settings(NAME, default_conf, conf)
    _check(conf)
    project = project or find_project_root()
    entry = model_entry(model_name, project)
    config = input_config(entry)
    if config.width != config.height:
        raise StageError(
            f"{model_name}: input {config.width}x{config.height} is not square; VOP's layout "
            "pads images to a square of the input size"
        )
    items = find_items(input_root, allow_pickle=bool(conf.allow_pickle))
    names = [item.name for item in items]
    weights = verified_weights(entry, project)
    signature = _signature(entry.name, weights.checksum, config.width, config, conf)
    partial = partial_folder(output)
    if overwrite:
        remove_partial(output)
    else:
        attrs = _recorded(output, signature, names)
        if attrs is not None:
            stderr.print(f"{output}: up to date ({len(names)} image(s))", highlight=False)
            if metrics is not None:
                write_json(metrics, _metrics(output, attrs))
            _check_failures(attrs, len(names), conf)
            return output
    device = resolve_device(str(conf.device))
    extractor = Extractor(
        build_model(entry, project), config.width, config.mean, config.std, device
    )
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with stderr_bars(*columns, TimeRemainingColumn()) as progress:
        task = progress.add_task("images", total=len(items))
        done = extract_all(
            items,
            extractor,
            partial,
            signature,
            batch_size=int(conf.batch_size),
            workers=int(conf.workers),
            interpolation=str(conf.interpolation),
            store_depth=bool(conf.store_depth),
            step=lambda n: progress.advance(task, n),
        )
    wanted = set(names)
    where = {name: place for name, place in done.where.items() if name in wanted}
    failures = sorted((n, r) for n, r in done.failures.items() if n in wanted)
    output.parent.mkdir(parents=True, exist_ok=True)
    h5layout.assemble(output, signature, where, group_reader(where), failures)
    remove_partial(output)
    attrs = h5layout.read_attrs(output)
    assert attrs is not None
    counts = _metrics(output, attrs)
    if metrics is not None:
        write_json(metrics, counts)
    stderr.print(
        f"{output}: {counts['images']} image(s), {counts['patches']} patches x "
        f"{counts['dims']} dims; {len(failures)} failed",
        highlight=False,
    )
    _check_failures(attrs, len(items), conf)
    return output


def command(
    input_root: folder_argument("Dataset root: MegaDepth (scene_info/) or a folder of images."),
    output: output_argument("The features file (VOP's overlap_feats.h5).", folder=False),
    model: Annotated[
        str, typer.Option("--model", help="The catalog's model entry whose backbone describes.")
    ],
    overwrite: OverwriteOption = False,
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Patch tokens, global descriptors and patch centres of every image, in VOP's layout."""
    from vcat.features.extract import BackboneError
    from vcat.models.factory import ModelError
    from vcat.models.weights import WeightsError

    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, input_root, model, output, overwrite, metrics),
        pipeline_keys,
        input_errors=(InputError, BackboneError, ModelError, WeightsError),
    )
