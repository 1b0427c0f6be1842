"""Manifest hashing against GNU md5sum, measured in one run on this machine.

    python bench/verify.py [--quick] [--repeat N]

Creates, in a temporary folder, large files (8 x 128 MiB; --quick: 4 x 32 MiB) and many small
ones (20,000 of 60-140 KB; --quick: 2,000) from a seeded generator, then times over each set:

- ``md5sum``: one process at a time, the file list passed as arguments in chunks (as xargs);
- ``build_manifest(workers=1)``: the whole manifest build (walk, hash, write) on one core;
- ``build_manifest(workers=<cores>)``: the same on every core;
- ``check_manifest`` (what ``vcat verify NAME --manifest M`` runs) on one core and on every
  core, against the manifest just built.

The "vs md5sum" column is md5sum's time divided by ours: above 1x we are faster.

The page cache cannot be dropped here, so every file is read once before timing and all
runs read from memory: the figures compare hashing and per-file overhead, not disks. Each
timing is the best of --repeat runs. The digests are checked against md5sum's. Starting the
worker processes costs about 0.1 s, so the --quick sets (0.2 s of hashing) understate the
scaling; use the full sets for figures.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vcat.verify.manifest import build_manifest, check_manifest, read_manifest

MIB = 1 << 20
CHUNK = 2000  # paths per md5sum invocation


@dataclass(frozen=True)
class FileSet:
    name: str
    root: Path
    files: list[Path]
    bytes: int


def make_large(root: Path, count: int, size: int, rng: random.Random) -> FileSet:
    root.mkdir(parents=True)
    files = []
    for index in range(count):
        path = root / f"large-{index:02d}.bin"
        with path.open("wb") as stream:
            for _ in range(size // (8 * MIB)):
                stream.write(rng.randbytes(8 * MIB))
            stream.write(rng.randbytes(size % (8 * MIB)))
        files.append(path)
    return FileSet("large", root, files, count * size)


def make_small(root: Path, count: int, rng: random.Random) -> FileSet:
    files, total = [], 0
    for index in range(count):
        folder = root / f"{index // 1000:03d}"
        if index % 1000 == 0:
            folder.mkdir(parents=True)
        size = rng.randint(60_000, 140_000)
        path = folder / f"{index:06d}.jpg"
        path.write_bytes(rng.randbytes(size))
        files.append(path)
        total += size
    return FileSet("small", root, files, total)


def warm(files: list[Path]) -> None:
    buffer = bytearray(MIB)
    for path in files:
        with path.open("rb", buffering=0) as stream:
            while stream.readinto(buffer):
                pass


def md5sum(files: list[Path]) -> dict[str, str]:
    digests = {}
    for start in range(0, len(files), CHUNK):
        chunk = [str(path) for path in files[start : start + CHUNK]]
        result = subprocess.run(["md5sum", *chunk], capture_output=True, text=True, check=True)
        for line in result.stdout.splitlines():
            digest, _, name = line.partition("  ")
            digests[name] = digest
    return digests


def best(repeat: int, run: Callable[[], object]) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def measure(files: FileSet, out: Path, repeat: int, cores: int) -> dict[str, float]:
    warm(files.files)
    seconds: dict[str, float] = {}
    seconds["md5sum"], reference = best(repeat, lambda: md5sum(files.files))
    for workers in (1, cores):
        manifest = out / f"{files.name}-{workers}.tsv"
        seconds[f"build, {workers} worker(s)"], _ = best(
            repeat, lambda m=manifest, w=workers: build_manifest(files.root, m, workers=w)
        )
        ours = {str(files.root / r.path): r.digest for r in read_manifest(manifest).records}
        if ours != reference:
            sys.exit(f"build with {workers} worker(s): digests differ from md5sum's")
    for workers in (1, cores):
        manifest = out / f"{files.name}-1.tsv"
        elapsed, checked = best(
            repeat, lambda m=manifest, w=workers: check_manifest(files.root, m, workers=w)
        )
        if not checked.ok or checked.counts["ok"] != len(files.files):
            sys.exit(f"verify with {workers} worker(s) did not pass every file")
        seconds[f"verify, {workers} worker(s)"] = elapsed
    return seconds


def report(files: FileSet, seconds: dict[str, float], cores: int) -> None:
    count, megabytes = len(files.files), files.bytes / 1e6
    print(f"\n{files.name} files: {count:,} files, {megabytes:,.0f} MB")
    print(f"  {'':<22} {'seconds':>8} {'MB/s':>8} {'files/s':>9} {'vs md5sum':>10}")
    for label, elapsed in seconds.items():
        ratio = seconds["md5sum"] / elapsed
        print(
            f"  {label:<22} {elapsed:8.2f} {megabytes / elapsed:8.0f} {count / elapsed:9.0f} "
            f"{ratio:9.2f}x"
        )
    for step in ("build", "verify"):
        one, many = seconds[f"{step}, 1 worker(s)"], seconds[f"{step}, {cores} worker(s)"]
        print(f"  {step} scaling, {cores} workers / 1: {one / many:.2f}x (ideal {cores}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sets, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best kept)")
    args = parser.parse_args()
    if shutil.which("md5sum") is None:
        sys.exit("md5sum (GNU coreutils) is needed as the reference")
    cores = os.cpu_count() or 1
    large_count, large_size, small_count = (
        (4, 32 * MIB, 2_000) if args.quick else (8, 128 * MIB, 20_000)
    )
    base = Path(tempfile.mkdtemp(prefix="vcat-bench-"))
    try:
        rng = random.Random(20240601)
        started = time.perf_counter()
        sets = [
            make_large(base / "large", large_count, large_size, rng),
            make_small(base / "small", small_count, rng),
        ]
        print(
            f"created {sum(len(s.files) for s in sets):,} files in {base} "
            f"({time.perf_counter() - started:.0f} s); {cores} cores; best of {args.repeat} runs"
        )
        print("page cache: every file is read once before timing, so all runs hash from memory")
        out = base / "manifests"
        out.mkdir(exist_ok=True)
        for files in sets:
            report(files, measure(files, out, args.repeat, cores), cores)
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
