"""Manifest hashing against GNU md5sum run N at a time by xargs, measured in one run.

    python bench/verify.py [--gb 1] [--quick] [--repeat N] [--commands-only]

Creates, in a temporary folder from a seeded generator, three sets:

- ``large``: files of 128 MiB, half of the --gb (default 1 GB; --gb 4 for 4 GB);
- ``small``: files of 60-140 KB (photos), the other half;
- ``1,000 small``: 1,000 of them, where any fixed cost per task or per file shows;

(--quick: a 64 MB tree, for a smoke run). Over each set it times, with N = 1 and N = every
core:

- ``xargs -P N md5sum``: the reference: ``find -print0 | xargs -0 -P N -n K md5sum``, K
  spreading the files over about 4N commands (as a user would run it to use N cores);
- ``build, N``: ``build_manifest(workers=N)``, the whole of ``vcat manifest build`` but the
  command's own start-up (walk, hash, write);
- ``verify, N``: ``check_manifest(workers=N)``, what ``vcat verify NAME --manifest M`` runs,
  against the manifest just built;

Then, over the whole tree (``large`` and ``small`` in one folder, as a user's dataset), the
commands as a user runs them, start-up included, against ``xargs -P N md5sum`` over the same
tree: ``vcat manifest build --workers N`` and ``vcat verify --manifest M --workers N``.

The "vs xargs" column divides the time of ``xargs -P N md5sum`` by ours at the same N:
1.00x is md5sum's speed, the target is at least 0.90x at every N, for the functions on every
set and for the commands on the whole tree. "CPU vs xargs" does the
same with the CPU seconds spent (ours and md5sum's processes): it hardly moves when other
programs share the cores, so it says whether a poor wall-clock figure is ours or theirs.
The page cache cannot be dropped here, so every file is read once before timing and all runs
read from memory: the figures compare hashing and per-file overhead, not disks. Each timing
is the best of --repeat rounds, each round running every row once in turn (a slower spell
of a shared machine then falls on the reference and on ours alike), and every digest is
checked against md5sum's.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
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
LARGE = 128 * MIB
VCAT = str(Path(sys.executable).with_name("vcat"))


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


def make_small(name: str, root: Path, count: int, rng: random.Random) -> FileSet:
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
    return FileSet(name, root, files, total)


def warm(files: list[Path]) -> None:
    buffer = bytearray(MIB)
    for path in files:
        with path.open("rb", buffering=0) as stream:
            while stream.readinto(buffer):
                pass


def xargs_md5sum(files: FileSet, processes: int) -> dict[str, str]:
    """``find -print0 | xargs -0 -P processes -n K md5sum``; the digests by path."""
    per_command = max(1, min(500, -(-len(files.files) // (4 * processes))))
    listing = b"".join(str(path).encode() + b"\0" for path in files.files)
    result = subprocess.run(
        ["xargs", "-0", "-P", str(processes), "-n", str(per_command), "md5sum"],
        input=listing,
        capture_output=True,
        check=True,
    )
    digests = {}
    for line in result.stdout.decode().splitlines():
        digest, _, name = line.partition("  ")
        digests[name] = digest
    return digests


#: CPU seconds of each timed run (this process and its children), by the label of its row;
#: unlike wall time, they hardly move when other programs share the cores.
CPU: dict[tuple[str, int], float] = {}


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


Label = tuple[str, int]  # (what, N)


def best_of_rounds(
    repeat: int, runs: dict[Label, Callable[[], object]]
) -> dict[Label, tuple[float, object]]:
    """The best time (and last result) of each run over ``repeat`` rounds.

    Each round runs every one once, in turn, so that a slower spell of the machine (a
    neighbour on a shared host, a clock change) falls on all of them alike instead of on
    whichever was being timed then.
    """
    times: dict[Label, list[float]] = {label: [] for label in runs}
    cpu: dict[Label, list[float]] = {label: [] for label in runs}
    results: dict[Label, object] = {}
    for _ in range(repeat):
        for label, run in runs.items():
            started, started_cpu = time.perf_counter(), cpu_seconds()
            results[label] = run()
            times[label].append(time.perf_counter() - started)
            cpu[label].append(cpu_seconds() - started_cpu)
    CPU.update({label: min(seconds) for label, seconds in cpu.items()})
    return {label: (min(times[label]), results[label]) for label in runs}


def measure(files: FileSet, out: Path, repeat: int, cores: int) -> list[tuple[str, int, float]]:
    """Rows of (what, N, seconds)."""
    warm(files.files)
    counts = sorted({1, cores})
    reference = xargs_md5sum(files, 1)
    manifest = out / f"{files.name}.tsv"
    build_manifest(files.root, manifest, workers=1)  # what verify checks against
    runs: dict[Label, Callable[[], object]] = {}
    for workers in counts:
        runs[("xargs -P N md5sum", workers)] = lambda w=workers: xargs_md5sum(files, w)
    for workers in counts:
        target = out / f"{files.name}-{workers}.tsv"
        runs[("build", workers)] = lambda m=target, w=workers: build_manifest(
            files.root, m, workers=w
        )
    for workers in counts:
        runs[("verify", workers)] = lambda w=workers: check_manifest(
            files.root, manifest, workers=w
        )
    timed = best_of_rounds(repeat, runs)
    for workers in counts:
        if timed[("xargs -P N md5sum", workers)][1] != reference:
            sys.exit(f"xargs -P {workers} md5sum: digests differ from one md5sum's")
        built = read_manifest(out / f"{files.name}-{workers}.tsv").records
        if {str(files.root / r.path): r.digest for r in built} != reference:
            sys.exit(f"build with {workers} worker(s): digests differ from md5sum's")
        checked = timed[("verify", workers)][1]
        if not checked.ok or checked.counts["ok"] != len(files.files):
            sys.exit(f"verify with {workers} worker(s) did not pass every file")
    return [(what, n, seconds) for (what, n), (seconds, _) in timed.items()]


def measure_commands(
    tree: FileSet, out: Path, repeat: int, cores: int
) -> list[tuple[str, int, float]]:
    """Rows of (what, N, seconds) for the commands over ``tree``, start-up included."""
    warm(tree.files)
    manifest = out / "tree.tsv"
    runs: dict[Label, Callable[[], object]] = {}
    for workers in sorted({1, cores}):
        runs[("xargs -P N md5sum", workers)] = lambda w=workers: xargs_md5sum(tree, w)
        build = [VCAT, "manifest", "build", "bench", "--root", str(tree.root)]
        build += ["--out", str(manifest), "--workers", str(workers)]
        verify = [VCAT, "verify", "bench", "--root", str(tree.root)]
        verify += ["--manifest", str(manifest), "--workers", str(workers)]
        for what, command in (("vcat manifest build", build), ("vcat verify --manifest", verify)):
            runs[(what, workers)] = lambda c=command: subprocess.run(
                c, capture_output=True, check=True
            )
    timed = best_of_rounds(repeat, runs)
    return [(what, n, seconds) for (what, n), (seconds, _) in timed.items()]


def report(files: FileSet, rows: list[tuple[str, int, float]]) -> list[float]:
    """Print the table; returns the ratios against xargs of every row but the anchor's."""
    count, megabytes = len(files.files), files.bytes / 1e6
    anchor = {n: seconds for what, n, seconds in rows if what == "xargs -P N md5sum"}
    print(f"\n{files.name} files: {count:,} files, {megabytes:,.0f} MB")
    print(
        f"  {'':<22} {'N':>3} {'seconds':>8} {'MB/s':>8} {'files/s':>9} {'vs xargs':>9} "
        f"{'CPU s':>7} {'CPU vs xargs':>13}"
    )
    ratios = []
    anchor_cpu = {n: CPU[("xargs -P N md5sum", n)] for n in anchor}
    for what, n, seconds in rows:
        ratio = anchor[n] / seconds
        cpu = CPU[(what, n)]
        if what != "xargs -P N md5sum":
            ratios.append(ratio)
        print(
            f"  {what:<22} {n:>3} {seconds:8.2f} {megabytes / seconds:8.0f} "
            f"{count / seconds:9.0f} {ratio:8.2f}x {cpu:7.2f} {anchor_cpu[n] / cpu:12.2f}x"
        )
    ones = {what: s for what, n, s in rows if n == 1}
    many = {what: (n, s) for what, n, s in rows if n > 1}
    for what in ("xargs -P N md5sum", "build", "verify"):
        if what in many:
            n, seconds = many[what]
            print(f"  {what} scaling, N={n} / N=1: {ones[what] / seconds:.2f}x (ideal {n}x)")
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=1.0, help="size of the tree, GB (default 1)")
    parser.add_argument("--quick", action="store_true", help="a 64 MB tree, for a smoke run")
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (best kept)")
    parser.add_argument(
        "--commands-only", action="store_true", help="time only the commands on the whole tree"
    )
    args = parser.parse_args()
    for tool in ("md5sum", "xargs"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} (GNU) is needed for the reference")
    cores = os.cpu_count() or 1
    total = 64e6 if args.quick else args.gb * 1e9
    large_count, large_size = (
        (2, 16 * MIB) if args.quick else (max(1, round(total / 2 / LARGE)), LARGE)
    )
    small_count = round(total / 2 / 100_000)
    base = Path(tempfile.mkdtemp(prefix="vcat-bench-"))
    try:
        (base / "dvc.yaml").write_text("stages: {}\n")
        catalog = base / "catalog" / "datasets"
        catalog.mkdir(parents=True)
        (catalog / "bench.yaml").write_text(
            "title: Bench\ndescription: Files made by bench/verify.py.\n"
            "licence: {name: CC0-1.0, redistribution: allowed}\n"
            "access: {kind: manual, instructions: Made by the benchmark.}\n"
            'layout: {rules: [{glob: "**", min: 1}]}\n'
        )
        os.chdir(base)
        rng = random.Random(20240601)
        started = time.perf_counter()
        sets = [
            make_large(base / "tree" / "large", large_count, large_size, rng),
            make_small("small", base / "tree" / "small", small_count, rng),
        ]
        if not args.commands_only:
            sets.append(make_small("1,000 small", base / "thousand", 1_000, rng))
        tree = FileSet(
            "whole tree (large + small)",
            base / "tree",
            sets[0].files + sets[1].files,
            sets[0].bytes + sets[1].bytes,
        )
        print(
            f"created {sum(len(s.files) for s in sets):,} files in {base} "
            f"({time.perf_counter() - started:.0f} s); {cores} cores; best of {args.repeat} rounds"
        )
        print("page cache: every file is read once before timing, so all runs hash from memory")
        out = base / "manifests"
        out.mkdir()
        ratios = []
        for files in [] if args.commands_only else sets:
            ratios += report(files, measure(files, out, args.repeat, cores))
        print("\nthe commands, start-up included:")
        ratios += report(tree, measure_commands(tree, out, args.repeat, cores))
        worst = min(ratios)
        verdict = "meets" if worst >= 0.9 else "misses"
        print(f"\nslowest against xargs -P N md5sum: {worst:.2f}x ({verdict} 0.90x)")
    finally:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
