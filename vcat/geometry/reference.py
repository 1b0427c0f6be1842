"""The overlap counts one pixel and one target view at a time, in plain Python floats.

The definition of :mod:`vcat.geometry.overlap` written as directly as it reads, for checking
the vectorised version (tests, ``bench/overlap.py``): the same float64 operations in the same
order, so both give the same counts, not merely close ones. Slow by design.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from vcat.geometry.overlap import (
    ANY_DEPTH,
    DEFAULT_TOLERANCE,
    NEAR,
    DepthRange,
    Tolerance,
)


def reference_counts(
    grid_depths: NDArray[np.float64],
    grid_K: NDArray[np.float64],
    poses: NDArray[np.float64],
    depth_range: DepthRange = ANY_DEPTH,
    tolerance: Tolerance = DEFAULT_TOLERANCE,
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """``(seen, valid)`` exactly as :func:`vcat.geometry.overlap.overlap_counts` defines them."""
    count, h, w = grid_depths.shape
    size = (w, h)
    depths = grid_depths.tolist()
    valid_mask = depth_range.valid(grid_depths).tolist()
    K = grid_K.tolist()
    R = poses[:, :3, :3].tolist()
    t = poses[:, :3, 3].tolist()
    seen = np.zeros((count, count), np.int64)
    valid = np.zeros(count, np.int64)
    for i in range(count):
        for row in range(h):
            for col in range(w):
                if not valid_mask[i][row][col]:
                    continue
                valid[i] += 1
                point = _unproject(depths[i][row][col], row, col, K[i], R[i], t[i])
                for j in range(count):
                    if j != i and _sees(
                        point, K[j], R[j], t[j], depths[j], valid_mask[j], size, tolerance
                    ):
                        seen[i, j] += 1
        seen[i, i] = valid[i]
    return seen, valid


def _unproject(
    z: float, row: int, col: int, K: list[list[float]], R: list[list[float]], t: list[float]
) -> tuple[float, float, float]:
    xc = (col + 0.5 - K[0][2]) / K[0][0] * z
    yc = (row + 0.5 - K[1][2]) / K[1][1] * z
    shifted = (xc - t[0], yc - t[1], z - t[2])
    return tuple(  # type: ignore[return-value]
        R[0][k] * shifted[0] + R[1][k] * shifted[1] + R[2][k] * shifted[2] for k in range(3)
    )


def _sees(
    point: tuple[float, float, float],
    K: list[list[float]],
    R: list[list[float]],
    t: list[float],
    depths: list[list[float]],
    valid: list[list[bool]],
    size: tuple[int, int],
    tolerance: Tolerance,
) -> bool:
    w, h = size
    X, Y, Z = point
    xc, yc, zc = (R[k][0] * X + R[k][1] * Y + R[k][2] * Z + t[k] for k in range(3))
    if not zc > NEAR:
        return False
    x = K[0][0] * (xc / zc) + K[0][2]
    y = K[1][1] * (yc / zc) + K[1][2]
    if not (0 <= x < w and 0 <= y < h):
        return False
    row, col = math.floor(y), math.floor(x)
    if not valid[row][col]:
        return False
    surface = depths[row][col]
    if tolerance.neighbourhood:
        left, top = math.floor(x - 0.5), math.floor(y - 0.5)
        cols = {min(max(c, 0), w - 1) for c in (left, left + 1 if x - 0.5 > left else left)}
        rows = {min(max(r, 0), h - 1) for r in (top, top + 1 if y - 0.5 > top else top)}
        for r in rows:
            for c in cols:
                if valid[r][c] and depths[r][c] > surface:
                    surface = depths[r][c]
    return zc <= surface + tolerance.absolute + tolerance.relative * surface
