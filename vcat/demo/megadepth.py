"""The ``demo-megadepth`` dataset: the demo scenes in the layout glue-factory reads MegaDepth in.

Tree, relative to the dataset root (glue-factory's ``data_dir``)::

    Undistorted_SfM/<scene>/images/<name>.jpg    320x240 RGB
    depth_undistorted/<scene>/<stem>.h5          dataset "depth": float32 (H, W), metres, 0 = none
    scene_info/<scene>.npz

``Undistorted_SfM/`` on its own is the layout of the MegaDepth release that CroCo's guide
reads (``<scene>/images/<name>.jpg`` under its root), so CroCo's crop lists name images
relative to it (see :mod:`vcat.demo.croco`).

Scene ids are ``demo01`` ... ``demo04`` (see :mod:`vcat.demo.scenes`): real MegaDepth ids are
four decimal digits, so a demo scene never shares an id with a real one, and the split files
that ship with glue-factory (real ids) never select a demo scene.

Each scene has 48 views along a street (:mod:`vcat.demo.scenes`), so the pair samplers of
glue-factory and VOP run with their shipped settings: 300 (glue-factory) or 200 (VOP) pairs
per scene drawn without replacement from three overlap bins in ``(0.1, 0.7]``, a bin being used
only when it holds at least twice its share (200 pairs for glue-factory); and VOP's 200
negatives per scene drawn from the pairs whose overlap is exactly 0. Every scene has more
than 200 ordered pairs in each bin and more than 600 with no overlap.

Depth is the rendered depth rounded to multiples of 1/1024 m (under half a millimetre of
error), which keeps the HDF5 files small; everything below is computed from the depth as
published.

``scene_info/<scene>.npz`` has the keys of D2-Net's MegaDepth preprocessing, which
glue-factory's loader reads (one row per image, in view order):

- ``image_paths`` (N,): ``Undistorted_SfM/<scene>/images/<name>.jpg``, relative to the root;
- ``depth_paths`` (N,): ``depth_undistorted/<scene>/<stem>.h5`` (glue-factory builds this same
  path from the image's stem; VOP reads this key);
- ``intrinsics`` (N, 3, 3) and ``poses`` (N, 4, 4, world to camera), float64, in the
  conventions of :mod:`vcat.demo.scenes` (COLMAP's);
- ``overlap_matrix`` (N, N) float64: ``[i, j]`` is the fraction of image i's pixels with depth
  that image j sees (projected with the depth and depth-tested, on every 4th pixel each way);
  -1 on the diagonal, as D2-Net writes it, so that loaders selecting pairs by
  ``min_overlap < overlap <= max_overlap`` or negatives by ``overlap == 0`` never pair an
  image with itself;
- ``scale_ratio_matrix`` (N, N) float64: over the pixels either image sees of the other, the
  smallest ``max(d_i / d_j, d_j / d_i)`` of the depths divided by the mean focal length;
  symmetric; -1 on the diagonal and where the images share nothing (as D2-Net);
- ``angles`` (N, N) float64: degrees between the optical axes (rounded to 1e-6 degree).

The path lists are fixed-width unicode arrays (``dtype '<U..'``) instead of the original
object arrays, so ``np.load`` reads them without pickle; glue-factory's validity test
``paths != None`` is still true for every image. D2-Net's per-point keys
(``points3D_id_to_2D``, ``points3D_id_to_ndepth``, ``n_points3D``) are absent: they need an SfM
model, which the demo does not have, and glue-factory does not read them.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from numpy.typing import NDArray

from vcat.demo.publish import atomic_output, save_jpeg, write_npz
from vcat.demo.scenes import (
    Camera,
    DepthMap,
    Scene,
    dot,
    grid,
    project,
    render_view,
    scenes,
    unproject,
    visible,
)

IMAGE_SUBPATH = "Undistorted_SfM"
DEPTH_SUBPATH = "depth_undistorted"
INFO_SUBPATH = "scene_info"
OVERLAP_STRIDE = 4
DEPTH_STEPS_PER_METRE = 1024  # a power of two: the rounded depths are exact in float32


def image_name(scene_id: str, camera_name: str) -> str:
    """A Flickr-style file name (``<10 digits>_<10 hex>_o.jpg``), fixed per scene and view."""
    digest = hashlib.md5(f"demo-megadepth/{scene_id}/{camera_name}".encode()).hexdigest()
    return f"{int(digest[:8], 16) % 10**10:010d}_{digest[8:18]}_o.jpg"


def release_path(scene_id: str, camera_name: str) -> str:
    """The image's path in the layout of the MegaDepth release (``<scene>/images/<name>``),
    relative to ``Undistorted_SfM/``; CroCo's crop lists name images so."""
    return f"{scene_id}/images/{image_name(scene_id, camera_name)}"


def image_path(scene_id: str, camera_name: str) -> str:
    """The image's path relative to the dataset root, as ``image_paths`` holds it."""
    return f"{IMAGE_SUBPATH}/{release_path(scene_id, camera_name)}"


