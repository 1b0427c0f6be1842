"""Requests per second of the S3 server that ``data: remote`` runs use, against local reads.

    python bench/s3_requests.py [--objects N] [--kib K] [--threads T]

Starts SeaweedFS on 127.0.0.1 (as ``vcat remote up`` runs it) and, through the filesystem
DVC builds for a remote (:class:`vcat.executors.store.RunStore`), measures what a shard and a
submitter do:

- PUT: N objects of K KiB of random bytes sent at once with T threads (a submitter sending
  inputs, a shard sending its part);
- LIST: the check of which of the N objects the remote lacks (one listing per two-hex-digit
  prefix, at most 256);
- GET: the N objects fetched into a folder and checked against their MD5 (a shard fetching
  its block's inputs), with T threads and with one;

against the reference of reading the same N files from this machine's page cache and hashing
them (what a shard on a shared file system does instead of a GET). Prints objects/s and MB/s
of each, and the ratio of GET to the local read. Defaults: 2,000 objects of 100 KiB (a photo
of the guides' datasets), 16 threads (the transfers a run makes at once).
"""

from __future__ import annotations

import argparse
import hashlib
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vcat.executors.store import RunStore
from vcat.hashing import hash_file
from vcat.seaweedfs import S3Credentials, SeaweedS3


def store_of(server: SeaweedS3) -> RunStore:
    filesystem = server.client()
    filesystem.mkdir("bench")
    return RunStore(filesystem, "bench/dvc", "bench", "s3://bench/dvc")


def timed(work: object) -> float:
    start = time.perf_counter()
    work()  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=2000)
    parser.add_argument("--kib", type=int, default=100)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args()
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="vcat-bench-s3-") as scratch:
        folder = Path(scratch)
        sources = folder / "sources"
        sources.mkdir()
        digests = []
        for number in range(args.objects):
            data = rng.randbytes(args.kib << 10)
            (sources / f"{number:06d}.jpg").write_bytes(data)
            digests.append(hashlib.md5(data).hexdigest())
        names = sorted(sources.iterdir())
        megabytes = args.objects * args.kib / 1024

        def local_read() -> None:
            with ThreadPoolExecutor(args.threads) as pool:
                list(pool.map(hash_file, names))

        local_read()  # into the page cache
        local = min(timed(local_read) for _ in range(3))
        with SeaweedS3(folder / "seaweed", S3Credentials("bench", "bench-secret")) as server:
            store = store_of(server)
            pairs = list(zip(names, digests, strict=True))

            def put() -> None:
                with ThreadPoolExecutor(args.threads) as pool:
                    list(pool.map(lambda p: store.upload(p[0], store.object_path(p[1])), pairs))

            def get(threads: int) -> None:
                target = folder / f"fetched-{threads}"

                def fetch(pair: tuple[Path, str]) -> None:
                    store.download(store.object_path(pair[1]), target / pair[0].name, pair[1])

                with ThreadPoolExecutor(threads) as pool:
                    list(pool.map(fetch, pairs))

            sent = timed(put)
            listed = timed(lambda: store.missing(digests))
            missing = store.missing(digests)
            if missing:
                raise SystemExit(f"{len(missing)} objects missing after the PUTs")
            fetched = timed(lambda: get(args.threads))
            single = timed(lambda: get(1))
    print(
        f"{args.objects} objects of {args.kib} KiB ({megabytes:.0f} MB), SeaweedFS on "
        f"127.0.0.1, {args.threads} threads"
    )
    print(f"{'operation':<42} {'seconds':>8} {'objects/s':>10} {'MB/s':>8}")
    rows = [
        ("local read + MD5 (page cache; reference)", local),
        (f"PUT ({args.threads} threads)", sent),
        (f"GET + MD5 check ({args.threads} threads)", fetched),
        ("GET + MD5 check (1 thread)", single),
    ]
    for label, seconds in rows:
        print(
            f"{label:<42} {seconds:>8.2f} {args.objects / seconds:>10.0f} "
            f"{megabytes / seconds:>8.1f}"
        )
    print(f"LIST of which objects are missing: {listed:.2f} s (256 prefix listings)")
    print(f"GET against the local read: {local / fetched:.2f}x the speed")


if __name__ == "__main__":
    main()
