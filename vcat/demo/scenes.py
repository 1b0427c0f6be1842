"""Scenes with exact geometry: textured rectangles in 3D, seen by pinhole cameras.

A :class:`Scene` is planar :class:`Quad` s, each textured with one demo photo, and the
:class:`Camera` s that look at it. The MegaDepth demo scenes ``demo01`` ... ``demo04`` are
streets: a facade of photo panels, the ground and boards standing in front, seen by 48
cameras walking along the street, so that their pairs share anything from all to nothing.
:func:`render` casts one ray per pixel, so colour and depth are exact for the definition;
:func:`transfer` and :func:`visible` carry pixels with depth from one camera into another, for
overlap matrices, crop boxes and tests.

Conventions (COLMAP's, which MegaDepth and glue-factory use):

- world: right-handed, z up, metres;
- camera: x right, y down, z forward; world to camera is ``X_cam = R @ X_world + t``;
- image coordinates: the centre of the pixel in row ``r``, column ``c`` is ``(c + 0.5, r + 0.5)``
  and ``K`` maps camera coordinates to them;
- depth: the z of the surface point in the camera frame, metres; 0 where nothing was hit.

Every catalog entry of the demo world records md5s, so results must not depend on the CPU:
per-pixel maths is float64 ``+ - * /`` and ``floor`` (no BLAS, no reductions, no
transcendental functions), small matrices are multiplied in Python floats, and the few
angles go through :func:`sin_cos_degrees`, a series in Python floats.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from vcat.demo.photos import PHOTO_NAMES, load_photo

Vec3 = tuple[float, float, float]
Mat3 = tuple[Vec3, Vec3, Vec3]
RGBImage = NDArray[np.uint8]
DepthMap = NDArray[np.float32]

# Real MegaDepth scene ids are four decimal digits ("0015"); a demo id starts with letters, so
# no real id can equal it and no split file of real scenes names a demo scene.
SCENE_IDS: tuple[str, ...] = ("demo01", "demo02", "demo03", "demo04")
TRAIN_SCENES: tuple[str, ...] = ("demo01", "demo02", "demo03")
TEST_SCENES: tuple[str, ...] = ("demo04",)  # held out: never in training data such as crops
IMAGE_WIDTH = 320
IMAGE_HEIGHT = 240
VIEWS_PER_SCENE = 48
SCENE_SEED = 1506
NEAR = 1e-3  # metres; hits closer to the camera than this are ignored
TEXTURE_MAX_SIDE = 512
UP: Vec3 = (0.0, 0.0, 1.0)


# --- small vectors and matrices in Python floats (exact IEEE arithmetic, no BLAS) ---------


def add(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def sub(a: Vec3, b: Vec3) -> Vec3:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def scale(a: Vec3, k: float) -> Vec3:
    return (a[0] * k, a[1] * k, a[2] * k)


def dot(a: Vec3, b: Vec3) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def cross(a: Vec3, b: Vec3) -> Vec3:
    return (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])


def unit(a: Vec3) -> Vec3:
    return scale(a, 1.0 / math.sqrt(dot(a, a)))


def mat_vec(m: Mat3, a: Vec3) -> Vec3:
    return (dot(m[0], a), dot(m[1], a), dot(m[2], a))


def transpose(m: Mat3) -> Mat3:
    return (
        (m[0][0], m[1][0], m[2][0]),
        (m[0][1], m[1][1], m[2][1]),
        (m[0][2], m[1][2], m[2][2]),
    )


def sin_cos_degrees(degrees: float) -> tuple[float, float]:
    """``(sin, cos)`` of an angle in degrees, the same to the last bit on every machine.

    The C library's sin and cos may pick other code paths on other CPUs; this reduces the
    angle to +-45 degrees and sums a fixed number of Taylor terms in Python floats.
    """
    quadrant = round(degrees / 90.0)
    x = (degrees - 90.0 * quadrant) * (math.pi / 180.0)
    x2 = x * x
    sin_term, cos_term = x, 1.0
    sin_sum, cos_sum = x, 1.0
    for k in range(1, 12):
        sin_term = -sin_term * x2 / ((2 * k) * (2 * k + 1))
        cos_term = -cos_term * x2 / ((2 * k - 1) * (2 * k))
        sin_sum += sin_term
        cos_sum += cos_term
    return [
        (sin_sum, cos_sum),
        (cos_sum, -sin_sum),
        (-sin_sum, -cos_sum),
        (-cos_sum, sin_sum),
    ][quadrant % 4]


# --- cameras --------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Camera:
    """A pinhole camera: intrinsics ``K`` (3x3), world-to-camera ``R`` (3x3) and ``t`` (3,)."""

    name: str
    K: NDArray[np.float64]
    R: NDArray[np.float64]
    t: NDArray[np.float64]
    width: int
    height: int

    def __post_init__(self) -> None:
        shapes = {"K": (3, 3), "R": (3, 3), "t": (3,)}
        for field, shape in shapes.items():
            array = getattr(self, field)
            if array.shape != shape or array.dtype != np.float64:
                raise ValueError(
                    f"camera {self.name!r}: {field} must be float64 of shape {shape}, "
                    f"not {array.dtype} {array.shape}"
                )
            array.setflags(write=False)
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"camera {self.name!r}: size {self.width}x{self.height}")

    @property
    def fx(self) -> float:
        return float(self.K[0, 0])

    @property
    def fy(self) -> float:
        return float(self.K[1, 1])

    @property
    def cx(self) -> float:
        return float(self.K[0, 2])

    @property
    def cy(self) -> float:
        return float(self.K[1, 2])

    @property
    def rotation(self) -> Mat3:
        return tuple(tuple(float(x) for x in row) for row in self.R)  # type: ignore[return-value]

    @property
    def translation(self) -> Vec3:
        return (float(self.t[0]), float(self.t[1]), float(self.t[2]))

    @property
    def center(self) -> Vec3:
        """The camera's position in the world, ``-R.T @ t``."""
        return scale(mat_vec(transpose(self.rotation), self.translation), -1.0)

    @property
    def forward(self) -> Vec3:
        """The optical axis in world coordinates (the third row of ``R``)."""
        return self.rotation[2]

    def world_to_camera(self) -> NDArray[np.float64]:
        """The 4x4 world-to-camera matrix ``[[R, t], [0, 0, 0, 1]]``."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.R
        matrix[:3, 3] = self.t
        return matrix

    def camera_to_world(self) -> NDArray[np.float64]:
        """The 4x4 camera-to-world matrix ``[[R.T, -R.T @ t], [0, 0, 0, 1]]``."""
        matrix = np.eye(4)
        matrix[:3, :3] = np.array(transpose(self.rotation))
        matrix[:3, 3] = self.center
        return matrix


def intrinsics(focal: float, width: int, height: int) -> NDArray[np.float64]:
    """``K`` with square pixels and the principal point at the image centre."""
    return np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])


def look_at(
    name: str,
    position: Vec3,
    target: Vec3,
    focal: float,
    width: int = IMAGE_WIDTH,
    height: int = IMAGE_HEIGHT,
    roll: float = 0.0,
) -> Camera:
    """A camera at ``position`` whose optical axis passes through ``target``.

    With ``roll`` 0 the image's x axis is horizontal (the world is z up); ``roll`` turns the
    camera about its optical axis by that many degrees, its x axis towards its y axis.
    """
    forward = unit(sub(target, position))
    right = unit(cross(forward, UP))
    down = cross(forward, right)
    s, c = sin_cos_degrees(roll)
    right, down = add(scale(right, c), scale(down, s)), sub(scale(down, c), scale(right, s))
    rotation: Mat3 = (right, down, forward)
    t = scale(mat_vec(rotation, position), -1.0)
    return Camera(
        name, intrinsics(focal, width, height), np.array(rotation), np.array(t), width, height
    )


# --- quads and scenes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Quad:
    """A rectangle textured with a photo: ``origin`` is the photo's top-left corner, the photo's
    rows run along ``u`` and its columns along ``v`` (``u`` and ``v`` perpendicular)."""

    photo: str
    origin: Vec3
    u: Vec3
    v: Vec3

    def __post_init__(self) -> None:
        if abs(dot(self.u, self.v)) > 1e-9 * math.sqrt(dot(self.u, self.u) * dot(self.v, self.v)):
            raise ValueError(f"quad textured with {self.photo!r}: u and v must be perpendicular")


@cache
def texture(photo: str) -> RGBImage:
    """The photo as a texture: reduced by an integer box filter to at most 512 pixels a side."""
    pixels = load_photo(photo).pixels
    factor = -(-max(pixels.shape[:2]) // TEXTURE_MAX_SIDE)
    if factor > 1:
        pixels = np.asarray(Image.fromarray(pixels).reduce(factor))
    pixels = np.ascontiguousarray(pixels)
    pixels.setflags(write=False)
    return pixels


def photo_aspect(photo: str) -> float:
    """Height over width of the photo's texture."""
    height, width = texture(photo).shape[:2]
    return height / width


