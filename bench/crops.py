"""The croco-crops stage against CroCo's own way of cutting pairs, measured in one run.

    python bench/crops.py [--quick] [--jobs 1 2] [--sides 224 512] [--reduced] [--repeat N]

Creates, in a temporary folder, a MegaDepth-like tree of 1600 x 1200 JPEG photos (scikit-image's
photos, cropped, resized and given seeded noise so that no two files are alike; 8 scenes of 30,
--quick: 4 of 15) and a crop list shaped like the released ones: consecutive headers pair an
image with the next four of its scene, each header with 1 to 5 crop lines (3 on average) whose
squares have sides drawn uniformly from --sides (so both of CroCo's filters are used), crop 2
turned now and then. Then, for each number of processes in --jobs, times:

- ``reference``: CroCo's extraction written again here from its script, per pair header:
  open and convert both images, then for each crop line crop, resize, turn crop 2 and save
  ``<stem>_1.jpg``/``<stem>_2.jpg`` into a folder tree, headers spread over a
  ``multiprocessing.Pool`` of that many processes (``map`` for one, as CroCo does), and the
  listing written as results come;
- ``stage``: ``stages.croco_crops.main`` with ``jobs`` processes, into shards;

and checks that every pair's two JPEGs are byte-identical in both. It prints pairs/s, the ratio,
the scaling from the first to the last --jobs, and the reuse factor: crops cut per image decoded
by each (the list's own bound, crops per distinct image, is printed too). Each rate is the best
of --repeat runs, reference and stage taking turns, since other load on a shared machine comes
and goes. --reduced adds a run with ``reduced_decode`` and how much its pixels differ from
CroCo's.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.croco_crops import main as run_stage
from vcat.shards import ShardReader

WIDTH, HEIGHT = 1600, 1200
PARTNERS = 4  # headers per image 1: the next images of its scene
ROTATIONS = (0, 10, -25, 90, 0, 180, -5, 270, 0, 30)


def photos() -> list[np.ndarray]:
    from skimage import data

    names = ["astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "retina"]
    return [np.asarray(getattr(data, name)())[..., :3] for name in names]


def make_tree(root: Path, scenes: int, per_scene: int) -> list[str]:
    rng = np.random.default_rng(2023)
    sources = photos()
    names = []
    for scene in range(scenes):
        for index in range(per_scene):
            source = sources[(scene * per_scene + index) % len(sources)]
            height, width = source.shape[:2]
            top, left = int(rng.integers(0, height // 5)), int(rng.integers(0, width // 5))
            part = source[top : top + 4 * height // 5, left : left + 4 * width // 5]
            base = Image.fromarray(part).resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
            noise = rng.integers(-6, 7, (HEIGHT, WIDTH, 3))
            pixels = np.clip(np.asarray(base, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
            name = f"{9000 + scene:04d}/images/{index:05d}_bench.jpg"
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(root / name, quality=90)
            names.append(name)
    return names


def make_list(path: Path, names: list[str], per_scene: int, sides: tuple[int, int]) -> None:
    rng = np.random.default_rng(7)
    lines = ["# bench crop list: img1, img2, rotation / l1, r1, t1, b1, l2, r2, t2, b2"]
    turn = 0
    for start in range(0, len(names), per_scene):
        scene = names[start : start + per_scene]
        for first in range(len(scene)):
            for second in range(first + 1, min(first + 1 + PARTNERS, len(scene))):
                lines.append(f"{scene[first]}, {scene[second]}, {ROTATIONS[turn % 10]}")
                turn += 1
                for _ in range(int(rng.integers(1, 6))):
                    values = []
                    for _box in range(2):
                        side = int(rng.integers(sides[0], sides[1] + 1))
                        left = int(rng.integers(0, WIDTH - side + 1))
                        top = int(rng.integers(0, HEIGHT - side + 1))
                        values += [left, left + side, top, top + side]
                    lines.append(", ".join(map(str, values)))
    path.write_text("\n".join(lines) + "\n")


# --- the reference: CroCo's per-header loop --------------------------------------------------

_TURNS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def reference_jobs(crops: Path) -> list[tuple[str, str, int, list[list[int]], list[str]]]:
    """CroCo's load_crop_file and prepare_jobs: headers with their crops and stems."""
    headers: list[tuple[str, str, int, list[list[int]]]] = []
    for line in crops.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split(", ")
        if len(fields) < 8:
            headers.append((fields[0], fields[1], int(fields[2]), []))
        else:
            headers[-1][3].append([int(value) for value in fields])
    total = sum(len(header[3]) for header in headers)
    levels = min(math.ceil(math.log(total, 500)), 5)
    per_dir = math.ceil(total ** (1 / levels))

    def stem(index: int) -> str:
        parts, rest = [], index
        for level in range(levels - 1, 0, -1):
            parts.append(rest // per_dir**level)
            rest %= per_dir**level
        return "/".join(format(value, "x") for value in [*parts, index])

    jobs, index = [], 0
    for image1, image2, rotation, lines in headers:
        if -60 <= rotation <= 60:
            rotation = 0
        jobs.append((image1, image2, rotation, lines, [stem(index + k) for k in range(len(lines))]))
        index += len(lines)
    return jobs


def _cut(image: Image.Image, box: tuple[int, int, int, int], imsize: int, rot: int) -> Image.Image:
    image = image.crop(box)
    big = image.size[0] * image.size[1] > 4 * imsize * imsize
    image = image.resize(
        (imsize, imsize),
        resample=Image.Resampling.LANCZOS if big else Image.Resampling.BICUBIC,
    )
    turn = (round(rot / 90) % 4) * 90
    return image.transpose(_TURNS[turn]) if turn else image


def reference_header(job: tuple[str, str, int, list[list[int]], list[str], str, str]) -> list[str]:
    image1, image2, rotation, lines, stems, root, out = job
    first = Image.open(os.path.join(root, image1)).convert("RGB")
    second = Image.open(os.path.join(root, image2)).convert("RGB")
    for (l1, r1, t1, b1, l2, r2, t2, b2), stem in zip(lines, stems, strict=True):
        path = os.path.join(out, stem)
        os.makedirs(os.path.dirname(path) or out, exist_ok=True)
        _cut(first, (l1, t1, r1, b1), 256, 0).save(path + "_1.jpg")
        _cut(second, (l2, t2, r2, b2), 256, rotation).save(path + "_2.jpg")
    return stems


def run_reference(crops: Path, root: Path, out: Path, jobs: int) -> int:
    work = [(*job, str(root), str(out)) for job in reference_jobs(crops)]
    out.mkdir(parents=True)
    pool = Pool(jobs) if jobs > 1 else None
    mapper = pool.imap_unordered if pool is not None else map
    count = 0
    with (out / "listing.txt").open("w") as listing:
        listing.write("# pair_path\n")
        for stems in mapper(reference_header, work):
            for stem in stems:
                listing.write(f"{stem}\n")
                count += 1
    if pool is not None:
        pool.close()
        pool.join()
    return count


# --- measuring ------------------------------------------------------------------------------


def timed(work: Callable[..., object], *args: object, **kwargs: object) -> tuple[float, float]:
    """Wall-clock seconds, and CPU seconds of this process (all of the work when it runs on
    one process: a figure that other load on the machine does not change)."""
    start, cpu = time.perf_counter(), time.process_time()
    work(*args, **kwargs)
    return time.perf_counter() - start, time.process_time() - cpu


def same_bytes(shards: Path, tree: Path) -> int:
    with ShardReader(shards) as reader:
        keys = reader.keys()
        for key in keys:
            sample = reader.read(key)
            for member, suffix in (("1.jpg", "_1.jpg"), ("2.jpg", "_2.jpg")):
                if sample[member] != (tree / f"{key}{suffix}").read_bytes():
                    raise SystemExit(f"pair {key} differs ({member}): the bench failed")
    return len(keys)


def pixel_difference(exact: Path, reduced: Path) -> tuple[float, int, float]:
    """Mean and largest absolute difference in grey levels, and PSNR in dB."""
    total = 0.0
    count = 0
    largest = 0
    squared = 0.0
    with ShardReader(exact) as first, ShardReader(reduced) as second:
        keys = first.keys()
        for key in keys:
            for member in ("1.jpg", "2.jpg"):
                a = np.asarray(Image.open(io.BytesIO(first.read_member(key, member))), np.int16)
                b = np.asarray(Image.open(io.BytesIO(second.read_member(key, member))), np.int16)
                difference = np.abs(a - b)
                total += float(difference.sum())
                squared += float((difference.astype(np.float64) ** 2).sum())
                count += difference.size
                largest = max(largest, int(difference.max()))
    mse = squared / count
    return total / count, largest, 10 * math.log10(255**2 / mse) if mse else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 scenes of 15 photos")
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sides", type=int, nargs=2, default=[224, 512], metavar=("MIN", "MAX"))
    parser.add_argument("--reduced", action="store_true", help="also time reduced_decode")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs of each")
    args = parser.parse_args()
    scenes, per_scene = (4, 15) if args.quick else (8, 30)
    with tempfile.TemporaryDirectory(prefix="bench-crops-") as folder:
        work = Path(folder)
        names = make_tree(work / "root", scenes, per_scene)
        crops = work / "crops_release.txt"
        make_list(crops, names, per_scene, tuple(args.sides))
        headers = sum(1 for line in crops.read_text().splitlines() if line.count(", ") == 2)
        pairs = sum(1 for line in crops.read_text().splitlines() if line.count(", ") == 7)
        print(
            f"{len(names)} photos {WIDTH}x{HEIGHT}, {headers} pair headers, {pairs} pairs, "
            f"crop sides {args.sides[0]}-{args.sides[1]}, imsize 256, {os.cpu_count()} cores"
        )
        print(f"list: {2 * pairs / len(names):.1f} crops per distinct image (the bound)")
        rates: dict[str, dict[int, float]] = {"reference": {}, "stage": {}}
        cpu: dict[str, float] = {}
        reuse = 0.0
        for jobs in args.jobs:
            for attempt in range(args.repeat):  # best of, taking turns: load comes and goes
                reference = work / f"reference-{jobs}"
                seconds, reference_cpu = timed(run_reference, crops, work / "root", reference, jobs)
                reference_rate = pairs / seconds
                rates["reference"][jobs] = max(rates["reference"].get(jobs, 0.0), reference_rate)
                output = work / f"stage-{jobs}"
                shutil.rmtree(output, ignore_errors=True)
                metrics = work / f"metrics-{jobs}.json"
                seconds, stage_cpu = timed(
                    run_stage, {"jobs": jobs}, crops, work / "root", output, metrics=metrics
                )
                stage_rate = pairs / seconds
                rates["stage"][jobs] = max(rates["stage"].get(jobs, 0.0), stage_rate)
                if jobs == 1:
                    cpu["reference"] = min(cpu.get("reference", math.inf), reference_cpu)
                    cpu["stage"] = min(cpu.get("stage", math.inf), stage_cpu)
                reuse = json.loads(metrics.read_text())["reuse_factor"]
                checked = same_bytes(output, reference)
                shutil.rmtree(reference)
                print(
                    f"  jobs {jobs}, run {attempt + 1}: reference {reference_rate:.1f} pairs/s, "
                    f"stage {stage_rate:.1f} pairs/s, {checked} pairs byte-identical",
                    file=sys.stderr,
                )
            print(
                f"jobs {jobs}: reference {rates['reference'][jobs]:6.1f} pairs/s, stage "
                f"{rates['stage'][jobs]:6.1f} pairs/s, ratio "
                f"{rates['stage'][jobs] / rates['reference'][jobs]:.2f}x; "
                f"{checked} pairs byte-identical"
            )
            if jobs == 1:
                print(
                    f"jobs 1, CPU time: reference {1000 * cpu['reference'] / pairs:.1f} ms/pair, "
                    f"stage {1000 * cpu['stage'] / pairs:.1f} ms/pair, ratio "
                    f"{cpu['reference'] / cpu['stage']:.2f}x"
                )
        print(f"crops per decoded image: reference {pairs / headers:.1f}, stage {reuse:.1f}")
        low, high = args.jobs[0], args.jobs[-1]
        if high != low:
            for name, rate in rates.items():
                print(f"{name}: {low} -> {high} processes: {rate[high] / rate[low]:.2f}x")
        if args.reduced:
            jobs = args.jobs[-1]
            output = work / "reduced"
            conf = {"jobs": jobs, "reduced_decode": True}
            seconds, _ = timed(run_stage, conf, crops, work / "root", output)
            mean, largest, psnr = pixel_difference(work / f"stage-{jobs}", output)
            print(
                f"reduced_decode, jobs {jobs}: {pairs / seconds:6.1f} pairs/s "
                f"({pairs / seconds / rates['stage'][jobs]:.2f}x the exact stage); pixels differ "
                f"by {mean:.2f} grey levels on average, at most {largest}, PSNR {psnr:.1f} dB"
            )


if __name__ == "__main__":
    main()
