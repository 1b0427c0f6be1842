"""DVC push and pull of many small images: one file each against a few WebDataset shards.

    python bench/remote.py [--count 10000] [--shard-mb 64] [--jobs N]

Makes ``--count`` JPEG images of 256x256 (random crops of the demo photos, resized, seeded
per image, quality 90: about the size of prepared 256-px crops) and tracks the same set two
ways, each in its own git + DVC repository pushing to its own local SeaweedFS server:

- per-file: ``data/images/`` with one file per image (``dvc add`` of the folder);
- sharded: ``data/shards/``, the images packed by ``vcat.shards.pack_tree`` into shards of at
  most ``--shard-mb`` MB plus ``index.json``.

For each it times ``dvc add``, ``dvc push`` to the S3 remote, and ``dvc pull`` into a fresh
``git clone`` (empty cache), every command run as a user runs it, start-up included; then it
checks that the clone holds the same bytes. The ratios are per-file time / sharded time:
above 1x the shards are faster. "sharded pull + unpack" adds ``unpack_shards`` into a plain
tree, for loaders that want files. Everything runs on this machine over loopback, so the
figures measure per-file overhead (requests, hashing, links, database), not a network.

Client and server share this machine's cores, so the wall times also hold the server's work,
which a real remote does elsewhere. The CPU seconds of each side are printed apart: the DVC
client's (``dvc push``/``dvc pull`` and their children) and the SeaweedFS server's.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

from vcat.demo.photos import all_photos
from vcat.seaweedfs import S3Credentials, SeaweedS3
from vcat.shards import ShardReader, pack_tree, unpack_shards

SEED = 20240611
SIDE = 256
QUALITY = 90
BUCKET = "vcat-bench"
DVC = str(Path(sys.executable).with_name("dvc"))
TARGET_RATIO = 10.0
CREDENTIALS = S3Credentials("vcat-bench", "vcat-bench-secret")


@dataclass(frozen=True)
class Measure:
    """One command: wall seconds, and CPU seconds of the client and of the S3 server."""

    wall: float
    client_cpu: float
    server_cpu: float


@dataclass(frozen=True)
class Timings:
    files: int
    megabytes: float
    add: float
    push: Measure
    pull: Measure


def make_images(root: Path, count: int) -> int:
    """``count`` JPEGs ``images/<NNN>/<NNNNNN>.jpg`` under ``root``; returns their bytes."""
    photos = [photo.pixels for photo in all_photos()]
    total = 0
    for index in range(count):
        rng = np.random.default_rng([SEED, index])
        pixels = photos[int(rng.integers(len(photos)))]
        height, width = pixels.shape[:2]
        side = int(rng.integers(SIDE, min(height, width) + 1))
        top = int(rng.integers(height - side + 1))
        left = int(rng.integers(width - side + 1))
        crop = Image.fromarray(pixels[top : top + side, left : left + side])
        image = crop.resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=QUALITY)
        path = root / f"{index // 1000:03d}" / f"{index:06d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buffer.getvalue())
        total += buffer.tell()
    return total


def children_cpu() -> float:
    """CPU seconds used so far by this process's finished children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds the running process ``pid`` has used so far."""
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def measure(command: list[str], cwd: Path, env: dict[str, str], server_pid: int) -> Measure:
    """Run ``command`` as :func:`run` does, counting its CPU and the server's meanwhile."""
    client, server = children_cpu(), process_cpu(server_pid)
    wall = run(command, cwd, env)
    return Measure(wall, children_cpu() - client, process_cpu(server_pid) - server)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds ``command`` took; exits with its output if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed in {cwd}:\n{done.stdout}{done.stderr}")
    return elapsed


def make_repo(
    repo: Path, remote: str, endpoint: str, jobs: int | None, env: dict[str, str]
) -> None:
    repo.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    run([*git, "init", "-q"], repo, env)
    run([DVC, "init", "-q"], repo, env)
    run([DVC, "config", "core.analytics", "false"], repo, env)
    run([DVC, "config", "core.check_update", "false"], repo, env)
    run([DVC, "remote", "add", "-d", "store", remote], repo, env)
    run([DVC, "remote", "modify", "store", "endpointurl", endpoint], repo, env)
    if jobs is not None:
        run([DVC, "remote", "modify", "store", "jobs", str(jobs)], repo, env)


def make_bucket(s3: SeaweedS3) -> None:
    import s3fs

    s3fs.S3FileSystem(
        key=CREDENTIALS.access_key,
        secret=CREDENTIALS.secret_key,
        client_kwargs={"endpoint_url": s3.endpoint},
        skip_instance_cache=True,
    ).mkdir(BUCKET)


def track(
    repo: Path, target: str, clone: Path, env: dict[str, str], server_pid: int
) -> tuple[float, Measure, Measure]:
    """``dvc add``, commit, ``dvc push``, clone, ``dvc pull``: add seconds, push and pull."""
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    add = run([DVC, "add", "-q", target], repo, env)
    run([*git, "add", "-A"], repo, env)
    run([*git, "commit", "-q", "-m", f"track {target}"], repo, env)
    push = measure([DVC, "push", "-q"], repo, env, server_pid)
    run(["git", "clone", "-q", str(repo), str(clone)], repo.parent, env)
    pull = measure([DVC, "pull", "-q"], clone, env, server_pid)
    return add, push, pull