def board(photo: str, center: Vec3, width: float, yaw: float = 0.0, lean: float = 0.0) -> Quad:
    """An upright rectangle showing ``photo`` to a viewer looking along +y from -y.

    ``yaw`` turns it about the vertical through ``center`` (degrees, counter-clockwise seen
    from above); ``lean`` tips its top away from the viewer. Its height follows the photo.
    """
    height = width * photo_aspect(photo)
    sy, cy = sin_cos_degrees(yaw)
    sl, cl = sin_cos_degrees(lean)
    u = (width * cy, width * sy, 0.0)
    v = (height * sy * sl, -height * cy * sl, -height * cl)
    return Quad(photo, sub(center, add(scale(u, 0.5), scale(v, 0.5))), u, v)


def floor(photo: str, center: Vec3, width: float) -> Quad:
    """A horizontal rectangle at ``center`` (its z the floor's height), ``width`` along x."""
    depth = width * photo_aspect(photo)
    u = (width, 0.0, 0.0)
    v = (0.0, -depth, 0.0)
    return Quad(photo, sub(center, add(scale(u, 0.5), scale(v, 0.5))), u, v)


@dataclass(frozen=True, eq=False)
class Scene:
    """Textured quads, the cameras that see them, and the colour where no quad is hit."""

    id: str
    quads: tuple[Quad, ...]
    cameras: tuple[Camera, ...]
    background: tuple[int, int, int] = (196, 208, 222)

    def camera(self, name: str) -> Camera:
        for camera in self.cameras:
            if camera.name == name:
                return camera
        raise KeyError(f"scene {self.id} has no camera {name!r}")


