"""The ``demo-matterport`` dataset: one room scanned from two tripod positions, in
Matterport3D's undistorted layout.

Tree (as Matterport3D's ``undistorted_*.zip`` archives unpack)::

    <scan>/undistorted_camera_parameters/<scan>.conf
    <scan>/undistorted_depth_images/<pano>_d<camera>_<yaw>.png   uint16 depth, 0 = none
    <scan>/undistorted_color_images/<pano>_i<camera>_<yaw>.jpg   1280x1024 RGB

Depth is the z distance in units of 0.25 mm (4000 per metre), as Matterport3D stores it.

As in a real scan, each tripod position (panorama, ``<pano>`` a 32-hex id) is seen by the
three cameras of the rig, ``0`` tilted 30 degrees up, ``1`` level (the one LoCUS's
``horizontal_only`` keeps) and ``2`` tilted 30 degrees down, each at the six yaw steps ``0``
to ``5``, 60 degrees apart: 36 images. Each camera has its own intrinsics, with fx and fy
slightly different and the principal point off the image centre.

The camera file holds a header (``dataset``, ``n_images``, ``depth_directory``,
``color_directory``), then per panorama in capture order and per rig camera an
``intrinsics_matrix fx 0 cx 0 fy cy 0 0 1`` line followed by the ``scan <depth.png>
<color.jpg> <16 floats>`` lines of its six yaws. The capture order is not the order of the
sorted file names (the first panorama's id sorts last), so a reader that pairs sorted file
listings with camera-file lines by position gets the wrong poses.

Camera conventions, as Matterport3D documents them and LoCUS reads them: the 16 floats are a
row-major camera-to-world matrix of a canonical camera looking down -z with y up (OpenGL's),
in a z-up world; to get the usual x right, y down, z forward camera-to-world, multiply on the
right by ``diag(1, -1, -1, 1)``. Image origins are at the bottom left: the ``cy`` of the file
is measured from the bottom row, so the top-left principal point is ``height - cy`` (LoCUS
flips it so).

Depth has the gaps real scans have, which readers must survive: zero where the surface is
glass (a window in a wall and a skylight in the ceiling; one up-tilted view sees so much sky
that over a fifth of its pixels have no depth, the share at which LoCUS drops an image), and
isolated pixels that read 0 or less than 1 cm (sensor dropouts, a seeded few per image).
Depth beyond what the format holds (65535 units, 16.38 m) would be stored as 0; the room has
none, and the far readings LoCUS also calls invalid (over 20 m) cannot be stored at all.
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
    RGBImage,
    Scene,
    Vec3,
    board,
    floor,
    look_at,
    photo_aspect,
    render_hits,
)
from vcat.demo.scenes import sin_cos_degrees as _sin_cos

SCAN = "vcatDemoRm1"
WIDTH = 1280
HEIGHT = 1024
YAW_STEP = 60.0
YAWS = 6
DEPTH_UNITS_PER_METRE = 4000
EYE_HEIGHT = 1.55
DROPOUT_SEED = 3000
DROPOUT_SHARE = 0.003  # pixels reading 0
NEAR_SHARE = 0.002  # pixels reading 1 to 39 units (under 1 cm)
# tripod positions in capture order and the heading of yaw step 0 (degrees from +x,
# counter-clockwise)
POSITIONS: tuple[tuple[float, float, float], ...] = ((-0.9, -0.6, 15.0), (1.1, 0.5, 195.0))
GL_FROM_CV = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass(frozen=True)
class RigCamera:
    """One camera of the rig: its pitch and its intrinsics (``cy`` from the top row)."""

    index: int
    pitch: float
    fx: float
    fy: float
    cx: float
    cy: float

    def K(self) -> NDArray[np.float64]:
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


RIG: tuple[RigCamera, ...] = (
    RigCamera(0, 30.0, 1075.5, 1075.25, 629.75, 505.5),
    RigCamera(1, 0.0, 1076.75, 1076.5, 651.25, 518.0),
    RigCamera(2, -30.0, 1074.25, 1074.0, 633.5, 497.75),
)


@dataclass(frozen=True)
class ScanImage:
    """One image of the scan: its camera, rig camera and file names."""

    camera: Camera
    rig: RigCamera
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


def glass() -> tuple[Quad, ...]:
    """Surfaces that return no depth: a window in the china wall and a skylight."""
    return (
        board("retina", (1.2, 2.98, 1.5), 1.2),
        floor("chelsea", (-1.8, 1.0, 2.79), 1.8),
    )


def panorama_id(position: int) -> str:
    """The 32-hex id of tripod position ``position``, fixed."""
    return hashlib.md5(f"demo-matterport/{SCAN}/{position}".encode()).hexdigest()


def _rig_view(name: str, position: Vec3, heading: float, rig: RigCamera) -> Camera:
    sh, ch = _sin_cos(heading)
    sp, cp = _sin_cos(rig.pitch)
    target = (position[0] + ch * cp, position[1] + sh * cp, position[2] + sp)
    level = look_at(name, position, target, rig.fx, WIDTH, HEIGHT)
    return Camera(name, rig.K(), np.array(level.R), np.array(level.t), WIDTH, HEIGHT)


def scan_images() -> list[ScanImage]:
    """The 36 images in camera-file order: per tripod position, per rig camera, yaws 0-5."""
    images = []
    for index, (x, y, heading) in enumerate(POSITIONS):
        pano = panorama_id(index)
        for rig in RIG:
            for yaw in range(YAWS):
                name = f"{pano}_{rig.index}_{yaw}"
                camera = _rig_view(name, (x, y, EYE_HEIGHT), heading + YAW_STEP * yaw, rig)
                images.append(
                    ScanImage(
                        camera,
                        rig,
                        f"{pano}_d{rig.index}_{yaw}.png",
                        f"{pano}_i{rig.index}_{yaw}.jpg",
                    )
                )
    return images


def scene() -> Scene:
    """The room, its glass and the scan's cameras as a :class:`Scene`."""
    return Scene(SCAN, room() + glass(), tuple(image.camera for image in scan_images()))


