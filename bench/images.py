"""The cost of decoding every image where images enter, measured in one run on this machine.

    python bench/images.py [--quick] [--repeat N]

Creates, in a temporary folder, a tree of real photos (scikit-image's and scikit-learn's,
resized to 1024 x 768 and 1600 x 1200 with seeded noise so that no two files are alike) as
JPEG (quality 90) and PNG: 300 JPEGs and 30 PNGs (--quick: 60 and 6). Then times, on one core:

- ``header``: ``Image.open`` and ``.size``, what dataset-stats read before it decoded images
  (the reference);
- ``check``: :func:`vcat.images.check_image_file`, what dataset-stats and flickr-images run
  now (JPEG decoded at 1/8 scale, other formats fully, after reading the file);
- ``full``: ``Image.open`` and ``.load()`` at full scale, for comparison;
- ``md5``: hashing the same bytes, the cost of having read them once.

and the whole ``walk_tree`` of vcat.stats over the tree, on one thread and on one per core.
Every file is read once before timing (the page cache cannot be dropped here): the figures
compare decoding, not disks. Each timing is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from vcat.images import check_image_file
from vcat.stats import walk_tree


def photos() -> list[np.ndarray]:
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"]
    return [np.asarray(getattr(data, name)())[..., :3] for name in names]


def make_tree(root: Path, jpegs: int, pngs: int) -> list[Path]:
    rng = np.random.default_rng(11)
    sources = photos()
    paths = []
    for index in range(jpegs + pngs):
        size = (1600, 1200) if index % 3 == 0 else (1024, 768)
        base = Image.fromarray(sources[index % len(sources)]).resize(size)
        noise = rng.integers(-6, 7, (size[1], size[0], 3))
        pixels = np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        is_png = index >= jpegs
        path = root / f"{index // 100:02d}" / f"{index:05d}.{'png' if is_png else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


def header(path: Path) -> None:
    with Image.open(path) as image:
        image.size  # noqa: B018 (what the old walk read)


def full(path: Path) -> None:
    with Image.open(path) as image:
        image.load()


def md5(path: Path) -> None:
    hashlib.md5(path.read_bytes()).hexdigest()


def best(work: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 JPEGs and 6 PNGs")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    jpegs, pngs = (60, 6) if args.quick else (300, 30)
    root = Path(tempfile.mkdtemp(prefix="vcat-bench-images-"))
    try:
        paths = make_tree(root, jpegs, pngs)
        for path in paths:
            path.read_bytes()
        megabytes = sum(path.stat().st_size for path in paths) / 1e6
        print(f"{jpegs} JPEG + {pngs} PNG, {megabytes:.1f} MB, best of {args.repeat}")
        groups = {"jpg": [p for p in paths if p.suffix == ".jpg"], "png": paths[jpegs:]}
        for kind, group in groups.items():
            timed = {
                name: best(lambda f=f, g=group: [f(p) for p in g], args.repeat)
                for name, f in [
                    ("header", header),
                    ("check", check_image_file),
                    ("full", full),
                    ("md5", md5),
                ]
            }
            reference = timed["header"]
            for name, seconds in timed.items():
                print(
                    f"  {kind} {name:7s} {seconds * 1000 / len(group):7.2f} ms/image  "
                    f"{len(group) / seconds:8.1f} images/s  {seconds / reference:6.1f}x header"
                )
        cores = os.cpu_count() or 1
        for jobs in sorted({1, cores}):
            walked = best(lambda jobs=jobs: walk_tree(root, jobs=jobs), args.repeat)
            print(f"  walk_tree (vcat.stats), {jobs} thread(s): {len(paths) / walked:.1f} images/s")
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
