"""Benchmark: Flickr list to memmap conversion, and what a path list costs DataLoader workers.

Prints, measured in one run on a generated Flickr-style list (best of ``--repeats``):
- lines/s of gzip decompression alone (the floor of any conversion), of the stage's numpy
  work on already decompressed text, and of the stage's whole conversion, against a
  plain-Python reference (the release's line-by-line loop into ``numpy.memmap``), with their
  ratio; the two outputs are checked to be byte-identical;
- the private memory each forked DataLoader worker gains over one shuffled epoch reading every
  path through :class:`PathList`, through a Python list of strings, and through no list at
  all (the control: the loader's own cost). ``Private_Dirty`` from
  ``/proc/<pid>/smaps_rollup`` counts the pages a worker copied or wrote, shared with nobody.

    python bench/memmap.py [--lines 2000000] [--workers 2] [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info

from stages.flickr_memmap import BLOCK_BYTES, convert, convert_block, iter_blocks
from vcat.lists.memmap import PathList

WIDTH = 120
COLUMN = 2
BATCH = 1024


def write_list(path: Path, lines: int) -> None:
    """A Flickr-style subset list of ``lines`` seeded lines, gzip'd at the default level."""
    rng = np.random.default_rng([7, lines])
    ids = (
        2_000_000_000 + np.arange(lines, dtype=np.int64) * 20_000 + rng.integers(20_000, size=lines)
    )
    buckets = rng.integers(10_000, size=lines)
    secrets = rng.integers(16**10, size=lines)
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as stream:
        for flickr_id, bucket, secret in zip(
            ids.tolist(), buckets.tolist(), secrets.tolist(), strict=True
        ):
            b = f"{bucket:04d}"
            relative = f"images/{b[0]}/{b[1]}/{b[2]}/{b}/{flickr_id}_{secret:010x}.jpg"
            url = f"https://live.staticflickr.com/65535/{flickr_id}_{secret:010x}.jpg"
            stream.write(f"{flickr_id}\t{url}\t{relative}\n")


def reference_convert(list_path: Path, output: Path, size: int) -> None:
    """The release's conversion: one line at a time into a ``numpy.memmap``."""
    array = np.memmap(output, dtype=f"S{WIDTH}", mode="w+", shape=(size,))
    with gzip.open(list_path, "rb") as stream:
        for index, line in enumerate(stream):
            path = line.decode("utf-8").strip().split("\t")[COLUMN]
            if len(path) > WIDTH:
                raise ValueError(f"{list_path}:{index + 1}: path too long")
            array[index] = path
    array.flush()
    del array


def decompress_only(list_path: Path) -> int:
    with gzip.open(list_path, "rb") as stream:
        return sum(block.count(b"\n") for block in iter_blocks(stream, BLOCK_BYTES))


def timed(function, *args) -> float:
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def private_dirty_kb(pid: int) -> int:
    """Private_Dirty of process ``pid`` in kB: memory it alone holds, copied or written."""
    with open(f"/proc/{pid}/smaps_rollup") as stream:
        for line in stream:
            if line.startswith("Private_Dirty:"):
                return int(line.split()[1])
    raise RuntimeError(f"no Private_Dirty in /proc/{pid}/smaps_rollup")


class PathLengths(Dataset):
    """Item i: the length of path i, the worker's pid, and its Private_Dirty when it started."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = paths
        self.baseline_kb = -1

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[int, int, int]:
        return len(self.paths[index]), os.getpid(), self.baseline_kb


def _record_baseline(_: int) -> None:
    get_worker_info().dataset.baseline_kb = private_dirty_kb(os.getpid())


def worker_growth_mb(paths: Sequence[str], workers: int) -> tuple[float, list[float]]:
    """Seconds for one epoch, and each worker's Private_Dirty growth over it in MB.

    The workers persist after the epoch, so their memory is read from here while they idle.
    """
    loader = DataLoader(
        PathLengths(paths),
        batch_size=BATCH,
        # shuffled as in training: each worker then touches pages all over the list
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        num_workers=workers,
        worker_init_fn=_record_baseline,
        multiprocessing_context="fork",
        persistent_workers=True,
    )
    baseline: dict[int, int] = {}
    started = time.perf_counter()
    for _, pids, base in loader:
        baseline.update(zip(pids.tolist(), base.tolist(), strict=True))
    seconds = time.perf_counter() - started
    growth = [(private_dirty_kb(pid) - kb) / 1024 for pid, kb in sorted(baseline.items())]
    del loader
    return seconds, growth


class SamePath(Sequence[str]):
    """The control: as many items as the list, all one constant path, so no list at all."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        return "images/0/1/2/0123/2000012345_0123456789.jpg"


def best_of(repeats: int, function, *args) -> float:
    return min(timed(function, *args) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="best of this many timings")
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        list_path = folder / "flickr.tsv.gz"
        write_list(list_path, args.lines)
        with gzip.open(list_path, "rb") as stream:
            blocks = list(iter_blocks(stream))
        print(
            f"list: {args.lines:,} lines, {list_path.stat().st_size / 1e6:.1f} MB gzip'd, "
            f"{sum(map(len, blocks)) / 1e6:.1f} MB of text; best of {args.repeats} runs"
        )

        vectorised = folder / "vectorised.memmap"
        reference = folder / "reference.memmap"

        def run_vectorised() -> None:
            with vectorised.open("wb") as sink:
                convert(list_path, sink, COLUMN, WIDTH)

        def numpy_only() -> None:
            for block in blocks:
                convert_block(block, COLUMN, WIDTH, list_path)

        rows = [
            ("gzip decompression only", best_of(args.repeats, decompress_only, list_path)),
            ("numpy on decompressed text", best_of(args.repeats, numpy_only)),
            ("stage conversion (gzip + numpy)", best_of(args.repeats, run_vectorised)),
            (
                "plain-Python reference",
                best_of(1, reference_convert, list_path, reference, args.lines),
            ),
        ]
        for label, seconds in rows:
            print(f"{label:<32}: {seconds:6.2f} s  {args.lines / 1e6 / seconds:6.2f} M lines/s")
        identical = vectorised.read_bytes() == reference.read_bytes()
        print(
            f"ratio reference / stage         : {rows[3][1] / rows[2][1]:6.1f}x  "
            f"(outputs byte-identical: {identical})"
        )
        if not identical:
            raise SystemExit("the stage's output differs from the reference's")

        print(
            f"DataLoader, {args.workers} forked workers, one shuffled epoch over "
            f"{args.lines:,} paths:"
        )
        memmap_paths = PathList(vectorised, WIDTH)
        variants: list[tuple[str, Sequence[str]]] = [
            ("no list (control)", SamePath(args.lines)),
            ("PathList (memmap)", memmap_paths),
            ("Python list of str", [p.decode() for p in np.memmap(vectorised, f"S{WIDTH}", "r")]),
        ]
        control = 0.0
        for label, paths in variants:
            seconds, growth = worker_growth_mb(paths, args.workers)
            mean = sum(growth) / len(growth)
            control = control or mean
            per_worker = ", ".join(f"{mb:+.1f}" for mb in growth)
            print(
                f"  {label:<19}: epoch {seconds:5.1f} s, Private_Dirty per worker "
                f"{per_worker} MB ({mean - control:+.1f} MB over the control)"
            )


if __name__ == "__main__":
    main()
