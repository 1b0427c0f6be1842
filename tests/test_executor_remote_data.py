"""``data: remote``: shards that read their inputs from the DVC remote (a real SeaweedFS S3
server) and send their parts back there, on a node that has none of the data."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.test_croco_crops import crops_text, folder_bytes, make_world
from tests.test_executors import (
    array_tasks,
    cluster_env,
    read_ledger,
    stage,
    start_stage,
    wait_for,
    write_params,
)
from vcat.cluster.local import ClusterState
from vcat.croco.crops_file import read_headers
from vcat.executors.remote_data import InputFile, describe_inputs
from vcat.executors.store import RemoteDataError
from vcat.parts import ShardSpec, parts_root
from vcat.seaweedfs import S3Credentials, SeaweedS3

DVC = str(Path(sys.executable).with_name("dvc"))
BUCKET = "vcat-runs"
SCENES = ("0101", "0102", "0103")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    folder = tmp_path_factory.mktemp("seaweed")
    with SeaweedS3(folder, S3Credentials("vcat-test", "vcat-test-secret")) as server:
        server.client().mkdir(BUCKET)
        yield server


def dvc_checkout(folder: Path, server: SeaweedS3, prefix: str) -> None:
    """A DVC repository in ``folder`` whose default remote is ``s3://BUCKET/prefix`` on
    ``server``, its credentials in ``.dvc/config.local`` as `vcat remote up` writes them."""
    folder.mkdir(parents=True, exist_ok=True)
    run([DVC, "init", "--no-scm", "-q"], folder)
    run([DVC, "remote", "add", "-d", "store", f"s3://{BUCKET}/{prefix}"], folder)
    for key, value in (
        ("endpointurl", server.endpoint),
        ("access_key_id", server.credentials.access_key),
        ("secret_access_key", server.credentials.secret_key),
    ):
        run([DVC, "remote", "modify", "--local", "store", key, value], folder)


def run(command: list[str], cwd: Path) -> str:
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout + result.stderr


@pytest.fixture(scope="module")
def project(
    s3: SeaweedS3, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, bytes]]:
    """A checkout with a crop list, its images and the bytes of a single run."""
    folder = tmp_path_factory.mktemp("remote-data") / "project"
    dvc_checkout(folder, s3, "dvc")
    make_world(folder / "root", scenes=SCENES, per_scene=4)
    (folder / "crops.txt").write_text(crops_text(SCENES, per_scene=4))
    write_params(folder / "single.yaml")
    result = stage(folder, "single", "single.yaml")
    assert result.returncode == 0, result.stderr
    return folder, folder_bytes(folder / "single")


def remote_files(server: SeaweedS3, prefix: str) -> list[str]:
    """The objects under ``prefix``, relative to it (SeaweedFS also lists the folder that an
    emptied prefix leaves behind as the prefix itself: that is no object)."""
    found = server.client().find(f"{BUCKET}/{prefix}")
    under = f"{BUCKET}/{prefix}/"
    return sorted(path[len(under) :] for path in found if path.startswith(under))


def block_images(crops: Path, spec: ShardSpec) -> set[str]:
    """The images of the headers with a crop in ``spec``'s block, counted here from the list."""
    headers = [header for header in read_headers(crops) if header.crops]
    block = spec.block(sum(len(header.crops) for header in headers))
    return {
        image
        for header in headers
        if any(crop.index in block for crop in header.crops)
        for image in (header.image1, header.image2)
    }


def test_local_shards_with_remote_data_merge_to_the_single_runs_bytes(
    project: tuple[Path, dict[str, bytes]], s3: SeaweedS3
) -> None:
    folder, single = project
    write_params(folder / "remote.yaml", kind="local", shards=3, data="remote")
    result = stage(folder, "remote", "remote.yaml")
    assert result.returncode == 0, result.stderr
    assert folder_bytes(folder / "remote") == single
    assert re.search(r"run [0-9a-f]{20} on remote 'store': 14 input files", result.stderr)
    for index in range(3):
        assert f"remote: shard {index}/3 done" in result.stderr
    stored = remote_files(s3, "dvc")
    images = sorted((folder / "root").rglob("*.jpg"))
    assert len([name for name in stored if name.startswith("files/md5/")]) == len(images) + 2
    assert not [name for name in stored if name.startswith("vcat/")], "the run is removed"
    assert not parts_root(folder / "remote").exists()
    again = stage(folder, "remote", "remote.yaml")
    assert again.returncode == 0, again.stderr
    assert "0 bytes sent" in again.stderr, "inputs on the remote are not sent again"