def _draw(rng: np.random.Generator, low: float, high: float) -> float:
    """A uniform draw rounded to millimetres, so the definition reads as plain numbers."""
    return round(float(rng.uniform(low, high)), 3)


# Each scene is a street: a facade of photo panels along x, the ground, and boards standing in
# front; the cameras walk along the street looking at the facade. Views close together share
# most of what they see, views far apart nothing, so every overlap from 0 to 1 is common (see
# the module docstring of vcat.demo.megadepth for the counts the samplers need).
STREET_LENGTH = 34.0  # metres along x
FACADE_Y = 7.0  # the facade's distance from the street's axis
PANEL_WIDTH = (3.0, 5.0)
BOARD_SPACING = 4.0  # one board per this many metres of street
CAMERA_MARGIN = 4.0  # the first and last camera stand this far inside the street's ends
FOCAL = (220.0, 300.0)  # pixels, drawn per view
# rolled views exercise in-plane rotation (CroCo's rotation rule)
_ROLLED: dict[tuple[str, int], float] = {("demo02", 5): 90.0, ("demo03", 2): -90.0}


def _street_quads(rng: np.random.Generator) -> list[Quad]:
    order = [PHOTO_NAMES[int(k)] for k in rng.permutation(len(PHOTO_NAMES))]
    quads = []
    left = -STREET_LENGTH / 2
    while left < STREET_LENGTH / 2:
        photo = order[len(quads) % len(order)]
        width = _draw(rng, *PANEL_WIDTH)
        height = width * photo_aspect(photo)
        depth = FACADE_Y + _draw(rng, -0.4, 0.4)
        quads.append(board(photo, (left + width / 2, depth, height / 2), width))
        left += width
    ground = order[len(quads) % len(order)]
    quads.append(floor(ground, (0.0, FACADE_Y / 2, 0.0), STREET_LENGTH + 10.0))
    count = int(STREET_LENGTH / BOARD_SPACING)
    for k in range(count):
        photo = order[(len(quads) + k) % len(order)]
        width = _draw(rng, 1.0, 2.0)
        x = -STREET_LENGTH / 2 + (k + 0.5) * BOARD_SPACING + _draw(rng, -0.8, 0.8)
        y = _draw(rng, 1.0, FACADE_Y - 1.5)
        bottom = _draw(rng, 0.0, 0.6)
        center = (x, y, bottom + width * photo_aspect(photo) / 2)
        quads.append(board(photo, center, width, _draw(rng, -35.0, 35.0), _draw(rng, -10.0, 15.0)))
    return quads


