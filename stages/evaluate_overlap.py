"""Stage ``evaluate-overlap``: VOP's place retrieval and the relative pose of retrieved pairs.

FEATURES is the ``features`` stage's file (VOP's ``overlap_feats.h5``), OVERLAPS the
``overlap`` stage's folder of ``<scene>.npz``, HEAD the ``train-overlap`` checkpoint and ROOT
the MegaDepth root (``scene_info/<scene>.npz`` and the images) the features were made from.
Every image of each scene of the catalog split ``split`` is a query against the other images
of its scene, ranked three ways:

- ``vop``: the trained head's patch embeddings, VOP's CLS shortlist of ``pre_filter`` images
  re-ranked by TF-IDF weighted patch votes (:mod:`vcat.evaluation.overlap_retrieval`);
- ``untrained``: the same with a head of the same shape at its seeded initial weights;
- ``cls``: the global descriptor alone.

An image is relevant to a query when ``overlap[query, image] >= min_overlap``; retrieval
gives recall@k and mAP (:mod:`vcat.evaluation.ranking`). Each query's first ``pose.top_k``
images are matched with SIFT (a matcher independent of the model, :mod:`vcat.evaluation.
matching`) and the essential matrix gives their relative pose, scored by AUC at
``pose.auc_degrees`` (:mod:`vcat.evaluation.pose`). The RANSAC threshold is chosen among
``pose.ransac_px`` on overlapping pairs of the ``validation_split`` scenes, never on the
split reported. OUTPUT receives each method's retrieved pairs, ``<method>.txt`` with a line
``query image`` per pair (the first max(ks) of each query), and the metrics go to
``--metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn

from vcat.console import stderr, stderr_bars
from vcat.devices import resolve_device
from vcat.processes import usable_cores
from vcat.stage import MetricsOption, ParamsOption, StageError, write_json, write_text_atomic
from vcat.stage_cli import folder_argument, output_argument, run_stage, settings

NAME = "evaluate-overlap"
default_conf: dict[str, Any] = {
    "entry": "demo-megadepth",  # the dataset entry whose splits name the scenes
    "split": "test",  # the scenes reported
    "validation_split": "val",  # the scenes the RANSAC threshold is chosen on
    "min_overlap": 0.25,  # an image is relevant to a query it overlaps by at least this
    "ks": [1, 5, 10],  # recall@k
    "pre_filter": 20,  # VOP's CLS shortlist (20 or 100)
    "radius": None,  # VOP's patch radius; None: the median over a seeded sample
    "seed": 0,
    "pose": {
        "top_k": 5,  # the retrieved images per query whose pose is estimated
        "max_keypoints": 2048,  # SIFT keypoints per image
        "ratio": 0.8,  # Lowe's ratio test
        "ransac_px": [0.5, 1.0, 2.0, 4.0],  # RANSAC thresholds tried on the validation split
        "validation_pairs": 200,  # overlapping validation pairs the threshold is chosen on
        "auc_degrees": [5, 10, 20],
    },
    "allow_pickle": False,  # original MegaDepth scene files store paths as pickled objects
    "device": "auto",  # where the heads embed the patches
    "jobs": 0,  # threads estimating poses; 0: one per core (the metrics do not depend on it)
}
# params.yaml keys that only dvc.yaml reads: the heads evaluated (model name -> {})
pipeline_keys = ("runs",)
METHODS = ("vop", "untrained", "cls")


class EvaluateOverlapError(StageError):
    """The splits, files or settings cannot be used as given."""


def main(
    conf: Mapping[str, Any] | None,
    features: Path,
    overlaps: Path,
    head_file: Path,
    root: Path,
    output: Path,
    metrics: Path | None = None,
) -> dict[str, Any]:
    """Evaluate the head on the split's scenes (module doc); returns the metrics written."""
    import numpy as np
    import torch

    from vcat.evaluation.pose import select_ransac_threshold
    from vcat.evaluation.scene_poses import overlapping_pairs
    from vcat.training.loop import seed_of
    from vcat.training.overlap_features import FeatureError, FeatureStore
    from vcat.training.overlap_head import OverlapHead, head_from_checkpoint

    conf = settings(NAME, default_conf, conf)
    _check(conf)
    test_scenes, validation_scenes = _scenes(conf)
    started = time.perf_counter()
    device = resolve_device(str(conf.device))
    try:
        trained = head_from_checkpoint(torch.load(head_file, map_location="cpu", weights_only=True))
    except (OSError, ValueError, RuntimeError) as exc:
        raise EvaluateOverlapError(f"{head_file}: {exc}") from None
    torch.manual_seed(seed_of(int(conf.seed), "untrained head"))
    untrained = OverlapHead(trained.config).eval()
    heads = {"vop": trained.to(device), "untrained": untrained.to(device)}
    try:
        store = FeatureStore(features)
    except FeatureError as exc:
        raise EvaluateOverlapError(str(exc)) from None
    pose = conf.pose
    rng = np.random.default_rng(seed_of(int(conf.seed), "validation pairs"))
    validation = []
    progress = stderr_bars(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()
    )
    with progress:
        for scene in validation_scenes:
            loaded = _load_scene(conf, store, overlaps, root, scene)
            chosen = overlapping_pairs(
                loaded.scene.overlap, float(conf.min_overlap), int(pose.validation_pairs), rng
            )
            task = progress.add_task(f"{scene} (validation): matching pairs", total=len(chosen))
            for i, j in chosen:
                validation.append(loaded.matcher.pose_pair(i, j))
                progress.advance(task)
        task = progress.add_task(
            "choosing the RANSAC threshold", total=len(validation) * len(pose.ransac_px)
        )
        try:
            threshold, candidates = select_ransac_threshold(
                validation,
                [float(px) for px in pose.ransac_px],
                split=str(conf.validation_split),
                reported_splits={str(conf.split)},
                thresholds=[float(d) for d in pose.auc_degrees],
                jobs=_jobs(conf),
                on_done=partial(progress.advance, task),
            )
        except ValueError as exc:
            raise EvaluateOverlapError(f"choosing the RANSAC threshold: {exc}") from None
        stderr.print(
            f"RANSAC threshold {threshold:g} px, chosen on {len(validation)} pairs of "
            f"{', '.join(validation_scenes)}"
        )
        per_scene = {}
        pairs_text: dict[str, list[str]] = {method: [] for method in METHODS}
        for scene in test_scenes:
            loaded = _load_scene(conf, store, overlaps, root, scene)
            result, lines = _evaluate_scene(conf, loaded, heads, threshold, progress)
            per_scene[scene] = result
            for method in METHODS:
                pairs_text[method] += lines[method]
    store.close()
    output.mkdir(parents=True, exist_ok=True)
    for method, lines in pairs_text.items():
        write_text_atomic(output / f"{method}.txt", "".join(f"{line}\n" for line in lines))
    values = {
        "split": str(conf.split),
        "scenes": test_scenes,
        "min_overlap": float(conf.min_overlap),
        "ransac": {
            "threshold_px": threshold,
            "validation_split": str(conf.validation_split),
            "validation_scenes": validation_scenes,
            "validation_pairs": len(validation),
            "mean_auc_by_threshold": {f"{px:g}": round(v, 6) for px, v in candidates.items()},
        },
        **_pooled(per_scene, [float(d) for d in pose.auc_degrees]),
    }
    if metrics is not None:
        write_json(metrics, values)
    vop, cls = values["retrieval"]["vop"], values["retrieval"]["cls"]
    stderr.print(
        f"{', '.join(test_scenes)}: mAP vop {vop['mAP']:.3f} / cls {cls['mAP']:.3f}, pose "
        f"auc@10 vop {values['pose']['vop']['auc@10']:.3f} / cls "
        f"{values['pose']['cls']['auc@10']:.3f} in {time.perf_counter() - started:.0f} s"
    )
    return values