def test_a_node_without_the_data_makes_its_part_from_what_its_block_reads(
    project: tuple[Path, dict[str, bytes]], s3: SeaweedS3, tmp_path: Path
) -> None:
    """A shard run by hand in a checkout holding no data (only its DVC configuration) fetches
    just its block's images; the submitter then finds that part on the remote."""
    folder, single = project
    params = write_params(folder / "node.yaml", kind="local", shards=3, data="remote")
    publish = (  # what the stage's submitter does before it starts the shards
        "import sys; from pathlib import Path; from vcat.executors.remote_data import "
        "publish_run; from stages.croco_crops import _block_inputs; "
        "blocks = lambda n: _block_inputs(Path('crops.txt'), Path('root'), n); "
        "store, record = publish_run(sys.argv[1:], [Path('crops.txt'), Path('root'), "
        "Path('node.yaml')], Path('node'), 3, '', blocks); print(record.run)"
    )
    command = [sys.executable, "-m", "vcat", "stage", "croco-crops", "crops.txt", "root", "node"]
    command += ["--params", params.name]
    published = subprocess.run(
        [sys.executable, "-c", publish, *command],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    run_id = published.stdout.strip()
    node = tmp_path / "node"
    node.mkdir()
    (node / ".dvc").mkdir()
    for name in ("config", "config.local"):
        (node / ".dvc" / name).write_bytes((folder / ".dvc" / name).read_bytes())
    worker = [sys.executable, "-m", "vcat", "executor", "shard", run_id, "--shard", "1/3"]
    result = subprocess.run(
        [*worker, "--scratch", str(tmp_path / "scratch")],
        cwd=node,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    wanted = block_images(folder / "crops.txt", ShardSpec(1, 3))
    assert 0 < len(wanted) < 12
    # its images, the list and the settings
    assert f"fetching {len(wanted) + 2} input files: done" in result.stderr
    assert "part 00001-of-00003 sent to remote 'store'" in result.stderr
    assert not (tmp_path / "scratch" / f"vcat-{run_id}" / "00001-of-00003").exists()
    marker = remote_files(s3, f"dvc/vcat/runs/{run_id}/parts")
    assert "00001-of-00003.json" in marker
    assert sorted(os.listdir(node)) == [".dvc"], "the node's checkout gets no data"
    submitted = stage(folder, "node", "node.yaml")
    assert submitted.returncode == 0, submitted.stderr
    assert folder_bytes(folder / "node") == single


def test_no_remote_is_one_line_saying_how_to_name_one(
    project: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, _ = project
    lone = tmp_path / "lone"
    lone.mkdir()
    run([DVC, "init", "--no-scm", "-q"], lone)
    for name in ("crops.txt", "root"):
        (lone / name).symlink_to(folder / name)
    write_params(lone / "p.yaml", kind="local", shards=2, data="remote")
    result = stage(lone, "out", "p.yaml")
    assert result.returncode == 2
    assert "needs a DVC remote" in result.stderr and "dvc remote default" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (lone / "out").exists()


@pytest.mark.slow
def test_a_run_abandoned_when_its_inputs_changed_is_removed_from_the_remote(
    project: tuple[Path, dict[str, bytes]], s3: SeaweedS3, tmp_path: Path
) -> None:
    folder, _ = project
    checkout = tmp_path / "checkout"
    dvc_checkout(checkout, s3, "abandoned")
    (checkout / "crops.txt").write_bytes((folder / "crops.txt").read_bytes())
    (checkout / "root").symlink_to(folder / "root")
    write_params(checkout / "p.yaml", kind="local", shards=3, parallel=1, data="remote")
    output = checkout / "out"
    submitter = start_stage(checkout, "out", "p.yaml", dict(os.environ))
    wait_for(lambda: len(read_ledger(output).get("done", [])) >= 1, "a first shard")  # type: ignore[arg-type]
    submitter.send_signal(signal.SIGKILL)
    submitter.wait()
    (first,) = {name.split("/")[0] for name in remote_files(s3, "abandoned/vcat/runs")}
    with (checkout / "crops.txt").open("a") as crops:
        crops.write("# one more line: another list, another run\n")
    result = stage(checkout, "out", "p.yaml")
    assert result.returncode == 0, result.stderr
    assert not remote_files(s3, "abandoned/vcat"), f"run {first} is left on the remote"


@pytest.mark.slow
def test_dvc_repro_runs_a_stage_with_remote_data_under_its_own_lock(
    project: tuple[Path, dict[str, bytes]], s3: SeaweedS3, tmp_path: Path
) -> None:
    """`dvc repro` holds the repository's lock while the stage submits, waits and merges: the
    executor only reads DVC's configuration, so nothing waits on that lock."""
    folder, single = project
    checkout = tmp_path / "repro"
    dvc_checkout(checkout, s3, "repro")
    (checkout / "crops.txt").write_bytes((folder / "crops.txt").read_bytes())
    (checkout / "root").symlink_to(folder / "root")
    write_params(checkout / "p.yaml", kind="local", shards=2, data="remote")
    command = f"{sys.executable} -m vcat stage croco-crops crops.txt root out --params p.yaml"
    crops = {"cmd": command, "deps": ["crops.txt", "root"], "outs": ["out"]}
    (checkout / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"crops": crops}}))
    run([DVC, "repro", "-q"], checkout)
    assert folder_bytes(checkout / "out") == single
    assert "out" in (checkout / "dvc.lock").read_text()
    assert not remote_files(s3, "repro/vcat")


