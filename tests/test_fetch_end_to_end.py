"""`vcat fetch` as a user runs it: a separate process that is killed and resumed, an S3
source on a SeaweedFS server, and DVC bringing the data back into a fresh clone."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_server import MisbehavingServer, Route
from vcat.seaweedfs import S3Credentials, SeaweedS3

VCAT = str(Path(sys.executable).with_name("vcat"))
BIG = random.Random(3).randbytes(24 << 20)
GITIGNORE = "/data/**\n!/data/**/\n!/data/**/*.dvc\n!/data/**/.gitignore\n.vcat/\n"


def entry_yaml(url: str, data: bytes, filename: str) -> str:
    return f"""title: Test data
description: One file from a local server.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: main
    url: {url}
    filename: {filename}
    size: {len(data)}
    checksum: md5:{hashlib.md5(data).hexdigest()}
"""


def make_project(folder: Path, entries: dict[str, str]) -> Path:
    (folder / "catalog" / "datasets").mkdir(parents=True)
    (folder / "catalog" / "models").mkdir()
    (folder / "dvc.yaml").write_text("stages: {}\n")
    for name, text in entries.items():
        (folder / "catalog" / "datasets" / f"{name}.yaml").write_text(text)
    return folder


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        args, cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def test_killed_download_resumes_to_identical_bytes(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    route = Route(BIG, "slow")
    url = server.add("/big.bin", route)
    project = make_project(tmp_path / "project", {"big": entry_yaml(url, BIG, "big.bin")})
    final = project / "data" / "sources" / "big" / "big.bin"
    partial = project / "data" / "sources" / ".big.vcat" / "partial" / "main.part"
    process = subprocess.Popen(
        [VCAT, "fetch", "big", "--no-dvc"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 4 << 20):
        assert not final.exists()
        assert process.poll() is None, "the download ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < len(BIG)
    assert not final.exists()
    route.behaviour = "good"
    out = run([VCAT, "fetch", "big", "--no-dvc"], project)
    assert "verified" in out
    assert final.read_bytes() == BIG
    assert route.ranges[-1] is not None
    resumed_at = int(route.ranges[-1].removeprefix("bytes=").rstrip("-"))
    assert resumed_at >= kept  # fsync'd bytes at the kill are at least what we saw
    assert not partial.exists()


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    route = Route(BIG, "slow")
    url = server.add("/big.bin", route)
    project = make_project(tmp_path / "project", {"big": entry_yaml(url, BIG, "big.bin")})
    partial = project / "data" / "sources" / ".big.vcat" / "partial" / "main.part"
    process = subprocess.Popen(
        [VCAT, "fetch", "big", "--no-dvc"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (partial.exists() and partial.stat().st_size > 2 << 20):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "interrupted" in err and "run the same command to resume" in err
    assert 0 < partial.stat().st_size < len(BIG)
    route.behaviour = "good"
    run([VCAT, "fetch", "big", "--no-dvc"], project)
    assert (project / "data" / "sources" / "big" / "big.bin").read_bytes() == BIG
    assert route.ranges[-1] is not None and route.ranges[-1] != "bytes=0-"


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path / "seaweed", S3Credentials("vcat-test", "vcat-test-secret")) as running:
        yield running


def test_s3_source_is_fetched_tracked_and_pulled_into_a_clone(
    tmp_path: Path, s3: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    import s3fs

    env = s3.environment()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    filesystem = s3fs.S3FileSystem(
        key=env["AWS_ACCESS_KEY_ID"],
        secret=env["AWS_SECRET_ACCESS_KEY"],
        client_kwargs={"endpoint_url": s3.endpoint},
        skip_instance_cache=True,
    )
    filesystem.mkdir("upstream")
    filesystem.mkdir("remote")
    data = random.Random(4).randbytes(3 << 20)
    filesystem.pipe("upstream/releases/weights.bin", data)
    project = make_project(
        tmp_path / "project",
        {"weights": entry_yaml("s3://upstream/releases/weights.bin", data, "weights.bin")},
    )
    (project / ".gitignore").write_text(GITIGNORE)
    run(["git", "init", "-q"], project)
    dvc = str(Path(VCAT).with_name("dvc"))
    run([dvc, "init", "-q"], project)
    run([dvc, "remote", "add", "-d", "store", "s3://remote/cache"], project)
    run([dvc, "remote", "modify", "store", "endpointurl", s3.endpoint], project)
    for key, value in (("access_key_id", env["AWS_ACCESS_KEY_ID"]),
                       ("secret_access_key", env["AWS_SECRET_ACCESS_KEY"])):  # fmt: skip
        run([dvc, "remote", "modify", "--local", "store", key, value], project)

    out = run([VCAT, "fetch", "weights"], project, env)
    assert "verified" in out and "tracked by DVC in data/sources/weights.dvc" in out
    placed = project / "data" / "sources" / "weights" / "weights.bin"
    assert placed.read_bytes() == data
    run(["git", "add", "-A"], project)
    tracked = run(["git", "ls-files"], project).split()
    assert "data/sources/weights.dvc" in tracked
    assert not any(path.endswith("weights.bin") for path in tracked)
    assert ".dvc/config.local" not in tracked
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "fetch"], project)
    run([dvc, "push"], project, env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    shutil.copy(project / ".dvc" / "config.local", clone / ".dvc" / "config.local")
    run([dvc, "pull"], clone, env)
    assert (clone / "data" / "sources" / "weights" / "weights.bin").read_bytes() == data
    assert "up to date" in run([dvc, "status"], clone).lower()

    # the original checkout still knows it verified the file; the clone checks it in place
    assert '"state": "verified"' in run([VCAT, "status", "weights", "--json"], project)
    assert '"state": "fetched"' in run([VCAT, "status", "weights", "--json"], clone)
    out = run([VCAT, "fetch", "weights"], clone, env)
    assert "already in place; size and checksum match the catalog" in out
    assert '"state": "verified"' in run([VCAT, "status", "weights", "--json"], clone)
    assert "up to date" in run([dvc, "status"], clone).lower()
