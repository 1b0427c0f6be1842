"""The ``demo-matterport`` dataset: one room scanned from two tripod positions, in
Matterport3D's undistorted layout.

Tree (as Matterport3D's ``undistorted_*.zip`` archives unpack)::

    <scan>/undistorted_camera_parameters/<scan>.conf
    <scan>/undistorted_depth_images/<pano>_d<camera>_<yaw>.png   uint16 depth, 0 = none
    <scan>/undistorted_color_images/<pano>_i<camera>_<yaw>.jpg   1280x1024 RGB

Depth is the z distance in units of 0.25 mm (4000 per metre), as Matterport3D stores it.

``<pano>`` is a 32-hex panorama id, ``<camera>`` the rig camera (1, the level one, here) and
``<yaw>`` the yaw step of the rig (60 degrees apart, four per tripod position here). The
camera file holds a header (``dataset``, ``n_images``, ``depth_directory``,
``color_directory``), then per rig camera an ``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` line
followed by its ``scan <depth.png> <color.jpg> <16 floats>`` lines.

Camera convention of the 16 floats, as Matterport3D documents it and LoCUS reads it: a
row-major camera-to-world matrix of a canonical camera looking down -z with y up (OpenGL's),
in a z-up world. To get the usual x right, y down, z forward camera-to-world, multiply on
the right by ``diag(1, -1, -1, 1)`` (LoCUS does this). Matterport3D states image origins at
the bottom left; the principal point here is the exact image centre, so readers that flip
``cy`` to ``height - cy`` (LoCUS) and readers that do not get the same intrinsics.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from vcat.demo.publish import atomic_output, save_jpeg, save_png
from vcat.demo.scenes import (
    Camera,
    DepthMap,
    Quad,
    Scene,
    board,
    floor,
    look_at,
    photo_aspect,
    render,
)
from vcat.demo.scenes import sin_cos_degrees as _sin_cos

SCAN = "vcatDemoRm1"
WIDTH = 1280
HEIGHT = 1024
FOCAL = 1076.0
RIG_CAMERA = 1
YAW_STEP = 60.0
YAWS_PER_POSITION = 4
DEPTH_UNITS_PER_METRE = 4000
EYE_HEIGHT = 1.55
# tripod positions and the heading of yaw step 0 (degrees from +x, counter-clockwise)
POSITIONS: tuple[tuple[float, float, float], ...] = ((-0.9, -0.6, 15.0), (1.1, 0.5, 195.0))
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class ScanImage:
    """One image of the scan: its camera and file names."""

    camera: Camera
    depth_name: str
    color_name: str


def _wall(photo: str, x: float, y: float, width: float, yaw: float) -> Quad:
    """A wall standing on the floor, showing ``photo`` to the inside of the room."""
    return board(photo, (x, y, width * photo_aspect(photo) / 2), width, yaw=yaw)


def room() -> tuple[Quad, ...]:
    """A 7 x 6 x 2.8 m room: four walls, floor, ceiling and two free-standing boards."""
    return (
        _wall("china", 0.0, 3.0, 7.0, 0.0),
        _wall("flower", 0.0, -3.0, 7.0, 180.0),
        _wall("coffee", 3.5, 0.0, 6.0, -90.0),
        _wall("rocket", -3.5, 0.0, 6.0, 90.0),
        floor("immunohistochemistry", (0.0, 0.0, 0.0), 9.1),
        floor("hubble_deep_field", (0.0, 0.0, 2.8), 9.1),
        board("astronaut", (0.6, 1.6, 1.0), 1.2, yaw=20.0),
        board("grace_hopper", (-2.2, -1.4, 1.1), 1.0, yaw=120.0, lean=5.0),
    )


def panorama_id(position: int) -> str:
    """The 32-hex id of tripod position ``position``, fixed."""
    return hashlib.md5(f"demo-matterport/{SCAN}/{position}".encode()).hexdigest()


def scan_images() -> list[ScanImage]:
    """The eight images, in camera-file order: per tripod position, yaw steps 0-3."""
    images = []
    for index, (x, y, heading) in enumerate(POSITIONS):
        pano = panorama_id(index)
        for yaw in range(YAWS_PER_POSITION):
            s, c = _sin_cos(heading + YAW_STEP * yaw)
            position = (x, y, EYE_HEIGHT)
            target = (x + c, y + s, EYE_HEIGHT)
            name = f"{pano}_{RIG_CAMERA}_{yaw}"
            camera = look_at(name, position, target, FOCAL, WIDTH, HEIGHT)
            images.append(
                ScanImage(
                    camera, f"{pano}_d{RIG_CAMERA}_{yaw}.png", f"{pano}_i{RIG_CAMERA}_{yaw}.jpg"
                )
            )
    return images


def scene() -> Scene:
    """The room and the scan's cameras as a :class:`Scene`."""
    return Scene(SCAN, room(), tuple(image.camera for image in scan_images()))


def depth_png(depth: DepthMap) -> NDArray[np.uint16]:
    """Depth in metres as Matterport's uint16 in 0.25 mm units; 0 where unknown or too far."""
    units = np.floor(depth.astype(np.float64) * DEPTH_UNITS_PER_METRE + 0.5)
    return np.where((depth > 0) & (units <= 65535), units, 0).astype(np.uint16)


def _number(value: float) -> str:
    return f"{value + 0.0:.9f}"  # + 0.0 turns -0.0 into 0.0


def gl_camera_to_world(camera: Camera) -> NDArray[np.float64]:
    """Matterport's camera-to-world matrix (OpenGL camera: looking down -z, y up)."""
    return camera.camera_to_world() * GL_FROM_CV.diagonal()[None, :]


def camera_file(images: list[ScanImage]) -> str:
    """The text of ``<scan>.conf`` for ``images`` (all one rig camera, so one intrinsics line
    per tripod position)."""
    lines = [
        "dataset matterport",
        f"n_images {len(images)}",
        "depth_directory undistorted_depth_images",
        "color_directory undistorted_color_images",
    ]
    for start in range(0, len(images), YAWS_PER_POSITION):
        K = images[start].camera.K
        lines.append(
            f"intrinsics_matrix {_number(K[0, 0])} 0 {_number(K[0, 2])} "
            f"0 {_number(K[1, 1])} {_number(K[1, 2])} 0 0 1"
        )
        for image in images[start : start + YAWS_PER_POSITION]:
            matrix = " ".join(_number(v) for v in gl_camera_to_world(image.camera).ravel())
            lines.append(f"scan {image.depth_name} {image.color_name} {matrix}")
    return "\n".join(lines) + "\n"


def build_matterport(out: Path) -> None:
    """Write the scan ``vcatDemoRm1`` in Matterport3D's undistorted layout under ``out``."""
    images = scan_images()
    room_scene = scene()
    base = out / SCAN
    for image in images:
        rgb, depth = render(room_scene, image.camera)
        save_jpeg(base / "undistorted_color_images" / image.color_name, rgb)
        save_png(base / "undistorted_depth_images" / image.depth_name, depth_png(depth))
    with atomic_output(base / "undistorted_camera_parameters" / f"{SCAN}.conf") as stream:
        stream.write(camera_file(images).encode("utf-8"))
