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
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.http_server import MisbehavingServer, Route
from vcat.seaweedfs import S3Credentials, SeaweedS3

VCAT = str(Path(sys.executable).with_name("vcat"))
BIG = random.Random(3).randbytes(24 << 20)
# A test run started by a shell in the background (`pytest ... &` in a script, as under a
# load generator) inherits SIGINT as ignored; an ignored signal stays ignored across exec, so
# Python installs no KeyboardInterrupt handler and `vcat fetch` rightly finishes the download
# (exit 0). The interrupt tests start vcat through this launcher, which restores the default.
DEFAULT_SIGINT = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.execv(sys.argv[1], sys.argv[1:])",
]
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
    checksum_source: {{kind: published, where: "the test"}}
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


@dataclass
class SlowFetch:
    """`vcat fetch big` running in its own process against a slow server."""

    route: Route
    project: Path
    process: subprocess.Popen[str]

    @property
    def final(self) -> Path:
        return self.project / "data" / "sources" / "big" / "big.bin"

    @property
    def partial(self) -> Path:
        return self.project / "data" / "sources" / ".big.vcat" / "partial" / "main.part"


def unpublished_yaml(url: str, filename: str) -> str:
    """An entry whose source publishes neither size nor checksum."""
    return f"""title: Test data
description: One file from a local server, as its guide gives it.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: main
    url: {url}
    filename: {filename}
    checksum: unpublished
"""


def start_slow_fetch(
    tmp_path: Path,
    server: MisbehavingServer,
    min_bytes: int,
    route: Route | None = None,
    published: bool = True,
) -> SlowFetch:
    """Start the fetch and return once ``min_bytes`` are in the partial file, checking all
    along that nothing appears at the final path."""
    route = route or Route(BIG, "slow")
    url = server.add("/big.bin", route)
    text = entry_yaml(url, BIG, "big.bin") if published else unpublished_yaml(url, "big.bin")
    project = make_project(tmp_path / "project", {"big": text})
    process = subprocess.Popen(
        [*DEFAULT_SIGINT, VCAT, "fetch", "big", "--no-dvc"],
        cwd=project,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    fetch = SlowFetch(route, project, process)
    deadline = time.monotonic() + 60
    while not (fetch.partial.exists() and fetch.partial.stat().st_size > min_bytes):
        assert not fetch.final.exists()
        assert process.poll() is None, "the download ended before it could be interrupted"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return fetch


def finish_and_check_resumed(fetch: SlowFetch, kept: int) -> None:
    """Run the fetch again on a well-behaved server: it must resume at ``kept`` bytes."""
    fetch.route.behaviour = "good"
    out = run([VCAT, "fetch", "big", "--no-dvc"], fetch.project)
    assert "verified" in out
    assert fetch.final.read_bytes() == BIG
    assert fetch.route.ranges[-1] == f"bytes={kept}-"
    assert not fetch.partial.exists()


def test_killed_download_resumes_to_identical_bytes(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    fetch = start_slow_fetch(tmp_path, server, 4 << 20)
    fetch.process.send_signal(signal.SIGKILL)
    fetch.process.communicate()
    kept = fetch.partial.stat().st_size
    assert 0 < kept < len(BIG)
    assert not fetch.final.exists()
    finish_and_check_resumed(fetch, kept)


def test_ctrl_c_stops_cleanly_and_the_next_run_resumes(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    fetch = start_slow_fetch(tmp_path, server, 2 << 20)
    fetch.process.send_signal(signal.SIGINT)
    _, err = fetch.process.communicate(timeout=30)
    assert fetch.process.returncode == 130
    assert "interrupted" in err and "run the same command to resume" in err
    kept = fetch.partial.stat().st_size
    assert 0 < kept < len(BIG)
    assert not fetch.final.exists()
    finish_and_check_resumed(fetch, kept)


MONDAY = "Mon, 01 Dec 2025 10:00:00 GMT"
TUESDAY = "Tue, 02 Dec 2025 10:00:00 GMT"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ({}, {}),
        ({}, {"if_range": "ignore"}),
        (
            {"send_etag": False, "last_modified": MONDAY},
            {"send_etag": False, "last_modified": TUESDAY, "if_range": "ignore"},
        ),
    ],
    ids=["new-etag", "ignores-if-range", "last-modified-ignores-if-range"],
)
def test_a_file_replaced_upstream_between_runs_is_placed_whole(
    tmp_path: Path, server: MisbehavingServer, before: dict[str, object], after: dict[str, object]
) -> None:
    """No checksum would catch a splice here: only the version check keeps it whole."""
    route = Route(BIG, "slow", **before)  # type: ignore[arg-type]
    fetch = start_slow_fetch(tmp_path, server, 4 << 20, route, published=False)
    fetch.process.send_signal(signal.SIGKILL)
    fetch.process.communicate()
    assert 0 < fetch.partial.stat().st_size < len(BIG)
    replaced = random.Random(5).randbytes(len(BIG))
    route.data, route.behaviour = replaced, "good"
    for name, value in after.items():
        setattr(route, name, value)
    out = run([VCAT, "fetch", "big", "--no-dvc"], fetch.project)
    assert "fetched" in out
    assert fetch.final.read_bytes() == replaced


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[SeaweedS3]:
    with SeaweedS3(tmp_path / "seaweed", S3Credentials("vcat-test", "vcat-test-secret")) as running:
        yield running


@pytest.mark.slow
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
