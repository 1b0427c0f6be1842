"""Feature files: the features stage's HDF5 file in VOP's ``overlap_feats.h5`` layout
(:mod:`vcat.features.h5layout`): a group per image with ``keypoints`` (P, 2), ``descriptors``
(P, D), ``global_descriptor`` (D,) and ``image_size`` ``[w, h]``.

The ``images`` table has one row per image group (item: its key, the group's path): its
patch count and width, whether every descriptor and global-descriptor value is finite, the
smallest and largest L2 norm of its finite patch descriptors and the norm of its global
descriptor (NaN where not finite), how many keypoints lie outside the network input, and
whether its counts agree (as many descriptors as keypoints, a global descriptor as wide as
the patches, and the patch count and width most images of the file have; ``problem`` says
what does not). The input is the square the image was padded to, of side ``max(image_size)``
(the resized long side): VOP's patch centres cover the padding of a non-square image too.

The ``file`` table has one row (item: the file): its image count, the count the features
stage's metrics JSON records (the ``count`` check's ``metrics``), and the mean pairwise cosine
distance of a seeded sample of the global descriptors (reservoir sampling in name order, of
those finite, non-zero and of the common width; NaN, which ``not_collapsed`` does not judge,
with fewer than two). Groups are read one at a time, never the whole file.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from vcat.gates.checks import (
    Check,
    DeclarationError,
    Expect,
    Params,
    mostly_of,
    values_between,
    values_true,
)
from vcat.gates.profile import Profile, ProfileError, Table

KIND = "features"
DESCRIPTION = "image features in VOP's overlap_feats.h5 layout (the features stage's .h5)"
SUFFIXES = (".h5", ".hdf5")
DATASETS = ("keypoints", "descriptors", "global_descriptor", "image_size")
FAILURES_ATTR = "vcat_failures"  # vcat.features.h5layout.FAILURES_ATTR (h5layout imports h5py)
COLUMNS = (
    "item",
    "patches",
    "dims",
    "keypoints",
    "finite",
    "patch_norm_min",
    "patch_norm_max",
    "global_norm",
    "keypoints_outside",
    "counts_match",
    "problem",
)
DEFAULT_SAMPLE = 1000


def _norms_in_range(params: Params) -> list[Expect]:
    low, high, mostly = params.get("min"), params.get("max"), mostly_of(params)
    found = []
    if low is not None:
        kwargs = {"column": "patch_norm_min", "min_value": low, **mostly}
        found.append(Expect("ExpectColumnValuesToBeBetween", kwargs))
    if high is not None:
        kwargs = {"column": "patch_norm_max", "max_value": high, **mostly}
        found.append(Expect("ExpectColumnValuesToBeBetween", kwargs))
    bounds = {k: v for k, v in (("min_value", low), ("max_value", high)) if v is not None}
    if bounds:
        kwargs = {"column": "global_norm", **bounds, **mostly}
        found.append(Expect("ExpectColumnValuesToBeBetween", kwargs))
    return found


def _not_collapsed(params: Params) -> list[Expect]:
    if params.get("min") is None:
        return []
    kwargs = {"column": "mean_cosine_distance", "min_value": params["min"]}
    return [Expect("ExpectColumnValuesToBeBetween", kwargs)]


def _count(params: Params) -> list[Expect]:
    found = []
    if params.get("equal") is not None:
        kwargs = {"column": "images", "min_value": params["equal"], "max_value": params["equal"]}
        found.append(Expect("ExpectColumnValuesToBeBetween", kwargs))
    if params.get("metrics") is not None:
        kwargs = {"column_A": "images", "column_B": "recorded"}
        found.append(Expect("ExpectColumnPairValuesToBeEqual", kwargs))
    return found


CHECKS: list[Check] = [
    values_true(
        "finite_features", "images", "finite",
        "every descriptor and global descriptor value is finite (no NaN, no inf)",
    ),
    Check(
        "norms_in_range", "images",
        "every finite patch descriptor and global descriptor has an L2 norm in [{min}, {max}]",
        {"min": 1.0e-6, "max": 1.0e4, "max_bad_fraction": 0.0}, _norms_in_range,
        "global_norm",
    ),
    values_between(
        "keypoints_inside", "images", "keypoints_outside",
        "at most {max_outside} keypoint(s) of an image outside its padded input square",
        None, "max_outside", {"max_outside": 0},
    ),
    values_true(
        "counts_consistent", "images", "counts_match",
        "as many descriptors as keypoints, a global descriptor as wide, and the patch count "
        "and width of the file's other images",
    ),
    Check(
        "not_collapsed", "file",
        "the global descriptors differ: mean pairwise cosine distance of up to {sample} "
        "(seed {seed}) at least {min}",
        {"min": 1.0e-3, "sample": DEFAULT_SAMPLE, "seed": 0}, _not_collapsed,
        "mean_cosine_distance",
    ),
    Check(
        "count", "file",
        "images: exactly {equal}, and as many as the features stage's metrics ({metrics}) "
        "record",
        {"equal": None, "metrics": None}, _count, "images",
    ),
]  # fmt: skip


def detect(artifact: Path) -> bool:
    return artifact.is_file() and artifact.suffix in SUFFIXES


def profile(artifact: Path, workers: int | None, params: Mapping[str, Params]) -> Profile:
    """The ``images`` and ``file`` tables of the features file ``artifact`` (module doc);
    ``workers`` is unused (one pass in name order keeps the sample reproducible)."""
    import h5py
    import pandas as pd

    if not artifact.is_file():
        raise ProfileError(f"{artifact}: no such features file; run the features stage")
    collapse = params.get("not_collapsed", {})
    sample_size, seed = collapse.get("sample"), collapse.get("seed")
    sampler = Reservoir(
        DEFAULT_SAMPLE if sample_size is None else int(sample_size),
        0 if seed is None else int(seed),
    )
    try:
        handle = h5py.File(artifact, "r")
    except OSError as exc:
        raise ProfileError(
            f"{artifact}: not a readable HDF5 file ({exc}); run the features stage again"
        ) from None
    rows = []
    with handle:
        for key, group in image_groups(handle):
            try:
                row, vector = image_row(key, group)
            except OSError as exc:
                raise ProfileError(f"{artifact}: cannot read {key} ({exc})") from None
            rows.append(row)
            if vector is not None:
                sampler.add(vector)
        failures = _failures(handle.attrs.get(FAILURES_ATTR))
    if not rows:
        raise ProfileError(
            f"{artifact}: no image group (one with keypoints or descriptors); is it the "
            "features stage's output?"
        )
    common = mark_common_shape(rows)
    sample = [v for v in sampler.items if common is not None and v.shape == (common[1],)]
    distance = mean_cosine_distance(np.stack(sample)) if len(sample) >= 2 else math.nan
    recorded = _recorded_count(params.get("count", {}).get("metrics"))
    file_row = {
        "item": str(artifact),
        "images": len(rows),
        "recorded": recorded,
        "sampled": len(sample),
        "mean_cosine_distance": distance,
    }
    tables = {
        "images": Table(pd.DataFrame(rows, columns=list(COLUMNS)), "item"),
        "file": Table(pd.DataFrame([file_row]), "item"),
    }
    facts: dict[str, Any] = {
        "images": len(rows),
        "patches": None if common is None else common[0],
        "dims": None if common is None else common[1],
        "failures": failures,
        "sampled": len(sample),
        "mean_cosine_distance": None if math.isnan(distance) else distance,
    }
    return Profile(KIND, artifact, tables, facts)


def image_groups(root: Any) -> Iterator[tuple[str, Any]]:
    """``(key, group)`` of every image group under ``root`` (one holding ``keypoints`` or
    ``descriptors``), in name order, depth first; datasets are not visited."""
    import h5py

    for name in sorted(root):
        member = root.get(name)
        if not isinstance(member, h5py.Group):
            continue
        if "keypoints" in member or "descriptors" in member:
            yield member.name.lstrip("/"), member
        else:
            yield from image_groups(member)


def image_row(key: str, group: Any) -> tuple[dict[str, Any], np.ndarray | None]:
    """The ``images`` row of one group, and its global descriptor when it may join the
    collapse sample (finite, one-dimensional, non-zero)."""
    arrays: dict[str, np.ndarray] = {}
    problems = []
    for name in DATASETS:
        if name not in group:
            problems.append(f"lacks {name}")
            continue
        array = np.asarray(group[name])
        if array.dtype.kind not in "biuf":
            problems.append(f"{name} of type {array.dtype}, not numbers")
            continue
        arrays[name] = array
    keypoints = arrays.get("keypoints")
    descriptors = arrays.get("descriptors")
    global_descriptor = arrays.get("global_descriptor")
    size = arrays.get("image_size")
    if keypoints is not None and (keypoints.ndim != 2 or keypoints.shape[1] != 2):
        problems.append(f"keypoints of shape {keypoints.shape}, not (P, 2)")
    if descriptors is not None and descriptors.ndim != 2:
        problems.append(f"descriptors of shape {descriptors.shape}, not (P, D)")
    patches = dims = None
    if descriptors is not None and descriptors.ndim == 2:
        patches, dims = descriptors.shape
        if keypoints is not None and len(keypoints) != patches:
            problems.append(f"{patches} descriptors for {len(keypoints)} keypoints")
        if global_descriptor is not None and global_descriptor.shape != (dims,):
            problems.append(f"global descriptor of shape {global_descriptor.shape}, not ({dims},)")
    if size is not None and size.size != 2:
        problems.append(f"image_size of shape {size.shape}, not [w, h]")
    present = [a for a in (descriptors, global_descriptor) if a is not None]
    finite = all(bool(np.isfinite(a).all()) for a in present) if present else None
    patch_min, patch_max = _patch_norms(descriptors)
    global_norm, vector = _global_norm(global_descriptor)
    row = {
        "item": key,
        "patches": patches,
        "dims": dims,
        "keypoints": None if keypoints is None else len(keypoints),
        "finite": finite,
        "patch_norm_min": patch_min,
        "patch_norm_max": patch_max,
        "global_norm": global_norm,
        "keypoints_outside": _outside(keypoints, size),
        "counts_match": not problems,
        "problem": "; ".join(problems),
    }
    return row, vector


def _patch_norms(descriptors: np.ndarray | None) -> tuple[float, float]:
    """The smallest and largest norm of the finite rows (NaN, NaN when there is none): a NaN
    or inf fails ``finite_features``, not this."""
    if descriptors is None or descriptors.ndim != 2:
        return math.nan, math.nan
    values = descriptors.astype(np.float64, copy=False)
    values = values[np.isfinite(values).all(axis=1)]
    if not len(values):
        return math.nan, math.nan
    norms = np.linalg.norm(values, axis=1)
    return float(norms.min()), float(norms.max())


def _global_norm(vector: np.ndarray | None) -> tuple[float, np.ndarray | None]:
    if vector is None or vector.ndim != 1 or not np.isfinite(vector).all():
        return math.nan, None
    values = vector.astype(np.float64)
    norm = float(np.linalg.norm(values))
    return norm, (values if norm > 0 else None)


def _outside(keypoints: np.ndarray | None, size: np.ndarray | None) -> int | None:
    """Keypoints not within [0, S] x [0, S], S the long side of ``size`` (not finite: outside)."""
    if keypoints is None or keypoints.ndim != 2 or keypoints.shape[1] != 2:
        return None
    if size is None or size.size != 2:
        return None
    side = float(np.max(size.astype(np.float64)))
    points = keypoints.astype(np.float64)
    inside = np.isfinite(points).all(axis=1) & ((points >= 0) & (points <= side)).all(axis=1)
    return int(len(points) - np.count_nonzero(inside))


def mark_common_shape(rows: list[dict[str, Any]]) -> tuple[int, int] | None:
    """The (patches, dims) most images with consistent counts have (ties: the first in name
    order), and every other image's row marked as not matching; None when none has one."""
    shapes = Counter((r["patches"], r["dims"]) for r in rows if r["counts_match"])
    if not shapes:
        return None
    common = shapes.most_common(1)[0][0]
    for row in rows:
        if row["counts_match"] and (row["patches"], row["dims"]) != common:
            row["counts_match"] = False
            row["problem"] = (
                f"{row['patches']} patches x {row['dims']} dims where most images have "
                f"{common[0]} x {common[1]}"
            )
    return common