@dataclass(frozen=True)
class _LoadedScene:
    """A scene (names, overlap matrix), its stacked features and its matcher (cameras)."""

    scene: Any
    features: Any
    matcher: Any


def _load_scene(conf: Any, store: Any, overlaps: Path, root: Path, name: str) -> _LoadedScene:
    from vcat.evaluation.matching import MatchingError
    from vcat.evaluation.scene_poses import SceneError, SceneMatcher, scene_cameras
    from vcat.geometry.overlap import GeometryError
    from vcat.training.overlap_data import read_scene
    from vcat.training.overlap_features import FeatureError

    path = overlaps / f"{name}.npz"
    if not path.is_file():
        raise EvaluateOverlapError(f"no overlap file {path}; run the overlap stage")
    info = root / "scene_info" / f"{name}.npz"
    if not info.is_file():
        raise EvaluateOverlapError(f"no scene file {info}; ROOT must be the MegaDepth root")
    try:
        scene = read_scene(path, store)
        cameras = scene_cameras(info, root, scene.names, allow_pickle=bool(conf.allow_pickle))
        matcher = SceneMatcher(root, cameras, int(conf.pose.max_keypoints), float(conf.pose.ratio))
        return _LoadedScene(scene, store.stack(scene.keys), matcher)
    except (FeatureError, GeometryError, SceneError, MatchingError, ValueError) as exc:
        raise EvaluateOverlapError(str(exc)) from None