def tree_digests(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def report(per_file: Timings, sharded: Timings, unpack: float, shards: int) -> None:
    print(f"\n{'':<24} {'files':>7} {'MB':>7} {'add s':>7} {'push s':>7} {'pull s':>7}")
    for label, row in (("per-file", per_file), (f"sharded ({shards} shards)", sharded)):
        print(
            f"{label:<24} {row.files:>7,} {row.megabytes:>7.0f} {row.add:>7.2f} "
            f"{row.push.wall:>7.2f} {row.pull.wall:>7.2f}"
        )
    print(f"{'sharded pull + unpack':<24} {sharded.pull.wall + unpack:>47.2f}")
    print(f"\n{'CPU seconds':<24} {'push client':>12} {'push server':>12} ", end="")
    print(f"{'pull client':>12} {'pull server':>12}")
    for label, row in (("per-file", per_file), ("sharded", sharded)):
        print(
            f"{label:<24} {row.push.client_cpu:>12.2f} {row.push.server_cpu:>12.2f} "
            f"{row.pull.client_cpu:>12.2f} {row.pull.server_cpu:>12.2f}"
        )
    print(f"\nper-file / sharded (above 1x: shards faster; target {TARGET_RATIO:.0f}x)")
    rows = (
        ("add", per_file.add / sharded.add, False),
        ("push", per_file.push.wall / sharded.push.wall, True),
        ("pull", per_file.pull.wall / sharded.pull.wall, True),
        ("pull, shards unpacked", per_file.pull.wall / (sharded.pull.wall + unpack), False),
        ("push, client CPU", per_file.push.client_cpu / sharded.push.client_cpu, False),
        ("pull, client CPU", per_file.pull.client_cpu / sharded.pull.client_cpu, False),
    )
    for label, ratio, targeted in rows:
        verdict = ("meets target" if ratio >= TARGET_RATIO else "below target") if targeted else ""
        print(f"  {label:<22} {ratio:6.1f}x  {verdict}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000, help="images (default 10,000)")
    parser.add_argument("--shard-mb", type=int, default=64, help="largest shard in MB")
    parser.add_argument("--jobs", type=int, help="DVC transfer jobs (default: DVC's own)")
    args = parser.parse_args()
    if args.count < 1:
        sys.exit("--count must be at least 1")
    base = Path(tempfile.mkdtemp(prefix="vcat-bench-remote-"))
    try:
        started = time.perf_counter()
        per_file_repo, sharded_repo = base / "per-file", base / "sharded"
        images = per_file_repo / "data" / "images"
        size = make_images(images, args.count)
        made = time.perf_counter() - started
        started = time.perf_counter()
        index = pack_tree(
            images, sharded_repo / "data" / "shards", max_bytes=args.shard_mb * 1_000_000
        )
        packed = time.perf_counter() - started
        shards = len(index.shards)
        print(
            f"{args.count:,} JPEGs of {SIDE}x{SIDE}, {size / 1e6:.0f} MB "
            f"(mean {size / args.count / 1e3:.1f} KB), made in {made:.1f} s; packed into "
            f"{shards} shards in {packed:.1f} s; {os.cpu_count()} cores; DVC transfer jobs: "
            f"{args.jobs or 'DVC default'}"
        )
        timings = {}
        for name, repo, target in (
            ("per-file", per_file_repo, "data/images"),
            ("sharded", sharded_repo, "data/shards"),
        ):
            # a server of its own, so neither variant runs against the other's objects
            with SeaweedS3(base / f"seaweed-{name}", CREDENTIALS) as s3:
                env = {**os.environ, **s3.environment(), "DVC_NO_ANALYTICS": "1"}
                make_bucket(s3)
                make_repo(repo, f"s3://{BUCKET}/{name}", s3.endpoint, args.jobs, env)
                clone = base / f"{name}-clone"
                if s3.pid is None:
                    sys.exit(f"the {name} S3 server exited; see {s3.data_dir}/weed.log")
                add, push, pull = track(repo, target, clone, env, s3.pid)
            if tree_digests(repo / target) != tree_digests(clone / target):
                sys.exit(f"{name}: the clone's {target} differs from what was pushed")
            files = args.count if name == "per-file" else shards + 1
            timings[name] = Timings(files, size / 1e6, add, push, pull)
        started = time.perf_counter()
        unpacked = base / "sharded-clone" / "data" / "images"
        unpack_shards(base / "sharded-clone" / "data" / "shards", unpacked)
        unpack = time.perf_counter() - started
        if tree_digests(unpacked) != tree_digests(images):
            sys.exit("the images unpacked from the pulled shards differ from the originals")
        with ShardReader(base / "sharded-clone" / "data" / "shards") as reader:
            if len(reader) != args.count:
                sys.exit(f"the pulled shards hold {len(reader)} images, not {args.count}")
        report(timings["per-file"], timings["sharded"], unpack, shards)
        print("\nchecked: every pulled file, and every image unpacked from the shards, matches")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