def _scene(index: int, scene_id: str) -> Scene:
    rng = np.random.default_rng([SCENE_SEED, index])
    quads = _street_quads(rng)
    span = STREET_LENGTH - 2 * CAMERA_MARGIN
    cameras = []
    for view in range(VIEWS_PER_SCENE):
        x = -span / 2 + span * view / (VIEWS_PER_SCENE - 1) + _draw(rng, -0.3, 0.3)
        position = (x, _draw(rng, -3.0, -1.0), _draw(rng, 1.1, 1.9))
        target = (x + _draw(rng, -3.0, 3.0), _draw(rng, 2.0, FACADE_Y), _draw(rng, 0.9, 1.8))
        focal = _draw(rng, *FOCAL)
        jitter = _draw(rng, -6.0, 6.0)  # drawn for every view, so a rolled one shifts no draws
        roll = _ROLLED.get((scene_id, view), jitter)
        cameras.append(look_at(f"view{view:02d}", position, target, focal, roll=roll))
    return Scene(scene_id, tuple(quads), tuple(cameras))


@cache
def scenes() -> tuple[Scene, ...]:
    """The demo scenes (``demo04`` held out), 48 views of 320x240 each; built on first use."""
    return tuple(_scene(index, scene_id) for index, scene_id in enumerate(SCENE_IDS))


def get_scene(scene_id: str) -> Scene:
    for scene in scenes():
        if scene.id == scene_id:
            return scene
    raise KeyError(f"no demo scene {scene_id!r}; known: {', '.join(SCENE_IDS)}")


# --- rendering ------------------------------------------------------------------------------

# Pixels per band of rows rendered at once: the temporaries stay in the CPU cache and in
# memory the allocator reuses, which makes a render about twice as fast as whole images.
BAND_PIXELS = 16384