def scan_depth(room_scene: Scene, image: ScanImage) -> tuple[RGBImage, DepthMap, DepthMap]:
    """The image's colour, its exact depth and its depth as the scanner gives it (metres; 0
    where the surface is glass, float32)."""
    rgb, depth, hits = render_hits(room_scene.quads, image.camera, room_scene.background)
    on_glass = hits >= len(room_scene.quads) - len(glass())
    return rgb, depth, np.where(on_glass, np.float32(0.0), depth)


def depth_png(depth: DepthMap, image_index: int = 0) -> NDArray[np.uint16]:
    """Depth in metres as Matterport's uint16 in 0.25 mm units: 0 where unknown or too far
    for the format, then the seeded dropouts (0) and near readings (1-39 units) of image
    ``image_index``."""
    units = np.floor(depth.astype(np.float64) * DEPTH_UNITS_PER_METRE + 0.5)
    stored = np.where((depth > 0) & (units <= 65535), units, 0).astype(np.uint16)
    rng = np.random.default_rng([DROPOUT_SEED, image_index])
    flat = stored.reshape(-1)
    dropouts = rng.choice(flat.size, int(flat.size * DROPOUT_SHARE), replace=False)
    flat[dropouts] = 0
    near = rng.choice(flat.size, int(flat.size * NEAR_SHARE), replace=False)
    flat[near] = rng.integers(1, 40, near.size)
    return stored


def _number(value: float) -> str:
    return f"{value + 0.0:.9f}"  # + 0.0 turns -0.0 into 0.0


def gl_camera_to_world(camera: Camera) -> NDArray[np.float64]:
    """Matterport's camera-to-world matrix (OpenGL camera: looking down -z, y up)."""
    return camera.camera_to_world() * GL_FROM_CV.diagonal()[None, :]


def intrinsics_line(rig: RigCamera) -> str:
    """The ``intrinsics_matrix`` line of a rig camera, ``cy`` measured from the bottom row."""
    values = (rig.fx, 0, rig.cx, 0, rig.fy, HEIGHT - rig.cy, 0, 0, 1)
    return "intrinsics_matrix " + " ".join(
        _number(v) if isinstance(v, float) else str(v) for v in values
    )


def camera_file(images: list[ScanImage]) -> str:
    """The text of ``<scan>.conf`` for ``images`` (in camera-file order): an intrinsics line
    before the first image of each run of one rig camera."""
    lines = [
        "dataset matterport",
        f"n_images {len(images)}",
        "depth_directory undistorted_depth_images",
        "color_directory undistorted_color_images",
    ]
    previous = None
    for image in images:
        run = (image.depth_name.split("_")[0], image.rig.index)
        if run != previous:
            lines.append(intrinsics_line(image.rig))
            previous = run
        matrix = " ".join(_number(v) for v in gl_camera_to_world(image.camera).ravel())
        lines.append(f"scan {image.depth_name} {image.color_name} {matrix}")
    return "\n".join(lines) + "\n"


def build_matterport(out: Path) -> None:
    """Write the scan ``vcatDemoRm1`` in Matterport3D's undistorted layout under ``out``."""
    images = scan_images()
    room_scene = scene()
    base = out / SCAN
    for index, image in enumerate(images):
        rgb, _, depth = scan_depth(room_scene, image)
        save_jpeg(base / "undistorted_color_images" / image.color_name, rgb)
        save_png(base / "undistorted_depth_images" / image.depth_name, depth_png(depth, index))
    with atomic_output(base / "undistorted_camera_parameters" / f"{SCAN}.conf") as stream:
        stream.write(camera_file(images).encode("utf-8"))
