"""What an image gate costs: profiling shards against decoding them once, measured in one run.

    python bench/gates.py [--count 10000] [--repeat 1] [--tools-count N] [--no-tools]

Makes ``--count`` demo-sized JPEGs (short side 256-350 px, quality 75, as the flickr-images
stage writes them: crops and rescales of scikit-image's photos, seeded per image) into
WebDataset shards of 200 with :class:`vcat.shards.ShardWriter` in a temporary folder, then
times, in images/s, on one process and on one per core:

- the reference: every image decoded once with Pillow (``Image.open(BytesIO).load()``), read
  from the shards as the profiler reads them (one shard per task);
- vcat's profiler: :func:`vcat.gates.kinds.images.tables` (decode drafted to 1/8, grey mean
  and spread, sizes, channels, each shard's MD5);
- great-expectations validating the resulting table with the images kind's default checks
  (:func:`vcat.gates.validate.run_suite`), without and with Data Docs, and GX's import time
  in a fresh interpreter: these are fixed costs per gate, reported apart;
- CleanVision 0.3.7 (dark, light, blurry, low_information, odd_size, exact and near
  duplicates) and imagededup's PHash, on the first ``--tools-count`` images unpacked to a
  folder (a row says how to install a tool that is missing, and is skipped).

Each row gives images/s (wall clock) and CPU milliseconds per image (this process and its
worker processes), each also as a ratio to the Pillow decode on as many cores: on a machine
shared with other work the CPU figure is the steadier one. Timings are the best of
``--repeat`` runs, the reference and vcat taking turns. Everything is read from the page
cache (the shards were just written). The target: the profiler on
2 cores at least 0.8x of the Pillow decode on 2 cores.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from vcat.gates.checks import declare
from vcat.gates.kinds import images
from vcat.gates.profile import Profile
from vcat.shards import INDEX_NAME, ShardIndex, ShardWriter, unpack_shards

SEED = 12
SHARD_COUNT = 200  # samples per shard, as the demo's flickr-images
QUALITY = 75
SHORT_SIDES = (256, 350)
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "camera", "cat")
TARGET = 0.8
INSTALL = {
    "CleanVision": "pip install cleanvision==0.3.7",
    "imagededup": "pip install imagededup",
}
CLEANVISION_ISSUES = (
    "dark",
    "light",
    "blurry",
    "low_information",
    "odd_size",
    "exact_duplicates",
    "near_duplicates",
)


@dataclass(frozen=True)
class Timing:
    wall: float  # seconds
    cpu: float  # CPU seconds of this process and the worker processes it waited for


@dataclass
class Row:
    what: str
    cores: int
    timing: Timing | None
    count: int
    note: str = ""

    @property
    def rate(self) -> float | None:
        return None if self.timing is None else self.count / self.timing.wall

    @property
    def cpu_ms(self) -> float | None:
        return None if self.timing is None else self.timing.cpu / self.count * 1e3


# ---- the images ----------------------------------------------------------------------------

_sources: list[np.ndarray] = []


def _load_sources() -> list[np.ndarray]:
    if not _sources:
        from skimage import data

        for name in PHOTOS:
            pixels = np.asarray(getattr(data, name)())
            _sources.append(pixels if pixels.ndim == 2 else pixels[..., :3])
    return _sources


def demo_jpeg(index: int) -> bytes:
    """Image ``index``: a seeded crop of one of the photos, rescaled to a short side of
    256-350 px, as a JPEG."""
    rng = np.random.default_rng((SEED, index))
    sources = _load_sources()
    pixels = sources[int(rng.integers(len(sources)))]
    height, width = pixels.shape[:2]
    crop_h = int(rng.integers(height // 2, height + 1))
    crop_w = int(rng.integers(width // 2, width + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    crop = Image.fromarray(pixels[top : top + crop_h, left : left + crop_w])
    short = int(rng.integers(SHORT_SIDES[0], SHORT_SIDES[1] + 1))
    scale = short / min(crop_h, crop_w)
    size = (max(short, round(crop_w * scale)), max(short, round(crop_h * scale)))
    buffer = io.BytesIO()
    crop.resize(size, Image.Resampling.BILINEAR).save(buffer, "JPEG", quality=QUALITY)
    return buffer.getvalue()


def write_shards(folder: Path, count: int, workers: int) -> None:
    context = multiprocessing.get_context("fork")
    with (
        ProcessPoolExecutor(workers, mp_context=context) as pool,
        ShardWriter(folder, max_count=SHARD_COUNT) as writer,
    ):
        for index, data in enumerate(pool.map(demo_jpeg, range(count), chunksize=64)):
            writer.add(f"img-{index:06d}", {"jpg": data})


# ---- the reference: one Pillow decode per image ----------------------------------------------


def _decode_shard(task: tuple[str, list[tuple[int, int]]]) -> int:
    path, members = task
    descriptor = os.open(path, os.O_RDONLY)
    try:
        for offset, size in members:
            with Image.open(io.BytesIO(os.pread(descriptor, size, offset))) as image:
                image.load()
    finally:
        os.close(descriptor)
    return len(members)


def decode_tasks(folder: Path) -> list[tuple[str, list[tuple[int, int]]]]:
    index = ShardIndex.load(folder / INDEX_NAME)
    members: list[list[tuple[int, int]]] = [[] for _ in index.shards]
    for location in index.samples.values():
        members[location.shard].extend(location.members.values())
    return [(str(folder / shard.name), members[n]) for n, shard in enumerate(index.shards)]


def pillow_decode(folder: Path, workers: int) -> int:
    tasks = decode_tasks(folder)
    if workers == 1:
        return sum(map(_decode_shard, tasks))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        return sum(pool.map(_decode_shard, tasks))


# ---- timing --------------------------------------------------------------------------------


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function: Callable[[], object]) -> Timing:
    """Wall and CPU time of ``function()``; CPU time counts worker processes once they have
    been waited for (a pool closed before ``function`` returns), so it is the figure that
    other programs on the machine disturb least."""
    cpu = _cpu_seconds()
    start = time.perf_counter()
    function()
    wall = time.perf_counter() - start
    return Timing(wall, _cpu_seconds() - cpu)


def best_in_turns(functions: list[Callable[[], object]], repeat: int) -> list[Timing]:
    """The best wall and CPU time of each function over ``repeat`` rounds, the functions
    taking turns."""
    times: list[list[Timing]] = [[] for _ in functions]
    for _ in range(repeat):
        for function, found in zip(functions, times, strict=True):
            found.append(timed(function))
    return [Timing(min(t.wall for t in found), min(t.cpu for t in found)) for found in times]


def profiling_rows(folder: Path, count: int, cores: list[int], repeat: int) -> list[Row]:
    import pandas  # noqa: F401  (the profiler's first call would time its import)

    rows = []
    for workers in cores:
        reference = partial(pillow_decode, folder, workers)
        profiler = partial(images.tables, folder, workers)
        decode, profile = best_in_turns([reference, profiler], repeat)
        rows.append(Row("Pillow decode (reference)", workers, decode, count))
        rows.append(Row("vcat profiler (images.tables)", workers, profile, count))
    return rows


def gx_import_seconds() -> float:
    code = (
        "import time; start = time.perf_counter(); import great_expectations; "
        "print(time.perf_counter() - start)"
    )
    environment = {**os.environ, "GX_ANALYTICS_ENABLED": "false"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=environment
    )
    return float(done.stdout.strip().splitlines()[-1])


def validation_rows(folder: Path, count: int, scratch: Path) -> tuple[list[Row], float]:
    from vcat.gates.validate import run_suite

    found = images.tables(folder, None)
    profile = Profile(images.KIND, folder, found, {})
    declared = declare(images.CHECKS, [])
    import_seconds = gx_import_seconds()
    start = time.perf_counter()
    import great_expectations  # noqa: F401  (the first import in this process, timed apart)

    in_process = time.perf_counter() - start
    first = timed(partial(run_suite, "bench", profile, declared, None))
    again = timed(partial(run_suite, "bench", profile, declared, None))
    docs = timed(partial(run_suite, "bench", profile, declared, scratch / "docs"))
    rows = [
        Row("GX validation, first in the process", 1, first, count),
        Row("GX validation, again", 1, again, count),
        Row("GX validation with Data Docs", 1, docs, count),
    ]
    note = f"great_expectations import: {import_seconds:.2f} s in a fresh interpreter"
    print(f"{note} ({in_process:.2f} s here, after pandas and vcat were imported)")
    return rows, import_seconds


# ---- other tools ---------------------------------------------------------------------------


def _missing(tool: str, module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        print(f"{tool} is not installed, its rows are skipped: {INSTALL[tool]}")
        return True
    return False


def cleanvision_rows(folder: Path, count: int, cores: list[int]) -> Iterator[Row]:
    if _missing("CleanVision", "cleanvision"):
        yield Row("CleanVision 0.3.7 find_issues", 1, None, count, INSTALL["CleanVision"])
        return
    from cleanvision import Imagelab

    issues = {issue: {} for issue in CLEANVISION_ISSUES}
    for workers in cores:
        lab = Imagelab(data_path=str(folder), verbose=False)
        timing = timed(partial(lab.find_issues, issues, n_jobs=workers, verbose=False))
        flagged = int(lab.issue_summary["num_images"].sum())
        yield Row("CleanVision 0.3.7 find_issues", workers, timing, count, f"{flagged} flagged")


def imagededup_rows(folder: Path, count: int, cores: list[int]) -> Iterator[Row]:
    if _missing("imagededup", "imagededup"):
        yield Row("imagededup PHash encode_images", 1, None, count, INSTALL["imagededup"])
        return
    import logging

    from imagededup.methods import PHash

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("imagededup"):  # each of its modules logs at INFO on its own
            logging.getLogger(name).setLevel(logging.WARNING)
    for workers in cores:
        hasher = PHash(verbose=False)
        # imagededup's 0 is its own single process (no pool)
        jobs = 0 if workers == 1 else workers
        timing = timed(partial(hasher.encode_images, str(folder), num_enc_workers=jobs))
        yield Row("imagededup PHash encode_images", workers, timing, count)


def unpack_first(folder: Path, count: int, scratch: Path) -> Path:
    """The first ``count`` images of ``folder`` as files in a flat folder."""
    subset = scratch / "subset-shards"
    with ShardWriter(subset, max_count=SHARD_COUNT) as writer:
        index = ShardIndex.load(folder / INDEX_NAME)
        for key in list(index.samples)[:count]:
            writer.add(key, {"jpg": _read(folder, index, key)})
    files = scratch / "files"
    unpack_shards(subset, files)
    return files


def _read(folder: Path, index: ShardIndex, key: str) -> bytes:
    location = index.samples[key]
    offset, size = location.members["jpg"]
    with open(folder / index.shards[location.shard].name, "rb") as shard:
        shard.seek(offset)
        return shard.read(size)


# ---- the report ----------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    """images/s and CPU ms per image, each with its ratio to the Pillow decode (higher is
    faster) at the same number of cores."""
    reference = {row.cores: row for row in rows if row.what.startswith("Pillow")}
    print(
        f"\n{'':40} {'cores':>5} {'images':>7} {'seconds':>8} {'images/s':>9} {'vs decode':>9}"
        f" {'CPU ms/image':>12} {'vs decode':>9}"
    )
    for row in rows:
        if row.timing is None:
            print(f"{row.what:40} {row.cores:>5} {'skipped':>7}  {row.note}")
            continue
        base = reference.get(row.cores)
        wall = cpu = ""
        if base is not None and base.rate and base.cpu_ms:
            wall = f"{row.rate / base.rate:.2f}x"
            cpu = f"{base.cpu_ms / row.cpu_ms:.2f}x" if row.cpu_ms else ""
        print(
            f"{row.what:40} {row.cores:>5} {row.count:>7,} {row.timing.wall:8.2f} "
            f"{row.rate:9.0f} {wall:>9} {row.cpu_ms:12.3f} {cpu:>9}  {row.note}"
        )


def verdict(rows: list[Row], cores: int) -> str:
    found = {row.what: row for row in rows if row.cores == cores}
    ours, reference = found["vcat profiler (images.tables)"], found["Pillow decode (reference)"]
    assert ours.rate and reference.rate and ours.cpu_ms and reference.cpu_ms
    ratio = ours.rate / reference.rate
    met = "met" if ratio >= TARGET else "NOT met"
    return (
        f"target (profiling >= {TARGET}x of one Pillow decode on {cores} cores): {ratio:.2f}x "
        f"in images/s, {met} ({reference.cpu_ms / ours.cpu_ms:.2f}x in CPU time per image)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000, help="images to make")
    parser.add_argument("--repeat", type=int, default=1, help="best of this many runs")
    parser.add_argument(
        "--tools-count", type=int, default=None, help="images given to CleanVision and imagededup"
    )
    parser.add_argument("--no-tools", action="store_true", help="skip CleanVision, imagededup")
    arguments = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # CleanVision's and imagededup's progress bars
    all_cores = len(os.sched_getaffinity(0))
    cores = sorted({1, all_cores})
    print(f"{all_cores} cores here (shared with whatever else runs: figures vary run to run)")
    with tempfile.TemporaryDirectory(prefix="vcat-bench-gates-") as scratch_name:
        scratch = Path(scratch_name)
        folder = scratch / "shards"
        made = timed(partial(write_shards, folder, arguments.count, all_cores)).wall
        total = sum(path.stat().st_size for path in folder.glob("shard-*.tar"))
        print(
            f"made {arguments.count:,} JPEGs ({total / arguments.count / 1024:.1f} KiB each) "
            f"into {folder} in {made:.1f} s"
        )
        rows = profiling_rows(folder, arguments.count, cores, arguments.repeat)
        validation, _ = validation_rows(folder, arguments.count, scratch)
        rows.extend(validation)
        if not arguments.no_tools:
            tools_count = min(arguments.tools_count or arguments.count, arguments.count)
            files = unpack_first(folder, tools_count, scratch)
            rows.extend(cleanvision_rows(files, tools_count, cores))
            rows.extend(imagededup_rows(files, tools_count, cores))
        print_table(rows)
        print(verdict(rows, 2 if 2 in cores else all_cores))


if __name__ == "__main__":
    main()
