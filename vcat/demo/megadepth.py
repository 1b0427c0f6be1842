"""The ``demo-megadepth`` dataset: the demo scenes in the layout glue-factory reads MegaDepth in.

Tree, relative to the dataset root (glue-factory's ``data_dir``)::

    Undistorted_SfM/<scene>/images/<name>.jpg    480x360 RGB
    depth_undistorted/<scene>/<stem>.h5          dataset "depth": float32 (H, W), metres, 0 = none
    scene_info/<scene>.npz

``scene_info/<scene>.npz`` has the keys of D2-Net's MegaDepth preprocessing, which
glue-factory's loader reads (one row per image, in view order):

- ``image_paths`` (N,): ``Undistorted_SfM/<scene>/images/<name>.jpg``, relative to the root;
- ``depth_paths`` (N,): ``depth_undistorted/<scene>/<stem>.h5`` (glue-factory builds this same
  path from the image's stem);
- ``intrinsics`` (N, 3, 3) and ``poses`` (N, 4, 4, world to camera), float64, in the
  conventions of :mod:`vcat.demo.scenes` (COLMAP's);
- ``overlap_matrix`` (N, N) float64: ``[i, j]`` is the fraction of image i's pixels with depth
  that image j sees (projected with the exact depth and depth-tested, on every 4th pixel
  each way); -1 on the diagonal, as D2-Net writes it, so that loaders selecting pairs by
  ``min_overlap < overlap <= max_overlap`` never pair an image with itself;
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
    render_view,
    scenes,
    transfer,
    visible,
)

IMAGE_SUBPATH = "Undistorted_SfM"
DEPTH_SUBPATH = "depth_undistorted"
INFO_SUBPATH = "scene_info"
OVERLAP_STRIDE = 4


def image_name(scene_id: str, camera_name: str) -> str:
    """A Flickr-style file name (``<10 digits>_<10 hex>_o.jpg``), fixed per scene and view."""
    digest = hashlib.md5(f"demo-megadepth/{scene_id}/{camera_name}".encode()).hexdigest()
    return f"{int(digest[:8], 16) % 10**10:010d}_{digest[8:18]}_o.jpg"


def image_path(scene_id: str, camera_name: str) -> str:
    """The image's path relative to the dataset root, as ``image_paths`` holds it."""
    return f"{IMAGE_SUBPATH}/{scene_id}/images/{image_name(scene_id, camera_name)}"


def depth_path(scene_id: str, camera_name: str) -> str:
    """The depth map's path relative to the dataset root, as ``depth_paths`` holds it."""
    stem = image_name(scene_id, camera_name).rsplit(".", 1)[0]
    return f"{DEPTH_SUBPATH}/{scene_id}/{stem}.h5"


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


def _pair(
    source: Camera, source_depth: DepthMap, target: Camera, target_depth: DepthMap
) -> tuple[float, float | None]:
    """The overlap of ``source`` in ``target`` and the smallest depth-scale ratio over the
    points ``target`` sees (None when it sees none)."""
    rows, cols = grid(source, OVERLAP_STRIDE)
    z = source_depth[rows, cols].astype(np.float64)
    keep = z > 0
    if not keep.any():
        return 0.0, None
    x, y, zt = transfer(source, target, cols[keep], rows[keep], z[keep])
    seen = visible(target_depth, x, y, zt)
    fraction = int(np.count_nonzero(seen)) / int(np.count_nonzero(keep))
    if not seen.any():
        return fraction, None
    near = z[keep][seen] / ((source.fx + source.fy) / 2)
    far = zt[seen] / ((target.fx + target.fy) / 2)
    return fraction, float(np.min(np.maximum(near / far, far / near)))


def scene_matrices(scene: Scene) -> dict[str, NDArray[np.float64]]:
    """``overlap_matrix``, ``scale_ratio_matrix`` and ``angles`` of ``scene`` (see module)."""
    count = len(scene.cameras)
    overlap = np.full((count, count), -1.0)
    ratio = np.full((count, count), -1.0)
    angles = np.zeros((count, count))
    depths = [render_view(scene.id, camera.name)[1] for camera in scene.cameras]
    for i, source in enumerate(scene.cameras):
        for j, target in enumerate(scene.cameras):
            if i == j:
                continue
            overlap[i, j], smallest = _pair(source, depths[i], target, depths[j])
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
            rgb, depth = render_view(scene.id, camera.name)
            save_jpeg(out / image_path(scene.id, camera.name), rgb)
            write_depth_h5(out / depth_path(scene.id, camera.name), depth)
        write_npz(out / INFO_SUBPATH / f"{scene.id}.npz", scene_info(scene))
