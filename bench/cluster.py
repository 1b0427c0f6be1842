"""The croco-crops stage as a SLURM job array on the local cluster, against one process.

    python bench/cluster.py [--quick] [--repeat N]

Runs as root (the local cluster's slurmd does). Creates, in a temporary folder, the photos
and crop list of bench/crops.py (8 scenes of 30 photos of 1600 x 1200; --quick: 4 of 15),
starts a single-node cluster there (vcat.cluster, with this machine's cores) and runs
``vcat stage croco-crops`` with one process per shard (``jobs: 1``):

- ``single``: the whole list in one process, no executor (the reference);
- ``slurm 1 task``: ``executor: {kind: slurm, shards: 2, parallel: 1}``, the two shards one
  after the other, then the merge: the cost of going through SLURM at equal parallelism;
- ``slurm 2 tasks``: ``shards: 2`` run side by side;
- ``slurm 4 shards, 2 at once``: ``shards: 4, parallel: 2``;
- ``slurm 2 tasks, data: remote``: ``shards: 2`` with the inputs on a DVC remote (a SeaweedFS
  S3 server started here, as ``vcat remote up`` runs it): each shard fetches its block's
  photos into scratch and sends its part back, the merge fetches the parts. The first run
  also sends the photos (shown apart); the row is a run with them on the remote already;

and the fixed overhead of a job array: a list of one pair split in 2 shards through SLURM,
minus the same list in one process. Every merged output is checked byte for byte against the
single run. Prints seconds, pairs/s and the speed-up over the single run, also net of the
fixed overhead (near-linear scaling on 2 cores: about 2x for 2 tasks, once the overhead is
taken off). Each figure is the best of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.crops import make_list, make_tree
from vcat.cluster.local import cluster_down, cluster_up
from vcat.seaweedfs import S3Credentials, SeaweedS3

DVC = str(Path(sys.executable).with_name("dvc"))

STAGE = {"imsize": 256, "jobs": 1, "shard_max_count": 500}  # CroCo's size


def run(
    folder: Path, crops: Path, output: str, executor: dict[str, object], env: dict[str, str]
) -> float:
    """Seconds of one ``vcat stage croco-crops`` run into ``folder/output`` (made afresh)."""
    shutil.rmtree(folder / output, ignore_errors=True)
    params = folder / f"{output}.yaml"
    params.write_text(yaml.safe_dump({"croco-crops": STAGE, "executor": executor}))
    command = [
        sys.executable,
        "-m",
        "vcat",
        "stage",
        "croco-crops",
        str(crops),
        "root",
        output,
        "--params",
        str(params),
    ]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return seconds


def dvc_remote(folder: Path, server: SeaweedS3) -> None:
    """``folder`` as a DVC repository whose default remote is a bucket of ``server``."""
    server.client().mkdir("bench")
    local = ["remote", "modify", "--local", "store"]
    for command in (
        ["init", "--no-scm", "-q"],
        ["remote", "add", "-d", "store", "s3://bench/dvc"],
        [*local, "endpointurl", server.endpoint],
        [*local, "access_key_id", server.credentials.access_key],
        [*local, "secret_access_key", server.credentials.secret_key],
    ):
        subprocess.run([DVC, *command], cwd=folder, check=True)


def tree_bytes(folder: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def best(repeat: int, measure: object) -> float:
    return min(measure() for _ in range(repeat))  # type: ignore[operator]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 scenes of 15 photos")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs of each")
    args = parser.parse_args()
    scenes, per_scene = (4, 15) if args.quick else (8, 30)
    with tempfile.TemporaryDirectory(prefix="vcat-bench-cluster-") as scratch:
        folder = Path(scratch)
        names = make_tree(folder / "root", scenes, per_scene)
        crops = folder / "crops.txt"
        make_list(crops, names, per_scene, (224, 512))
        pairs = sum(1 for line in crops.read_text().splitlines() if line.count(",") == 7)
        one = folder / "one.txt"
        lines = crops.read_text().splitlines()
        one.write_text("\n".join(lines[:3]) + "\n")  # the comment, a header, its first crop

        cluster = cluster_up(folder / "cluster")
        env = {**os.environ, **cluster.state.environment()}
        try:
            print(
                f"{pairs} pairs from {len(names)} photos; cluster of 1 node, "
                f"{cluster.state.cpus} CPUs; best of {args.repeat}"
            )
            single = best(args.repeat, lambda: run(folder, crops, "single", {}, env))
            reference = tree_bytes(folder / "single")
            stored = sum(len(data) for name, data in reference.items() if name.endswith(".tar"))
            rows = [("single process", single)]
            for label, executor in [
                (
                    "slurm 1 task (2 shards, 1 at once)",
                    {"kind": "slurm", "shards": 2, "parallel": 1},
                ),
                ("slurm 2 tasks (2 shards)", {"kind": "slurm", "shards": 2}),
                ("slurm 4 shards, 2 at once", {"kind": "slurm", "shards": 4, "parallel": 2}),
            ]:
                seconds = best(
                    args.repeat,
                    lambda executor=executor: run(folder, crops, "split", executor, env),
                )
                if tree_bytes(folder / "split") != reference:
                    raise SystemExit(f"{label}: the merged output differs from the single run")
                rows.append((label, seconds))
            with SeaweedS3(folder / "seaweed", S3Credentials("bench", "bench-secret")) as server:
                dvc_remote(folder, server)
                remote = {"kind": "slurm", "shards": 2, "data": "remote"}
                sending = run(folder, crops, "split", remote, env)
                label = "slurm 2 tasks, data: remote"
                seconds = best(args.repeat, lambda: run(folder, crops, "split", remote, env))
                if tree_bytes(folder / "split") != reference:
                    raise SystemExit(f"{label}: the merged output differs from the single run")
                rows.append((label, seconds))
            tiny_single = best(args.repeat, lambda: run(folder, one, "tiny", {}, env))
            tiny_array = best(
                args.repeat, lambda: run(folder, one, "tiny", {"kind": "slurm", "shards": 2}, env)
            )
        finally:
            cluster_down(folder / "cluster")
    overhead = tiny_array - tiny_single
    print(f"{'run':<38} {'seconds':>8} {'pairs/s':>8} {'speed-up':>9} {'net of overhead':>16}")
    for label, seconds in rows:
        net = single / (seconds - overhead) if label.startswith("slurm") else 1.0
        print(
            f"{label:<38} {seconds:>8.2f} {pairs / seconds:>8.1f} {single / seconds:>8.2f}x "
            f"{net:>15.2f}x"
        )
    print(f"stored: {stored / pairs / 1024:.1f} KiB per pair (two JPEGs in tar)")
    print(
        f"data: remote, first run (also sends the {len(names)} photos to the remote): "
        f"{sending:.2f} s"
    )
    print(
        f"fixed overhead of a 2-task job array: {overhead:.2f} s "
        f"(one pair: {tiny_array:.2f} s through SLURM, {tiny_single:.2f} s in one process)"
    )


if __name__ == "__main__":
    main()
