"""The whole demo as a user runs it, in a temporary copy of this repository: build the demo
world, `dvc repro`, release to a local S3 server, clone and pull, change a param, compare;
and a `dvc repro` killed in the middle of a stage that the next run finishes identically."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest

from tests.demo_artifacts import copy_files
from vcat.remote import process_is_server, read_state

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "vcat tests",
    "GIT_AUTHOR_EMAIL": "tests@vcat.invalid",
    "GIT_COMMITTER_NAME": "vcat tests",
    "GIT_COMMITTER_EMAIL": "tests@vcat.invalid",
}


def run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr


def copy_checkout(destination: Path, env: dict[str, str]) -> Path:
    """This repository's files as git sees them (tracked and new, not ignored), committed
    in a fresh repository at ``destination``."""
    copy_files(destination)
    run(["git", "init", "-q"], destination, env)
    run(["git", "add", "-A"], destination, env)
    run(["git", "commit", "-qm", "copy of the project"], destination, env)
    return destination


def outputs(project: Path) -> dict[str, str]:
    """md5 of every file under data/ and metrics/, but work areas and the gates' Data Docs
    (``<artifact>.gate/docs/``: run times, not DVC outputs, so a clone that pulls has none)."""
    digests = {}
    for top in ("data", "metrics"):
        for path in sorted((project / top).rglob("*")):
            relative = path.relative_to(project)
            parts = relative.parts
            work_area = any(part.endswith(".vcat") for part in parts)
            docs = any(a.endswith(".gate") and b == "docs" for a, b in pairwise(parts))
            if path.is_file() and not work_area and not docs:
                digests[relative.as_posix()] = hashlib.md5(path.read_bytes()).hexdigest()
    return digests


def stop_servers(xdg: Path) -> None:
    for folder in (xdg / "vcat" / "s3").glob("*"):
        state = read_state(folder)
        if state is not None and state.pid and process_is_server(state.pid, state.server_dir):
            os.killpg(state.pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    xdg = tmp_path_factory.mktemp("xdg")
    variables = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VCAT_CATALOG", "VCAT_SETTINGS") and not key.startswith("AWS_")
    }
    variables.update(
        GIT_IDENTITY,
        XDG_DATA_HOME=str(xdg),
        DVC_NO_ANALYTICS="1",
        COLUMNS="200",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    yield variables
    stop_servers(xdg)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """A copy of the project with the demo world built and the pipeline reproduced."""
    project = copy_checkout(tmp_path_factory.mktemp("demo"), env)
    built = run(["vcat", "demo", "build"], project, env)
    assert "differ" not in built
    run(["dvc", "repro"], project, env)
    return project


def test_repro_twice_does_nothing_the_second_time(demo: Path, env: dict[str, str]) -> None:
    stats = json.loads((demo / "metrics" / "datasets" / "demo-flickr.json").read_text())
    assert stats["subsets"]["0.5k"] == {"listed": 500, "expected": 500}
    again = run(["dvc", "repro"], demo, env)
    assert "Running stage" not in again
    assert "Data and pipelines are up to date" in again
    # the metrics committed in the repository are what the demo reproduces, byte for byte
    assert run(["git", "status", "--porcelain", "--", "metrics", "dvc.lock"], demo, env) == ""


def test_release_clone_pull_then_a_param_change_shows_in_compare(
    demo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    run(["vcat", "remote", "up"], demo, env)
    assert "secret_access_key" not in (demo / ".dvc" / "config").read_text()
    released = run(["vcat", "release"], demo, env)
    assert "pushed" in released
    run(["git", "add", "-A"], demo, env)
    run(["git", "commit", "-qm", "released", "--allow-empty"], demo, env)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(demo), str(clone)], tmp_path, env)
    run(["vcat", "remote", "up"], clone, env)
    run(["dvc", "pull"], clone, env)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], clone, env)
    assert outputs(clone) == outputs(demo)

    params = clone / "params.yaml"
    params.write_text(params.read_text().replace("width: 120", "width: 128"))
    run(["dvc", "repro"], clone, env)
    run(["git", "commit", "-qam", "memmap slots of 128 bytes"], clone, env)
    compared = json.loads(run(["vcat", "compare", "HEAD~1", "HEAD", "--json"], clone, env))
    assert compared["format"] == "vcat.compare/1"
    table = run(["vcat", "compare", "HEAD~1", "HEAD"], clone, env)
    assert "flickr-memmap.width" in table and "128" in table
    metric = "metrics/flickr-memmap/demo-flickr/flickr-0.5k.json"
    assert json.loads((clone / metric).read_text())["bytes"] == 500 * 128
    assert "60000" in table and "64000" in table


def test_repro_killed_mid_stage_finishes_identically(
    demo: Path, env: dict[str, str], tmp_path: Path
) -> None:
    project = copy_checkout(tmp_path / "killed", env)
    shutil.copytree(demo / ".vcat" / "demo-world", project / ".vcat" / "demo-world")
    work_area = project / "data" / "sources" / ".demo-megadepth.vcat"
    final = project / "data" / "sources" / "demo-megadepth"
    repro = subprocess.Popen(
        ["dvc", "repro"],
        cwd=project,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not work_area.exists() or final.exists():
        assert repro.poll() is None, "dvc repro ended before the first fetch began"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.killpg(repro.pid, signal.SIGKILL)
    repro.wait()
    assert not final.exists(), "the fetch stage had finished before the kill"

    run(["dvc", "repro"], project, env)
    assert outputs(project) == outputs(demo)
    assert (project / "dvc.lock").read_text() == (demo / "dvc.lock").read_text()