def depth_path(scene_id: str, camera_name: str) -> str:
    """The depth map's path relative to the dataset root, as ``depth_paths`` holds it."""
    stem = image_name(scene_id, camera_name).rsplit(".", 1)[0]
    return f"{DEPTH_SUBPATH}/{scene_id}/{stem}.h5"


def published_depth(scene_id: str, camera_name: str) -> DepthMap:
    """The depth map of a view as published: the rendered depth rounded to 1/1024 m."""
    depth = render_view(scene_id, camera_name)[1].astype(np.float64)
    steps = np.floor(depth * DEPTH_STEPS_PER_METRE + 0.5)
    return (steps / DEPTH_STEPS_PER_METRE).astype(np.float32)


def write_depth_h5(path: Path, depth: DepthMap) -> None:
    """``depth`` as the float32 dataset ``depth`` of an HDF5 file, byte-reproducible.

    No object times (``track_times=False``), the oldest file format (fixed ``libver``) and
    deflate with shuffle on one chunk, so equal depth maps give equal bytes.
    """
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=("earliest", "v108")) as h5:
        h5.create_dataset(
            "depth",
            data=np.asarray(depth, dtype=np.float32),
            chunks=depth.shape,
            compression="gzip",
            compression_opts=6,
            shuffle=True,
            track_times=False,
        )
    with atomic_output(path) as stream:
        stream.write(buffer.getvalue())


@dataclass(frozen=True)
class _Samples:
    """Every ``OVERLAP_STRIDE``-th pixel of a view that has depth: its depth over the mean focal
    length and its point in the world (unprojected once, used against every other view)."""

    count: int
    scaled_depth: NDArray[np.float64]
    world: tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def _samples(camera: Camera, depth: DepthMap) -> _Samples:
    rows, cols = grid(camera, OVERLAP_STRIDE)
    z = depth[rows, cols].astype(np.float64)
    keep = z > 0
    x = cols[keep].astype(np.float64) + 0.5
    y = rows[keep].astype(np.float64) + 0.5
    world = unproject(camera, x, y, z[keep])
    return _Samples(int(np.count_nonzero(keep)), z[keep] / ((camera.fx + camera.fy) / 2), world)


def _pair(source: _Samples, target: Camera, target_depth: DepthMap) -> tuple[float, float | None]:
    """The overlap of ``source`` in ``target`` and the smallest depth-scale ratio over the
    points ``target`` sees (None when it sees none)."""
    if source.count == 0:
        return 0.0, None
    x, y, zt = project(target, *source.world)
    seen = visible(target_depth, x, y, zt)
    fraction = int(np.count_nonzero(seen)) / source.count
    if not seen.any():
        return fraction, None
    near = source.scaled_depth[seen]
    far = zt[seen] / ((target.fx + target.fy) / 2)
    return fraction, float(np.min(np.maximum(near / far, far / near)))


def scene_matrices(scene: Scene) -> dict[str, NDArray[np.float64]]:
    """``overlap_matrix``, ``scale_ratio_matrix`` and ``angles`` of ``scene`` (see module)."""
    count = len(scene.cameras)
    overlap = np.full((count, count), -1.0)
    ratio = np.full((count, count), -1.0)
    angles = np.zeros((count, count))
    depths = [published_depth(scene.id, camera.name) for camera in scene.cameras]
    samples = [_samples(camera, depth) for camera, depth in zip(scene.cameras, depths, strict=True)]
    for i, source in enumerate(scene.cameras):
        for j, target in enumerate(scene.cameras):
            if i == j:
                continue
            overlap[i, j], smallest = _pair(samples[i], target, depths[j])
            if smallest is not None:
                ratio[i, j] = smallest if ratio[i, j] < 0 else min(ratio[i, j], smallest)
                ratio[j, i] = ratio[i, j]
            cosine = max(-1.0, min(1.0, dot(source.forward, target.forward)))
            angles[i, j] = round(math.degrees(math.acos(cosine)), 6)
    return {"overlap_matrix": overlap, "scale_ratio_matrix": ratio, "angles": angles}


def scene_info(scene: Scene) -> dict[str, NDArray[np.generic]]:
    """The arrays of ``scene_info/<scene>.npz`` (see the module docstring)."""
    names = [camera.name for camera in scene.cameras]
    return {
        "image_paths": np.array([image_path(scene.id, name) for name in names], dtype=np.str_),
        "depth_paths": np.array([depth_path(scene.id, name) for name in names], dtype=np.str_),
        "intrinsics": np.stack([camera.K for camera in scene.cameras]),
        "poses": np.stack([camera.world_to_camera() for camera in scene.cameras]),
        **scene_matrices(scene),
    }


def build_megadepth(out: Path) -> None:
    """Write the ``demo-megadepth`` tree (all four scenes) under the empty folder ``out``."""
    for scene in scenes():
        for camera in scene.cameras:
            rgb = render_view(scene.id, camera.name)[0]
            save_jpeg(out / image_path(scene.id, camera.name), rgb)
            depth = published_depth(scene.id, camera.name)
            write_depth_h5(out / depth_path(scene.id, camera.name), depth)
        write_npz(out / INFO_SUBPATH / f"{scene.id}.npz", scene_info(scene))