def _evaluate_scene(
    conf: Any,
    loaded: _LoadedScene,
    heads: Mapping[str, Any],
    threshold: float,
    progress: Any,
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Per method, the scene's retrieval metrics, its pose errors and its retrieved pairs;
    the pose estimates count on a task of ``progress``."""
    from vcat.evaluation.matching import MatchingError
    from vcat.evaluation.pose import pose_errors
    from vcat.evaluation.ranking import ranking_metrics
    from vcat.evaluation.scene_poses import retrieved_pairs
    from vcat.training.overlap_eval import cls_rankings, relevant_sets, vop_rankings
    from vcat.training.overlap_head import embed_patches

    features, scene = loaded.features, loaded.scene
    ks = tuple(int(k) for k in conf.ks)
    relevant = relevant_sets(scene.overlap, float(conf.min_overlap))
    rankings = {"cls": cls_rankings(features.global_descriptor)}
    for method, head in heads.items():
        embedded = embed_patches(
            head, features.descriptors, features.keypoints, features.image_size
        )
        rankings[method] = vop_rankings(
            embedded,
            features.global_descriptor,
            pre_filter=int(conf.pre_filter),
            radius=None if conf.radius is None else float(conf.radius),
            seed=int(conf.seed),
        )
    top_k = int(conf.pose.top_k)
    # the methods retrieve many of the same pairs: each is estimated once
    unique = sorted(
        {pair for ranking in rankings.values() for pair in retrieved_pairs(ranking, top_k)}
    )
    try:
        pose_pairs = [loaded.matcher.pose_pair(i, j) for i, j in unique]
    except MatchingError as exc:
        raise EvaluateOverlapError(str(exc)) from None
    task = progress.add_task(f"{scene.name}: relative poses of retrieved pairs", total=len(unique))
    errors = pose_errors(pose_pairs, threshold, _jobs(conf), partial(progress.advance, task))
    error_of = dict(zip(unique, errors, strict=True))
    result: dict[str, Any] = {}
    lines = {}
    for method in METHODS:
        ranking = rankings[method]
        try:
            retrieval = ranking_metrics(ranking, relevant, ks)
        except ValueError as exc:
            raise EvaluateOverlapError(f"scene {scene.name}: {exc}") from None
        errors = [error_of[pair] for pair in retrieved_pairs(ranking, top_k)]
        result[method] = {"retrieval": retrieval, "pose_errors": errors}
        lines[method] = [
            f"{scene.names[i]} {scene.names[j]}" for i, j in retrieved_pairs(ranking, max(ks))
        ]
    return result, lines


def _pooled(per_scene: Mapping[str, Mapping[str, Any]], degrees: Sequence[float]) -> dict[str, Any]:
    """Retrieval metrics averaged over all queries of all scenes, pose AUC over all pairs."""
    import math

    from vcat.evaluation.pose import pose_auc

    retrieval: dict[str, Any] = {}
    pose: dict[str, Any] = {}
    for method in METHODS:
        parts = [scene[method]["retrieval"] for scene in per_scene.values()]
        counted = sum(part.n_queries for part in parts)
        means = {
            f"recall@{k}": sum(part.recall_at[k] * part.n_queries for part in parts) / counted
            for k in parts[0].recall_at
        }
        means["mAP"] = sum(part.mean_average_precision * part.n_queries for part in parts) / counted
        retrieval[method] = {
            **{key: round(value, 6) for key, value in means.items()},
            "queries": counted,
            "queries_without_relevant": sum(part.n_excluded for part in parts),
        }
        errors = [e for scene in per_scene.values() for e in scene[method]["pose_errors"]]
        aucs = pose_auc(errors, degrees)
        pose[method] = {
            **{f"auc@{t:g}": round(v, 6) for t, v in aucs.items()},
            "pairs": len(errors),
            "failures": sum(math.isinf(e) for e in errors),
        }
    return {"retrieval": retrieval, "pose": pose}


def _check(conf: Any) -> None:
    if not 0.0 < float(conf.min_overlap) <= 1.0:
        raise EvaluateOverlapError(f"min_overlap is a fraction in (0, 1], got {conf.min_overlap}")
    if not list(conf.ks) or any(int(k) < 1 for k in conf.ks):
        raise EvaluateOverlapError(f"ks must list positive ranks, got {list(conf.ks)}")
    if int(conf.pre_filter) < 1 or int(conf.pose.top_k) < 1:
        raise EvaluateOverlapError("pre_filter and pose.top_k must be at least 1")
    if not list(conf.pose.ransac_px) or any(float(px) <= 0 for px in conf.pose.ransac_px):
        raise EvaluateOverlapError("pose.ransac_px must list positive thresholds in pixels")


def _scenes(conf: Any) -> tuple[list[str], list[str]]:
    """The reported split's scenes and the validation split's; they must not share one."""
    from vcat.catalog.splits import SplitError, entry_splits

    try:
        splits = entry_splits(str(conf.entry))
        test, validation = splits.scenes(str(conf.split)), splits.scenes(str(conf.validation_split))
    except SplitError as exc:
        raise EvaluateOverlapError(str(exc)) from None
    shared = sorted(set(test) & set(validation))
    if shared:
        raise EvaluateOverlapError(
            f"scenes {', '.join(shared)} of {conf.entry} are in both split {conf.split!r} and "
            f"validation split {conf.validation_split!r}; the threshold must be chosen on "
            "other scenes than those reported"
        )
    return test, validation


def _jobs(conf: Any) -> int:
    """Threads for pose estimation: ``jobs``, or one per core the process may use."""

    return int(conf.jobs) or usable_cores()


OverlapsArgument = folder_argument("The overlap stage's folder of <scene>.npz.", metavar="OVERLAPS")
RootArgument = folder_argument("The MegaDepth root: scene_info/ and the images.", metavar="ROOT")


def command(
    features: Annotated[
        Path, typer.Argument(help="VOP features: an HDF5 file or a folder of them.", exists=True)
    ],
    overlaps: OverlapsArgument,
    head: Annotated[
        Path, typer.Argument(help="The train-overlap checkpoint.", exists=True, dir_okay=False)
    ],
    root: RootArgument,
    output: output_argument("The folder of retrieved pairs, one file per method.", folder=True),
    metrics: MetricsOption = None,
    params: ParamsOption = None,
) -> None:
    """Retrieval (recall@k, mAP) and relative pose (AUC) of VOP's overlap head on the test
    split, with the RANSAC threshold chosen on the validation split."""
    run_stage(
        NAME,
        default_conf,
        params,
        lambda conf: main(conf, features, overlaps, head, root, output, metrics),
        pipeline_keys,
        input_errors=(EvaluateOverlapError,),
    )
