"""The names of the guide's transform pool, importable without the libraries that do them
(settings and ``--help`` need the names; only the workers need albumentations)."""

from __future__ import annotations

GUIDE_POOL: tuple[str, ...] = (
    "change_channel",
    "pad_square",
    "random_resized_crop",
    "rotate",
    "blend",
    "grayscale",
    "color_jitter",
    "blur",
    "pixelize",
    "pad",
    "noise",
    "vflip",
    "hflip",
    "jpeg",
    "stripes",
    "sharpen",
    "skew",
    "shuffle_pixels",
    "meme",
    "emoji",
    "text",
    "perspective",
    "overlay_onto",
    "stack",
)
"""The copy-detection guide's pool of 24 transforms, in its order."""

USES_OTHER_IMAGES = frozenset({"blend", "overlay_onto", "stack"})
"""The transforms that draw another image from the selection of other images."""
