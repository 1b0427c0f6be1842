"""Overlap matrices: the overlap stage's folder of ``<scene>.npz``, one such file, or the
locus-precompute stage's shard folder (``<scan>/img_overlaps`` samples: ``npy`` and
``order.txt``).

The ``matrices`` table has one row per matrix (a scene): whether it could be read, its shape
and whether it is square, its count of values that are not finite (NaN, inf), of finite
values outside [0, 1], the largest distance of a diagonal value from 1, and whether its
order matches the images it names: as many names as rows, each once, and (locus-precompute)
each name a colour image whose ``<scan>/rgb/<stem>`` sample is in the shards. The matrices are
read one at a time, the shards member by member.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from vcat.gates.checks import Check, row_count, values_between, values_true
from vcat.gates.kinds.images import load_index
from vcat.gates.profile import Profile, ProfileError, Table
from vcat.geometry.overlap import FORMAT
from vcat.shards import INDEX_NAME, ShardIndex

KIND = "overlap"
DESCRIPTION = "overlap matrices: the overlap stage's <scene>.npz, or locus-precompute's shards"
SUFFIX = ".npz"
LOCUS_SAMPLE = "img_overlaps"  # <scan>/img_overlaps: .npy matrix and .order.txt names
LOCUS_MATRIX, LOCUS_ORDER = "npy", "order.txt"
LOCUS_RGB = "rgb"
LOCUS_FORMAT = "vcat.locus-precompute/"
RUN_NAME = ".run.json"
COLUMNS = (
    "item",
    "readable",
    "problem",
    "rows",
    "cols",
    "square",
    "names",
    "order_matches",
    "order_problem",
    "nonfinite",
    "outside_unit",
    "diagonal_error",
)

CHECKS: list[Check] = [
    values_true("readable", "matrices", "readable", "every matrix file can be read"),
    values_true("square", "matrices", "square", "every matrix is square"),
    values_between(
        "finite", "matrices", "nonfinite", "no matrix holds a NaN or an infinity",
        low=None, high="max_nonfinite", defaults={"max_nonfinite": 0},
    ),
    values_between(
        "in_unit_range", "matrices", "outside_unit", "every value lies in [0, 1]",
        low=None, high="max_outside", defaults={"max_outside": 0},
    ),
    values_between(
        "unit_diagonal", "matrices", "diagonal_error",
        "every diagonal value within {tolerance} of 1",
        low=None, high="tolerance", defaults={"tolerance": 1e-9},
    ),
    values_true(
        "order_matches", "matrices", "order_matches",
        "every matrix names its images once each, one per row (and each is in the shards)",
    ),
    row_count("count", "matrices", "matrices: exactly {equal}, or between {min} and {max}"),
]  # fmt: skip


def _is_locus(artifact: Path) -> bool:
    """Whether ``artifact`` is a folder of the locus-precompute stage (its ``.run.json`` says
    so: the index, which may be large, is not read to tell)."""
    if not (artifact / INDEX_NAME).is_file():
        return False
    try:
        record = json.loads((artifact / RUN_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and str(record.get("format", "")).startswith(LOCUS_FORMAT)


def detect(artifact: Path) -> bool:
    if artifact.is_file():
        return artifact.suffix == SUFFIX
    if _is_locus(artifact):
        return True
    return artifact.is_dir() and not (artifact / INDEX_NAME).exists() and _has_npz(artifact)


def _has_npz(folder: Path) -> bool:
    return any(path.suffix == SUFFIX for path in folder.iterdir())


def matrix_row(item: str, matrix: Any, names: list[str] | None, order_problem: str) -> tuple:
    """The row of one matrix; ``order_problem`` is what is already known to be wrong with its
    names (empty: nothing)."""
    values = np.asarray(matrix)
    if values.ndim != 2 or not np.issubdtype(values.dtype, np.number):
        return _unreadable(item, f"a {values.ndim}-d {values.dtype} array, not a matrix")
    values = values.astype(np.float64, copy=False)
    rows, cols = values.shape
    finite = np.isfinite(values)
    nonfinite = int(values.size - np.count_nonzero(finite))
    outside = int(np.count_nonzero(finite & ((values < 0) | (values > 1))))
    diagonal = np.diagonal(values)
    # a NaN on the diagonal is as far from 1 as can be (NaN would be skipped as missing)
    errors = np.where(np.isfinite(diagonal), np.abs(diagonal - 1.0), np.inf)
    diagonal_error = float(errors.max()) if errors.size else 0.0
    if not order_problem and names is not None:
        if len(names) != rows or len(names) != cols:
            order_problem = f"{len(names)} names for a {rows}x{cols} matrix"
        elif len(set(names)) != len(names):
            twice = sorted(name for name in set(names) if names.count(name) > 1)
            order_problem = f"named twice: {', '.join(twice[:3])}"
    count = math.nan if names is None else len(names)
    return (
        item, True, "", rows, cols, rows == cols, count, not order_problem, order_problem,
        nonfinite, outside, diagonal_error,
    )  # fmt: skip


def _unreadable(item: str, problem: str) -> tuple:
    nan = math.nan
    return (item, False, problem, nan, nan, False, nan, False, problem, nan, nan, nan)


def _scene_row(path: Path) -> tuple:
    try:
        with np.load(path, allow_pickle=False) as data:
            layout = str(data["format"]) if "format" in data.files else ""
            if layout != FORMAT:
                return _unreadable(path.name, f"format {layout!r}, not {FORMAT!r}")
            names = [str(name) for name in data["names"]]
            valid = len(data["valid"]) if "valid" in data.files else len(names)
            problem = f"{valid} valid counts for {len(names)} names" if valid != len(names) else ""
            return matrix_row(path.name, data["overlap"], names, problem)
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        return _unreadable(path.name, f"not an overlap file ({type(exc).__name__}: {exc})")


def _scene_rows(artifact: Path) -> Iterator[tuple]:
    if artifact.is_file():
        yield _scene_row(artifact)
        return
    try:
        paths = sorted(path for path in artifact.iterdir() if path.suffix == SUFFIX)
    except OSError as exc:
        raise ProfileError(f"{artifact}: cannot list it ({exc.strerror})") from None
    for path in paths:
        yield _scene_row(path)


def _read_member(descriptor: int, span: tuple[int, int]) -> bytes:
    offset, size = span
    return os.pread(descriptor, size, offset)


def _locus_row(artifact: Path, index: ShardIndex, key: str, rgb: set[str]) -> tuple:
    location = index.samples[key]
    item = f"{key}.{LOCUS_MATRIX}"
    if LOCUS_MATRIX not in location.members or LOCUS_ORDER not in location.members:
        return _unreadable(item, f"the sample lacks its .{LOCUS_MATRIX} or .{LOCUS_ORDER}")
    path = artifact / index.shards[location.shard].name
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        return _unreadable(item, f"{path.name}: cannot open it ({exc.strerror})")
    try:
        matrix_bytes = _read_member(descriptor, location.members[LOCUS_MATRIX])
        order_bytes = _read_member(descriptor, location.members[LOCUS_ORDER])
    finally:
        os.close(descriptor)
    try:
        matrix = np.load(io.BytesIO(matrix_bytes), allow_pickle=False)
        names = order_bytes.decode("utf-8").splitlines()
    except (ValueError, EOFError, OSError, UnicodeDecodeError) as exc:
        return _unreadable(item, f"not a matrix and its order ({type(exc).__name__}: {exc})")
    scan = key.rsplit("/", 1)[0]
    missing = [
        name for name in names if f"{scan}/{LOCUS_RGB}/{PurePosixPath(name).stem}" not in rgb
    ]
    problem = f"no {LOCUS_RGB} sample for {', '.join(missing[:3])}" if missing else ""
    return matrix_row(item, matrix, names, problem)


def _locus_rows(artifact: Path) -> Iterator[tuple]:
    index = load_index(artifact)
    rgb = {key for key in index.samples if f"/{LOCUS_RGB}/" in key}
    for key in index.samples:
        if key.rsplit("/", 1)[-1] == LOCUS_SAMPLE:
            yield _locus_row(artifact, index, key, rgb)


def _source(artifact: Path) -> str | None:
    try:
        return str(json.loads((artifact / RUN_NAME).read_text("utf-8")).get("source"))
    except (OSError, ValueError, AttributeError):
        return None


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    import pandas as pd

    if not artifact.exists():
        raise ProfileError(f"{artifact}: no such file or folder")
    locus = artifact.is_dir() and (artifact / INDEX_NAME).exists()
    rows = list(_locus_rows(artifact) if locus else _scene_rows(artifact))
    if locus and not rows:
        raise ProfileError(
            f"{artifact}: a shard folder without <scan>/{LOCUS_SAMPLE} samples, so not an "
            "output of locus-precompute; give an overlap folder or --kind"
        )
    frame = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    facts = {
        "layout": "locus-precompute" if locus else "overlap",
        "source": None if artifact.is_file() or locus else _source(artifact),
        "matrices": len(frame),
        "images": int(frame["names"].fillna(0).sum()),
        "problems": _problems(frame),
    }
    return Profile(KIND, artifact, {"matrices": Table(frame, "item")}, facts)


def _problems(frame: Any, limit: int = 100) -> dict[str, str]:
    """What is wrong with up to ``limit`` matrices, by item, for result.json."""
    found = frame.loc[frame["order_problem"] != "", ["item", "order_problem"]].head(limit)
    return {str(item): str(text) for item, text in found.itertuples(index=False)}