def test_a_shard_of_a_run_the_remote_does_not_hold_is_one_line(
    project: tuple[Path, dict[str, bytes]],
) -> None:
    folder, _ = project
    worker = [sys.executable, "-m", "vcat", "executor", "shard", "0123456789abcdef0123"]
    result = subprocess.run(
        [*worker, "--shard", "0/2"], cwd=folder, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "holds no run 0123456789abcdef0123" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.slow
def test_a_slurm_job_array_with_remote_data_merges_to_the_single_runs_bytes(
    project: tuple[Path, dict[str, bytes]], s3: SeaweedS3, slurm_cluster: ClusterState
) -> None:
    folder, single = project
    write_params(folder / "array.yaml", kind="slurm", shards=4, data="remote")
    result = stage(folder, "array", "array.yaml", env=cluster_env(slurm_cluster))
    assert result.returncode == 0, result.stderr
    assert folder_bytes(folder / "array") == single
    tasks = array_tasks(slurm_cluster, folder, 4)
    assert len(tasks) == 4 and all("COMPLETED" in row for row in tasks), tasks
    assert not [name for name in remote_files(s3, "dvc") if name.startswith("vcat/")]
    assert json.loads((folder / "array.json").read_text())["pairs_written"] > 0


# --- every sharded stage of the demo pipeline --------------------------------------------------

#: One stage of each sharded command of dvc.yaml, with an artifact that tests/demo_artifacts.py
#: builds.
DEMO_STAGES = (
    "croco-crops@demo-megadepth",
    "video-frames@demo-video",
    "path-list@demo-video-frame-paths",
    "copydetect-train@demo-copydetect",
    "overlap@demo-megadepth",
    "overlap@demo-matterport",
    "locus-precompute@demo-matterport",
)
RESOLVE = """
import json
from dvc.repo import Repo
with Repo(".") as repo:
    print(json.dumps({s.name: [s.cmd, str(s.outs[0].def_path)] for s in repo.index.stages}))
"""


@pytest.fixture(scope="module")
def demo_commands(demo_root: Path) -> dict[str, list[str]]:
    """Each stage's command and first output, as dvc.yaml resolves them (in a process of its
    own: DVC's repository object is not for pytest's process)."""
    printed = subprocess.run(
        [sys.executable, "-c", RESOLVE], cwd=demo_root, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(printed)


@pytest.mark.slow
@pytest.mark.parametrize("address", DEMO_STAGES)
def test_every_sharded_demo_stage_with_remote_data_makes_the_pipelines_bytes(
    address: str,
    demo_root: Path,
    demo_commands: dict[str, list[str]],
    s3: SeaweedS3,
    tmp_path: Path,
) -> None:
    """The stage's dvc.yaml command, split in 2 shards that fetch their inputs from S3, into
    a new output: the bytes `dvc repro` wrote, and the same metrics."""
    command, output = demo_commands[address]
    checkout = tmp_path / "checkout"
    dvc_checkout(checkout, s3, f"demo-{address.replace('@', '-')}")
    for name in ("data", "dvc.yaml", "catalog"):
        (checkout / name).symlink_to(demo_root / name)
    params = yaml.safe_load((demo_root / "params.yaml").read_text())
    params["executor"] = {"kind": "local", "shards": 2, "data": "remote"}
    (checkout / "params.yaml").write_text(yaml.safe_dump(params))
    words = shlex.split(command)
    assert words[:2] == ["vcat", "stage"] and output in words
    words = [("out" if word == output else word) for word in words[2:]]
    metrics = words.index("--metrics")
    expected_metrics = demo_root / words[metrics + 1]
    words[metrics + 1] = "out.json"
    result = subprocess.run(
        [sys.executable, "-m", "vcat", "stage", *words],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert "shard 1/2 done" in result.stderr
    expected = demo_root / output
    if expected.is_dir():
        assert folder_bytes(checkout / "out") == folder_bytes(expected)
    else:
        assert (checkout / "out").read_bytes() == expected.read_bytes()
    # the metrics too: how the work was split is no part of what `dvc metrics diff` shows
    assert (checkout / "out.json").read_text() == expected_metrics.read_text()


# --- what the submitter refuses to send ---------------------------------------------------------


def test_inputs_are_described_with_links_followed_and_every_folder(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "a" / "empty").mkdir(parents=True)
    (tree / "a" / "x.bin").write_bytes(b"x" * 10)
    (tmp_path / "cache.bin").write_bytes(b"y" * 3)
    (tree / "linked.bin").symlink_to(tmp_path / "cache.bin")  # as DVC's symlink cache type
    files, folders = describe_inputs([Path("tree")], tmp_path, 2)
    assert folders == ["tree", "tree/a", "tree/a/empty"]
    assert files == {
        "tree/a/x.bin": InputFile(hashlib.md5(b"x" * 10).hexdigest(), 10),
        "tree/linked.bin": InputFile(hashlib.md5(b"yyy").hexdigest(), 3),
    }


@pytest.mark.parametrize("kind", ["fifo", "loop", "outside", "dangling"])
def test_inputs_that_cannot_be_sent_are_named(tmp_path: Path, kind: str) -> None:
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    given = [Path("tree")]
    if kind == "fifo":
        os.mkfifo(tree / "sub" / "pipe.jpg")
        expected = "tree/sub/pipe.jpg is a FIFO"
    elif kind == "loop":
        (tree / "sub" / "back").symlink_to(tree)
        expected = "tree/sub/back leads back to tree"
    elif kind == "outside":
        given = [tmp_path.parent]
        expected = f"{tmp_path.parent} lies outside {tmp_path}"
    else:
        (tree / "sub" / "gone.jpg").symlink_to(tmp_path / "nothing")
        expected = "tree/sub/gone.jpg cannot be read"
    with pytest.raises(RemoteDataError, match=re.escape(expected)):
        describe_inputs(given, tmp_path, 1)


# --- what each stage's shards fetch -------------------------------------------------------------


def test_video_frames_shards_fetch_only_their_blocks_videos(tmp_path: Path) -> None:
    from stages.video_frames import block_videos

    folder = tmp_path / "videos"
    names = ["a.mp4", "b/c.mp4", "b/d.MP4", "e.mkv", "notes.txt"]
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")  # listed, never decoded here
    blocks = block_videos(None, folder, None, 2)
    assert blocks == [
        [folder / "a.mp4", folder / "b/c.mp4"],
        [folder / "b/d.MP4", folder / "e.mkv"],
    ]


def test_copydetect_train_shards_fetch_their_classes_and_every_image_to_mix_with(
    demo_root: Path,
) -> None:
    from stages.copydetect_train import block_sources
    from vcat.copydetect.generate import every, list_images

    folder = demo_root / "data/sources/demo-copydetect/references"
    images = list_images(folder)
    selected = [image.path for image in every(images, 10, 0)]
    others = [image.path for image in every(images, 10, 9)]
    blocks = block_sources(None, folder, None, None, 3)
    assert all(block[-len(others) :] == others for block in blocks)
    assert [path for block in blocks for path in block[: -len(others)]] == selected
    assert all(len(block) < len(images) for block in blocks)


def test_a_listing_answers_for_the_folders_under_it_only_in_a_shard(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcat.executors.listing import LISTING_ENV, listed_files

    names = ["src/a.jpg", "src/sub/b.jpg", "src-2/c.jpg", "src.jpg", "other/d.jpg"]
    (tmp_path / ".vcat-listing.json").write_text(json.dumps(names))
    monkeypatch.chdir(tmp_path)
    assert listed_files(Path("src")) is None  # not in a shard: walk the folder
    monkeypatch.setenv(LISTING_ENV, str(tmp_path / ".vcat-listing.json"))
    assert listed_files(Path("src")) == [Path("src/a.jpg"), Path("src/sub/b.jpg")]
    assert listed_files(tmp_path / "src" / "sub") == [tmp_path / "src/sub/b.jpg"]
    assert listed_files(Path("missing")) == []


def scans_tree(root: Path) -> Path:
    """Three Matterport3D scan folders as the layout names them (listed, never read here)."""
    for scan in ("scanA", "scanB", "scanC"):
        for name in (
            f"undistorted_camera_parameters/{scan}.conf",
            "undistorted_color_images/x_i0_0.jpg",
            "undistorted_depth_images/x_d0_0.png",
        ):
            (root / scan / name).parent.mkdir(parents=True, exist_ok=True)
            (root / scan / name).write_bytes(b"")
    return root


def test_overlap_shards_fetch_the_scene_list_and_their_own_scenes(
    demo_root: Path, tmp_path: Path
) -> None:
    from stages.overlap import block_scene_files
    from vcat.geometry.scenes import discovery_files, find_scenes

    for root in (demo_root / "data/sources/demo-megadepth", scans_tree(tmp_path / "mp")):
        found = discovery_files(find_scenes(root))
        blocks = block_scene_files(None, root, 2)
        own = [set(block) - set(found) for block in blocks]
        assert all(block[: len(found)] == found for block in blocks)
        assert all(own) and not own[0] & own[1], "each shard reads its own scenes' files"


def test_locus_precompute_shards_fetch_the_camera_files_and_their_own_scans(
    tmp_path: Path,
) -> None:
    from stages.locus_precompute import block_scan_files

    root = scans_tree(tmp_path / "mp")
    cameras = sorted(root.glob("*/undistorted_camera_parameters/*.conf"))
    blocks = block_scan_files(root, 2)
    own = [set(block) - set(cameras) for block in blocks]
    assert all(sorted(block[: len(cameras)]) == cameras for block in blocks)
    assert all(own) and not own[0] & own[1]
    assert own[0] | own[1] | set(cameras) == {p for p in root.rglob("*") if p.is_file()}


def test_flickr_shards_with_remote_data_download_on_the_node_and_refuse_local_files(
    s3: SeaweedS3, tmp_path: Path
) -> None:
    from tests.http_server import MisbehavingServer, Route
    from tests.test_flickr_images import COUNT, conf, digests, jpeg, relative, write_list

    checkout = tmp_path / "flickr"
    dvc_checkout(checkout, s3, "flickr")
    settings = conf()
    section = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in settings.items())
    executor = "executor:\n  kind: local\n  shards: 2\n  data: remote\n"
    (checkout / "p.yaml").write_text(f"flickr-images:\n{section}{executor}")
    (checkout / "single.yaml").write_text(f"flickr-images:\n{section}")
    command = [sys.executable, "-m", "vcat", "stage", "flickr-images", "list.tsv.gz"]
    with MisbehavingServer() as server:
        for index in range(COUNT):
            server.add(f"/{relative(index)}", Route(jpeg(index)))
        write_list(checkout / "list.tsv.gz", server)
        run([*command, "single", "--params", "single.yaml"], checkout)
        output = run([*command, "split", "--params", "p.yaml"], checkout)
    assert "shard 1/2 done" in output
    assert digests(checkout / "split") == digests(checkout / "single")

    rows = gzip.decompress((checkout / "list.tsv.gz").read_bytes()).decode().splitlines()
    local = [row.replace("http://", "file:///", 1) for row in rows[:1]]
    (checkout / "local.tsv.gz").write_bytes(gzip.compress(("\n".join(local) + "\n").encode()))
    refused = subprocess.run(
        [*command[:-1], "local.tsv.gz", "out", "--params", "p.yaml"],
        cwd=checkout,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert "local.tsv.gz:1: file:///" in refused.stderr and "data: shared" in refused.stderr
    assert "Traceback" not in refused.stderr
