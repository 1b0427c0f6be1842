"""Benchmark: the overlap matrix of a scene, vectorised (numpy) against a per-pixel reference.

A room of textured planes (vcat's demo textures) is rendered with exact depth from ``--views``
cameras (100 by default) at 160x128. Printed, measured in one run:

- CPU seconds of this process (and wall seconds) per scene for the vectorised overlap
  (:func:`vcat.geometry.overlap.overlap_matrix`: depth reduced to the 40x32 grid, every view
  against every other), best of ``--repeats``;
- CPU seconds for the per-pixel Python reference (:mod:`vcat.geometry.reference`) on the first
  ``--reference-views`` views, and the vectorised counts on the same views, which must be
  equal; the reference's time per (source pixel, target view) pair, times the pairs of the
  full scene, gives its seconds per scene (``--reference-views 100`` measures it whole);
- the ratio of the two.

    python bench/overlap.py [--views 100] [--reference-views 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from vcat.demo import scenes as demo
from vcat.geometry.overlap import (
    DEFAULT_SIZE,
    DepthRange,
    Tolerance,
    View,
    grid_views,
    overlap_counts,
    overlap_matrix,
)
from vcat.geometry.reference import reference_counts

WIDTH, HEIGHT = 160, 128
DEPTH_RANGE = DepthRange(0.01, 20.0)
TOLERANCE = Tolerance(0.01)


def room() -> tuple[demo.Quad, ...]:
    return (
        demo.board("chelsea", (0.0, 4.0, 2.0), 9.0),
        demo.board("coffee", (-4.5, 0.0, 2.0), 8.0, yaw=-90.0),
        demo.board("rocket", (4.5, 0.0, 2.0), 8.0, yaw=90.0),
        demo.floor("astronaut", (0.0, 0.0, 0.0), 9.0),
        demo.board("grace_hopper", (0.5, 1.5, 0.9), 1.2, yaw=25.0),
    )


def views(count: int) -> tuple[list[View], list[np.ndarray]]:
    """``count`` cameras on a seeded walk through the room, and their rendered depth."""
    rng = np.random.default_rng([2024, count])
    quads = room()
    out_views, depths = [], []
    for k in range(count):
        position = (rng.uniform(-3, 3), rng.uniform(-3.5, 0.5), rng.uniform(1.2, 1.8))
        target = (rng.uniform(-4, 4), rng.uniform(1, 4), rng.uniform(0.3, 2.0))
        camera = demo.look_at(f"v{k:03d}", position, target, 110.0, WIDTH, HEIGHT)
        depths.append(demo.render_quads(quads, camera, (0, 0, 0))[1])
        out_views.append(
            View(camera.name, camera.K.copy(), camera.world_to_camera(), WIDTH, HEIGHT)
        )
    return out_views, depths


def timed(work) -> tuple[float, float]:
    """CPU seconds of this process (what the work costs, however busy the machine is) and
    wall seconds of one call of ``work``."""
    cpu, wall = time.process_time(), time.perf_counter()
    work()
    return time.process_time() - cpu, time.perf_counter() - wall


def best_of(repeats: int, work) -> tuple[float, float]:
    return min(timed(work) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, default=100)
    parser.add_argument("--reference-views", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    scene_views, depths = views(args.views)
    w, h = DEFAULT_SIZE
    print(f"scene: {args.views} views at {WIDTH}x{HEIGHT}, overlap on a {w}x{h} grid")

    def vectorised() -> np.ndarray:
        return overlap_matrix(scene_views, depths, DEFAULT_SIZE, DEPTH_RANGE, TOLERANCE)

    fast, fast_wall = best_of(args.repeats, vectorised)
    matrix = vectorised()
    off = matrix[~np.eye(len(scene_views), dtype=bool)]
    print(
        f"vectorised: {fast:.3f} CPU s ({fast_wall:.3f} s wall) per scene; "
        f"mean overlap {off.mean():.3f}, "
        f"{np.count_nonzero((off > 0.1) & (off <= 0.7))} pairs in (0.1, 0.7], "
        f"{np.count_nonzero(off == 0)} with none"
    )

    count = min(args.reference_views, args.views)
    grid_depths, grid_K = grid_views(scene_views[:count], depths[:count], DEFAULT_SIZE)
    poses = np.stack([view.world_to_camera for view in scene_views[:count]])
    result = []
    slow, slow_wall = timed(
        lambda: result.append(reference_counts(grid_depths, grid_K, poses, DEPTH_RANGE, TOLERANCE))
    )
    slow_seen, slow_valid = result[0]
    fast_seen, fast_valid = overlap_counts(grid_depths, grid_K, poses, DEPTH_RANGE, TOLERANCE)
    agree = np.array_equal(slow_seen, fast_seen) and np.array_equal(slow_valid, fast_valid)
    print(
        f"reference on {count} views: {slow:.2f} CPU s ({slow_wall:.2f} s wall); "
        "counts equal to the vectorised ones: "
        f"{'yes' if agree else 'NO'} ({int(slow_seen.sum())} seen of {count} views)"
    )
    # work is one check per (valid source pixel, other view): scale by that count
    small_pairs = int(slow_valid.sum()) * (count - 1)
    _, all_valid = overlap_counts(
        *grid_views(scene_views, depths, DEFAULT_SIZE),
        np.stack([view.world_to_camera for view in scene_views]),
        DEPTH_RANGE,
        TOLERANCE,
    )
    full_pairs = int(all_valid.sum()) * (args.views - 1)
    reference_scene = slow * full_pairs / max(small_pairs, 1)
    how = "measured" if count == args.views else f"from {count} views, per pixel-view check"
    print(f"reference: {reference_scene:.1f} CPU s per scene of {args.views} views ({how})")
    print(f"ratio: vectorised is {reference_scene / fast:.0f}x faster than the reference (CPU)")
    if not agree:
        raise SystemExit("the vectorised counts differ from the reference")


if __name__ == "__main__":
    main()