class Reservoir:
    """A uniform sample of up to ``size`` vectors from a stream (algorithm R), reproducible
    for a seed and an order."""

    def __init__(self, size: int, seed: int) -> None:
        if size < 2:
            raise DeclarationError(f"not_collapsed: sample must be at least 2, got {size}")
        self.size = size
        self.seen = 0
        self.items: list[np.ndarray] = []
        self._rng = np.random.default_rng(seed)

    def add(self, vector: np.ndarray) -> None:
        if len(self.items) < self.size:
            self.items.append(vector)
        else:
            slot = int(self._rng.integers(0, self.seen + 1))
            if slot < self.size:
                self.items[slot] = vector
        self.seen += 1


def mean_cosine_distance(vectors: np.ndarray) -> float:
    """The mean of ``1 - cos`` over every pair of distinct rows of ``vectors`` (non-zero)."""
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = units @ units.T
    count = len(units)
    off_diagonal = similarity.sum() - np.trace(similarity)
    return max(0.0, float(1.0 - off_diagonal / (count * (count - 1))))


def _failures(value: Any) -> int | None:
    """How many images the stage could not read (the ``vcat_failures`` attribute), if told."""
    if value is None:
        return None
    try:
        return len(json.loads(value))
    except (TypeError, ValueError):
        return None


def _recorded_count(metrics: Any) -> int | None:
    """The image count the features stage's metrics JSON at ``metrics`` records."""
    if metrics is None:
        return None
    path = Path(str(metrics))
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        count = values["images"]
    except FileNotFoundError:
        raise ProfileError(f"{path}: no features metrics; run the features stage") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(f"{path}: cannot read the image count 'images' ({exc!r})") from None
    whole = isinstance(count, int | float) and not isinstance(count, bool)
    if not whole or not float(count).is_integer():
        raise ProfileError(f"{path}: 'images' is {count!r}, not a whole number")
    return int(count)
