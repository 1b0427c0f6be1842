"""The scenes of a dataset root, whichever of the two source layouts it has.

- MegaDepth (glue-factory's layout): ``<root>/scene_info/<scene>.npz``, depth in
  ``<root>/depth_undistorted/<scene>/<stem>.h5`` (:mod:`vcat.geometry.megadepth`); a scene's
  views in the order of its scene file, named by their image paths.
- Matterport3D (undistorted archives unpacked): ``<root>/<scan>/undistorted_camera_parameters/
  <scan>.conf`` and ``<root>/<scan>/undistorted_depth_images/*.png``
  (:mod:`vcat.geometry.matterport`); a scan's views in the order of its camera file's scan
  lines, named by their colour image file names.

Scenes are listed sorted by name. Each view is read only when the scene is iterated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vcat.geometry import matterport, megadepth
from vcat.geometry.overlap import GeometryError, View

MEGADEPTH = "megadepth"
MATTERPORT = "matterport"
ViewWithDepth = tuple[View, NDArray[np.float32]]


@dataclass(frozen=True)
class SceneSource:
    """One scene of a dataset root: its name and how to read its views with depth."""

    name: str
    kind: str
    path: Path  # the scene file or scan folder
    read: Callable[[], Iterator[ViewWithDepth]]

    def views(self) -> Iterator[ViewWithDepth]:
        return self.read()


def _megadepth_views(path: Path, root: Path, allow_pickle: bool) -> Iterator[ViewWithDepth]:
    for image in megadepth.read_scene_info(path, root, allow_pickle=allow_pickle):
        depth = megadepth.read_depth_h5(image.depth_file)
        yield image.view(depth.shape[1], depth.shape[0]), depth


def _matterport_views(scan: Path) -> Iterator[ViewWithDepth]:
    for image in matterport.read_camera_file(matterport.camera_file(scan)):
        depth = matterport.read_depth_png(scan / matterport.DEPTH_FOLDER / image.depth_name)
        yield image.view(depth.shape[1], depth.shape[0]), depth


def find_scenes(root: Path, *, allow_pickle: bool = False) -> list[SceneSource]:
    """The scenes under ``root``; GeometryError when it has neither layout (or both)."""
    is_megadepth = (root / megadepth.INFO_FOLDER).is_dir()
    scans = matterport.find_scans(root)
    if is_megadepth and scans:
        raise GeometryError(
            f"{root}: holds both a MegaDepth scene_info folder and Matterport3D scans; give "
            "one dataset root"
        )
    if is_megadepth:
        return [
            SceneSource(
                path.stem,
                MEGADEPTH,
                path,
                lambda path=path: _megadepth_views(path, root, allow_pickle),
            )
            for path in megadepth.find_scenes(root)
        ]
    if scans:
        return [
            SceneSource(scan.name, MATTERPORT, scan, lambda scan=scan: _matterport_views(scan))
            for scan in scans
        ]
    raise GeometryError(
        f"{root}: neither a MegaDepth root (scene_info/<scene>.npz) nor a Matterport3D root "
        "(<scan>/undistorted_camera_parameters/<scan>.conf); give the dataset's root folder"
    )


def discovery_files(scenes: Sequence[SceneSource]) -> list[Path]:
    """The files :func:`find_scenes` finds the scenes by (each MegaDepth scene file, each
    Matterport3D camera file): what a shard needs to list every scene, whichever it reads."""
    return [
        scene.path if scene.kind == MEGADEPTH else matterport.camera_file(scene.path)
        for scene in scenes
    ]


def scene_files(scene: SceneSource, root: Path, *, allow_pickle: bool = False) -> list[Path]:
    """The files reading ``scene``'s views may open: a MegaDepth scene file and the depth
    maps of its images (only the scene file when it cannot be read: reading it again fails
    the scene the same way); everything under a Matterport3D scan folder."""
    if scene.kind == MATTERPORT:
        return sorted(path for path in scene.path.rglob("*") if not path.is_dir())
    try:
        images = megadepth.read_scene_info(scene.path, root, allow_pickle=allow_pickle)
    except (GeometryError, OSError, ValueError):
        return [scene.path]
    return [scene.path, *(image.depth_file for image in images)]