def _window(quad: Quad, camera: Camera) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, r1, c0, c1)`` that can see ``quad``: the bounds of its projected
    corners when all are in front of the camera, else the whole image."""
    corners = [
        quad.origin,
        add(quad.origin, quad.u),
        add(quad.origin, quad.v),
        add(add(quad.origin, quad.u), quad.v),
    ]
    rotation, translation = camera.rotation, camera.translation
    xs, ys = [], []
    for corner in corners:
        x, y, z = add(mat_vec(rotation, corner), translation)
        if z <= NEAR:
            return 0, camera.height, 0, camera.width
        xs.append(camera.fx * x / z + camera.cx)
        ys.append(camera.fy * y / z + camera.cy)
    c0 = min(max(math.floor(min(xs)) - 1, 0), camera.width)
    c1 = min(max(math.ceil(max(xs)) + 1, 0), camera.width)
    r0 = min(max(math.floor(min(ys)) - 1, 0), camera.height)
    r1 = min(max(math.ceil(max(ys)) + 1, 0), camera.height)
    return r0, r1, c0, c1


@dataclass(frozen=True)
class _Plane:
    """A quad in camera coordinates, as the coefficients of three functions of the ray
    ``(x, y, 1)``: ``z = depth / (normal . ray)``, ``s = z * (u_dual . ray) - s0`` and
    ``t = z * (v_dual . ray) - t0``, where ``u_dual = u / |u|^2`` (and so for v)."""

    depth: float
    normal: Vec3
    u_dual: Vec3
    s0: float
    v_dual: Vec3
    t0: float
    window: tuple[int, int, int, int]


def _plane(quad: Quad, camera: Camera) -> _Plane:
    rotation, translation = camera.rotation, camera.translation
    origin = add(mat_vec(rotation, quad.origin), translation)
    u = mat_vec(rotation, quad.u)
    v = mat_vec(rotation, quad.v)
    normal = cross(u, v)
    u_dual = scale(u, 1.0 / dot(u, u))
    v_dual = scale(v, 1.0 / dot(v, v))
    return _Plane(
        dot(normal, origin),
        normal,
        u_dual,
        dot(u_dual, origin),
        v_dual,
        dot(v_dual, origin),
        _window(quad, camera),
    )


def _along(coefficients: Vec3, xs: NDArray[np.float64], ys: NDArray[np.float64]):
    """``a * x + b * y + c`` on the grid ``ys x xs`` for ``coefficients`` ``(a, b, c)``."""
    a, b, c = coefficients
    return (a * xs)[None, :] + (b * ys + c)[:, None]


def _render_band(
    quads: Sequence[Quad],
    planes: Sequence[_Plane],
    rx: NDArray[np.float64],
    ry: NDArray[np.float64],
    top: int,
    rgb: RGBImage,
    depth: DepthMap,
    hits: NDArray[np.int16],
) -> None:
    """Render the rows ``top:top + len(ry)`` into ``rgb``, ``depth`` and ``hits``."""
    rows, width = ry.size, rx.size
    nearest = np.full((rows, width), np.inf)
    s_hit = np.zeros((rows, width))
    t_hit = np.zeros((rows, width))
    which = np.full((rows, width), -1, np.int16)
    for index, plane in enumerate(planes):
        r0, r1, c0, c1 = plane.window
        r0, r1 = max(r0 - top, 0), min(r1 - top, rows)
        if r0 >= r1 or c0 >= c1:
            continue
        xs, ys = rx[c0:c1], ry[r0:r1]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = plane.depth / _along(plane.normal, xs, ys)
            s = z * _along(plane.u_dual, xs, ys) - plane.s0
            t = z * _along(plane.v_dual, xs, ys) - plane.t0
            window = (slice(r0, r1), slice(c0, c1))
            best = nearest[window]
            hit = (z > NEAR) & (z < best) & (s >= 0) & (s <= 1) & (t >= 0) & (t <= 1)
        np.copyto(best, z, where=hit)
        np.copyto(s_hit[window], s, where=hit)
        np.copyto(t_hit[window], t, where=hit)
        np.copyto(which[window], np.int16(index), where=hit)
    flat_rgb = rgb[top : top + rows].reshape(-1, 3)
    for index, quad in enumerate(quads):
        where = np.flatnonzero(which == index)
        if where.size:
            flat_rgb[where] = sample_bilinear(
                quad.photo, s_hit.ravel()[where], t_hit.ravel()[where]
            )
    depth[top : top + rows] = np.where(which >= 0, nearest, 0.0)
    hits[top : top + rows] = which


@cache
def _planes(photo: str) -> NDArray[np.uint8]:
    """The texture of ``photo`` as three flat colour planes, shape (3, H * W)."""
    pixels = texture(photo)
    return np.ascontiguousarray(pixels.transpose(2, 0, 1).reshape(3, -1))


def sample_bilinear(photo: str, s: NDArray[np.float64], t: NDArray[np.float64]) -> RGBImage:
    """Colours of ``photo``'s texture at coordinates ``s`` (across) and ``t`` (down) in [0, 1],
    interpolated between texel centres; shape ``(len(s), 3)``."""
    height, width = texture(photo).shape[:2]
    x = np.clip(s * width - 0.5, 0.0, width - 1.0)
    y = np.clip(t * height - 0.5, 0.0, height - 1.0)
    x_floor = np.floor(x)
    y_floor = np.floor(y)
    fx = x - x_floor
    fy = y - y_floor
    gx = 1.0 - fx
    gy = 1.0 - fy
    col = x_floor.astype(np.intp)
    row = y_floor.astype(np.intp)
    i00 = row * width + col
    i01 = i00 + (col < width - 1)
    down = np.where(row < height - 1, width, 0)
    i10 = i00 + down
    i11 = i01 + down
    out = np.empty((s.size, 3), np.uint8)
    for channel, plane in enumerate(_planes(photo)):
        c00, c01, c10, c11 = (plane[i].astype(np.float64) for i in (i00, i01, i10, i11))
        value = (c00 * gx + c01 * fx) * gy + (c10 * gx + c11 * fx) * fy
        out[:, channel] = np.floor(value + 0.5)
    return out


def render_hits(
    quads: Sequence[Quad], camera: Camera, background: tuple[int, int, int]
) -> tuple[RGBImage, DepthMap, NDArray[np.int16]]:
    """:func:`render_quads` and, per pixel, the index in ``quads`` of the quad it shows
    (-1 where none)."""
    height, width = camera.height, camera.width
    rx = (np.arange(width) + 0.5 - camera.cx) / camera.fx  # the ray (rx, ry, 1) per pixel
    ry = (np.arange(height) + 0.5 - camera.cy) / camera.fy
    planes = [_plane(quad, camera) for quad in quads]
    rgb = np.empty((height, width, 3), np.uint8)
    rgb[:] = background
    depth = np.empty((height, width), np.float32)
    hits = np.empty((height, width), np.int16)
    band = max(1, BAND_PIXELS // width)
    for top in range(0, height, band):
        _render_band(quads, planes, rx, ry[top : top + band], top, rgb, depth, hits)
    return rgb, depth, hits


def render_quads(
    quads: Sequence[Quad], camera: Camera, background: tuple[int, int, int]
) -> tuple[RGBImage, DepthMap]:
    """RGB (H, W, 3) uint8 and depth (H, W) float32 of ``quads`` seen by ``camera``: per
    pixel, the nearest intersection of its ray with a quad, colour sampled bilinearly."""
    rgb, depth, _ = render_hits(quads, camera, background)
    return rgb, depth


def render(scene: Scene, camera: Camera) -> tuple[RGBImage, DepthMap]:
    """The image and depth map of ``scene`` from ``camera`` (depth 0 where nothing is hit)."""
    return render_quads(scene.quads, camera, scene.background)


@lru_cache(maxsize=len(SCENE_IDS) * VIEWS_PER_SCENE)
def render_view(scene_id: str, camera_name: str) -> tuple[RGBImage, DepthMap]:
    """:func:`render` of a demo scene's camera, kept for the builders that share views
    (images, overlaps, crops; about 100 MB for all of them); read-only."""
    scene = get_scene(scene_id)
    rgb, depth = render(scene, scene.camera(camera_name))
    rgb.setflags(write=False)
    depth.setflags(write=False)
    return rgb, depth


# --- carrying pixels between cameras --------------------------------------------------------


def unproject(
    camera: Camera, x: NDArray[np.float64], y: NDArray[np.float64], z: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """World coordinates of the points at image coordinates ``(x, y)`` with depth ``z``."""
    cam = ((x - camera.cx) / camera.fx * z, (y - camera.cy) / camera.fy * z, z)
    rt = transpose(camera.rotation)
    translation = camera.translation
    shifted = [cam[k] - translation[k] for k in range(3)]
    return tuple(  # type: ignore[return-value]
        rt[k][0] * shifted[0] + rt[k][1] * shifted[1] + rt[k][2] * shifted[2] for k in range(3)
    )


def project(
    camera: Camera, X: NDArray[np.float64], Y: NDArray[np.float64], Z: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Image coordinates ``(x, y)`` and depth of world points in ``camera`` (x, y are
    meaningless where the depth is not positive)."""
    rotation, translation = camera.rotation, camera.translation
    cam = [
        rotation[k][0] * X + rotation[k][1] * Y + rotation[k][2] * Z + translation[k]
        for k in range(3)
    ]
    with np.errstate(divide="ignore", invalid="ignore"):
        return (
            camera.fx * cam[0] / cam[2] + camera.cx,
            camera.fy * cam[1] / cam[2] + camera.cy,
            cam[2],
        )


