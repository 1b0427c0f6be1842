"""The demo Flickr-CC release: 500 images and nested subset lists naming them by URL.

The real release (seed-formats.md section B) publishes ``flickr-<size>.tsv.gz`` lists whose
gzip'd lines are ``flickr_id <TAB> image_url <TAB> images/<b0>/<b1>/<b2>/<bucket>/<basename>``:
the crawl gives each image a bucket ``0000``-``9999`` drawn at random, ``b0 b1 b2`` are the
bucket's first three digits, and the basename is the last part of the image URL
(``<id>_<secret>.jpg`` on Flickr's servers). Every subset is a prefix of one shuffled list,
so a smaller subset is contained in every larger one.

Here the bucket draw is keyed by the Flickr id, so an id always lands in the same bucket, and
the images, made from the demo photos, lie under the same relative paths that the lists name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vcat.demo.imageops import jitter_colour, random_crop, resize_long_side
from vcat.demo.photos import PHOTO_NAMES, load_photo
from vcat.demo.publish import gzip_text, save_jpeg

SEED = 20040101
IMAGE_COUNT = 500
# subset name -> number of images; the names follow the release's flickr-0.1M, -0.2M, ...
SUBSETS: dict[str, int] = {"0.1k": 100, "0.2k": 200, "0.5k": 500}
BUCKETS = 10_000
LONG_SIDE = (160, 400)
# ids of Flickr photos uploaded 2004-2021 run up to about 5e10; item i draws from its own
# band of 1e8 ids, so ids are unique by construction
_FIRST_ID = 2_000_000_000
_ID_BAND = 100_000_000
# every generator is keyed [SEED, stream, item...], so no two draws share a stream
_IMAGE_STREAM = 0
_BUCKET_STREAM = 1
_LIST_STREAM = 2


def list_name(subset: str) -> str:
    """The file name of ``subset``'s list, e.g. ``flickr-0.1k.tsv.gz``."""
    return f"flickr-{subset}.tsv.gz"


def bucket_of(flickr_id: int) -> str:
    """The four-digit bucket folder of ``flickr_id``."""
    rng = np.random.default_rng([SEED, _BUCKET_STREAM, flickr_id])
    return f"{int(rng.integers(BUCKETS)):04d}"


def image_path(flickr_id: int, secret: str) -> str:
    """``images/<b0>/<b1>/<b2>/<bucket>/<id>_<secret>.jpg``, relative to the release root."""
    bucket = bucket_of(flickr_id)
    return f"images/{bucket[0]}/{bucket[1]}/{bucket[2]}/{bucket}/{flickr_id}_{secret}.jpg"


def _render(rng: np.random.Generator) -> np.ndarray:
    photo = load_photo(PHOTO_NAMES[int(rng.integers(len(PHOTO_NAMES)))]).pixels
    pixels = random_crop(rng, photo, area=(0.2, 1.0))
    pixels = resize_long_side(pixels, int(rng.integers(LONG_SIDE[0], LONG_SIDE[1] + 1)))
    if rng.random() < 0.5:
        pixels = pixels[:, ::-1]
    return jitter_colour(rng, np.ascontiguousarray(pixels), strength=0.12)


def _build_image(out: Path, index: int) -> tuple[int, str]:
    """Write image ``index`` under ``out``; return its Flickr id and relative path."""
    rng = np.random.default_rng([SEED, _IMAGE_STREAM, index])
    flickr_id = _FIRST_ID + index * _ID_BAND + int(rng.integers(_ID_BAND))
    secret = rng.bytes(5).hex()
    relative = image_path(flickr_id, secret)
    save_jpeg(out / relative, _render(rng), quality=int(rng.integers(85, 96)))
    return flickr_id, relative


def build_flickr(out: Path, url_prefix: str) -> None:
    """Write the images and the lists ``lists/flickr-{0.1k,0.2k,0.5k}.tsv.gz`` under ``out``.

    ``url_prefix`` is the URL of ``out`` itself (e.g. ``file:.vcat/demo-world/flickr/``); an
    image's URL is the prefix followed by its relative path.
    """
    items = [_build_image(out, index) for index in range(IMAGE_COUNT)]
    order = np.random.default_rng([SEED, _LIST_STREAM]).permutation(IMAGE_COUNT)
    lines = [
        f"{flickr_id}\t{url_prefix}{relative}\t{relative}\n"
        for flickr_id, relative in (items[i] for i in order)
    ]
    for subset, count in SUBSETS.items():
        gzip_text(out / "lists" / list_name(subset), "".join(lines[:count]))
