"""The real photographs the demo world is made of, read from installed packages.

Each photo has a stable name and comes back as an RGB ``uint8`` array of shape (H, W, 3);
the order of :data:`PHOTO_NAMES` is part of the demo world's definition (seeded choices
index into it), so append, never reorder.

Terms: scikit-image's photos are CC0 or public domain (see each loader's docstring there);
scikit-learn's china.jpg and flower.jpg are CC BY 2.0 (credit in its ``images/README.txt``);
matplotlib's grace_hopper.jpg is a US Navy photograph in the public domain. Only photos
whose terms allow redistribution belong here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
from numpy.typing import NDArray

RGBImage = NDArray[np.uint8]


def _skimage(name: str) -> Callable[[], RGBImage]:
    def load() -> RGBImage:
        import skimage.data

        return getattr(skimage.data, name)()

    return load


def _sklearn(filename: str) -> Callable[[], RGBImage]:
    def load() -> RGBImage:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    return load


def _matplotlib(filename: str) -> Callable[[], RGBImage]:
    def load() -> RGBImage:
        import matplotlib.cbook
        from PIL import Image

        with matplotlib.cbook.get_sample_data(filename) as stream, Image.open(stream) as image:
            return np.asarray(image.convert("RGB"))

    return load


_LOADERS: dict[str, Callable[[], RGBImage]] = {
    "astronaut": _skimage("astronaut"),
    "chelsea": _skimage("chelsea"),
    "coffee": _skimage("coffee"),
    "rocket": _skimage("rocket"),
    "hubble_deep_field": _skimage("hubble_deep_field"),
    "immunohistochemistry": _skimage("immunohistochemistry"),
    "retina": _skimage("retina"),
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
    "grace_hopper": _matplotlib("grace_hopper.jpg"),
}

PHOTO_NAMES: tuple[str, ...] = tuple(_LOADERS)


@dataclass(frozen=True)
class Photo:
    """One named photograph of the demo world."""

    name: str
    pixels: RGBImage


class MissingPhotoPackage(RuntimeError):
    """Raised when a package that ships demo photos is not installed."""


@cache
def load_photo(name: str) -> Photo:
    """The photo called ``name`` as RGB uint8 (H, W, 3); cached, callers must not modify it."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise KeyError(f"no demo photo called {name!r}; known: {', '.join(PHOTO_NAMES)}") from None
    try:
        pixels = np.ascontiguousarray(loader()[..., :3], dtype=np.uint8)
    except ModuleNotFoundError as error:
        raise MissingPhotoPackage(
            f"demo photo {name!r} needs the package {error.name!r}: "
            "install the demo extra with `pip install -e '.[demo]'`"
        ) from error
    pixels.setflags(write=False)
    return Photo(name, pixels)


def all_photos() -> list[Photo]:
    """Every demo photo, in :data:`PHOTO_NAMES` order."""
    return [load_photo(name) for name in PHOTO_NAMES]