def transfer(
    source: Camera,
    target: Camera,
    cols: NDArray[np.intp],
    rows: NDArray[np.intp],
    depth: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Where the centres of ``source``'s pixels (``rows``, ``cols``) with ``depth`` land in
    ``target``: image coordinates ``(x, y)`` and depth there."""
    x = cols.astype(np.float64) + 0.5
    y = rows.astype(np.float64) + 0.5
    return project(target, *unproject(source, x, y, depth.astype(np.float64)))


def visible(
    target_depth: DepthMap,
    x: NDArray[np.float64],
    y: NDArray[np.float64],
    z: NDArray[np.float64],
    tolerance: float = 0.02,
) -> NDArray[np.bool_]:
    """Which transferred points ``(x, y, z)`` the target camera sees: inside its image, in
    front of it, and within ``tolerance`` (relative) of its depth at that pixel."""
    height, width = target_depth.shape
    with np.errstate(invalid="ignore"):
        inside = (z > NEAR) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    cols = np.floor(np.where(inside, x, 0.0)).astype(np.intp)
    rows = np.floor(np.where(inside, y, 0.0)).astype(np.intp)
    seen = target_depth[rows, cols].astype(np.float64)
    with np.errstate(invalid="ignore"):
        return inside & (seen > 0) & (np.abs(seen - z) <= tolerance * seen)


def grid(camera: Camera, stride: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Rows and columns of every ``stride``-th pixel in each direction, centred in its cell."""
    rows = np.arange(stride // 2, camera.height, stride)
    cols = np.arange(stride // 2, camera.width, stride)
    row_grid, col_grid = np.meshgrid(rows, cols, indexing="ij")
    return row_grid.ravel(), col_grid.ravel()


def overlap(
    source: Camera,
    source_depth: DepthMap,
    target: Camera,
    target_depth: DepthMap,
    stride: int = 4,
) -> float:
    """The fraction of ``source``'s pixels with depth that ``target`` sees (depth-tested),
    over every ``stride``-th pixel; 0 when ``source`` has no depth at all."""
    rows, cols = grid(source, stride)
    z = source_depth[rows, cols]
    keep = z > 0
    if not keep.any():
        return 0.0
    x, y, zt = transfer(source, target, cols[keep], rows[keep], z[keep])
    return int(np.count_nonzero(visible(target_depth, x, y, zt))) / int(np.count_nonzero(keep))
