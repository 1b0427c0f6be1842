"""Images per second of the copy-detection training-set stage, measured in one run here.

    python bench/copydetect.py [--classes N] [--copies K] [--repeat R]

Creates, in a temporary folder, source photos like DISC21's training images (scikit-image's
photos resized to 640 x 480 and 1024 x 768, seeded noise so that no two are alike, JPEG
quality 90) and times, with the guide's pool (24 transforms, k uniform in 2..7):

- ``reference``: one transform pass as the guide's script runs it, in a plain loop on one
  core: decode the source, then for each copy draw k transforms, apply them, resize to 256,
  save a JPEG file at quality 100 (no records, no shards, no resume);
- ``stage, 1 process`` and ``stage, 2 processes``: ``vcat.copydetect.generate.fill`` into
  shards (records, retries, resume journal), over the same classes;
- per transform: milliseconds per call on a 640 x 480 image.

Prints images per second of wall time and per CPU second (user + system time of the bench
and its workers: a per-core figure that other load on the machine does not skew), the stage
against the reference, and the scaling from one process to two. OpenCV is held to one thread
so that one process is one core. Each timing is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from vcat.copydetect import pool
from vcat.copydetect.generate import Job, Limits, Recipe, every, fill, list_images
from vcat.copydetect.names import GUIDE_POOL
from vcat.copydetect.seeds import copy_rng


def make_sources(folder: Path, count: int) -> None:
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket"]
    photos = [np.asarray(getattr(data, name)())[..., :3] for name in names]
    rng = np.random.default_rng(3)
    folder.mkdir(parents=True)
    for index in range(count):
        size = (1024, 768) if index % 3 == 0 else (640, 480)
        base = Image.fromarray(photos[index % len(photos)]).convert("RGB").resize(size)
        noise = rng.integers(-5, 6, (size[1], size[0], 3))
        pixels = np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"T{index:06d}.jpg", quality=90)


def reference(job: Job, classes: int, out: Path) -> int:
    """The guide's loop: every image written as a file; returns the number of images."""
    recipe = job.recipe
    from vcat.copydetect.generate import _context

    context = _context(job)
    written = 0
    for cls in range(classes):
        with Image.open(job.sources[cls].path) as source:
            picture = source.convert("RGB")
        picture.resize((256, 256)).save(out / f"{cls}_0.jpg", quality=100)
        original = np.asarray(picture)
        for copy in range(1, recipe.copies + 1):
            rng = copy_rng(recipe.seed, cls, copy, 0)
            count = int(rng.integers(recipe.k_min, recipe.k_max + 1))
            chosen = rng.choice(len(recipe.transforms), count, replace=False)
            image = original
            for index in chosen:
                try:
                    image = pool.apply(recipe.transforms[int(index)], image, rng, context)
                except Exception:  # the guide's script would stop; the bench goes on
                    continue
            out_image = Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR)
            out_image.save(out / f"{cls}_{copy}.jpg", quality=100)
        written += recipe.copies + 1
    return written


def cpu_seconds() -> float:
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def best(work, repeat: int) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """The shortest wall time of ``repeat`` runs of ``work``, and the least CPU time."""
    walls, cpus = [], []
    for _ in range(repeat):
        start, cpu = time.perf_counter(), cpu_seconds()
        work()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_seconds() - cpu)
    return min(walls), min(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--copies", type=int, default=19)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    root = Path(tempfile.mkdtemp(prefix="bench-copydetect-"))
    try:
        make_sources(root / "images", 2 * args.classes)
        images = list_images(root / "images")
        recipe = Recipe(copies=args.copies, transforms=GUIDE_POOL)
        job = Job(every(images, 2, 0), every(images, 2, 1), recipe)
        count = args.classes * (args.copies + 1)

        def reference_run() -> None:
            out = root / "reference"
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            reference(job, args.classes, out)

        def stage_run(jobs: int) -> None:
            out = root / f"stage-{jobs}"
            shutil.rmtree(out, ignore_errors=True)
            fill(
                job,
                out,
                range(args.classes),
                jobs=jobs,
                limits=Limits(10_000, 1 << 30),
                allowed_failures=args.classes,
            )

        reference_run()  # warm: imports, caches, page cache
        seconds = {
            "reference (loop, files, 1 core)": best(reference_run, args.repeat),
            "stage, 1 process": best(lambda: stage_run(1), args.repeat),
            "stage, 2 processes": best(lambda: stage_run(2), args.repeat),
        }
        print(f"{args.classes} classes x {args.copies + 1} = {count} images; 24 transforms, k 2..7")
        print(f"cores: {os.cpu_count()}")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        for name, (wall, cpu) in seconds.items():
            print(
                f"{name:34s} {wall:7.2f} s {count / wall:7.1f} images/s  "
                f"{count / cpu:7.1f} images per CPU second"
            )
        one, two = seconds["stage, 1 process"][0], seconds["stage, 2 processes"][0]
        ref = seconds["reference (loop, files, 1 core)"][0]
        print(f"stage (1 process) / reference: {ref / one:.2f}x the reference's images/s")
        print(f"scaling 1 -> 2 processes: {one / two:.2f}x")
        bytes_out = sum(p.stat().st_size for p in (root / "stage-1").glob("shard-*.tar"))
        print(f"output: {bytes_out / count / 1024:.1f} KiB per image in shards")

        with Image.open(images[1].path) as source:
            photo = np.asarray(source.convert("RGB"))
        other = photo[::-1].copy()
        context = pool.Context(256, lambda rng: other)
        print("per transform, ms per call on 640 x 480 (best of 5):")
        rows = []
        for name in GUIDE_POOL:
            calls = [copy_rng(0, 0, 0, attempt) for attempt in range(5)]
            timing = []
            for rng in calls:
                start = time.perf_counter()
                pool.apply(name, photo, rng, context)
                timing.append(time.perf_counter() - start)
            rows.append((min(timing) * 1000, name))
        for milliseconds, name in sorted(rows, reverse=True):
            print(f"  {name:20s} {milliseconds:6.1f}")
        buffer = io.BytesIO()
        start = time.perf_counter()
        for _ in range(20):
            buffer.seek(0)
            Image.fromarray(photo[:256, :256]).save(buffer, format="JPEG", quality=100)
        print(f"  {'(jpeg q100 256x256)':20s} {(time.perf_counter() - start) / 20 * 1000:6.1f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
