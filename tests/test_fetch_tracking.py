"""Who tracks a fetched source in DVC: its own ``.dvc`` file, or the ``dvc.yaml`` stage that
writes the same folder. `vcat fetch` must not fight the pipeline over one output."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.http_server import MisbehavingServer, Route

VCAT = str(Path(sys.executable).with_name("vcat"))
DVC = str(Path(sys.executable).with_name("dvc"))
DATA = b"tracked once\n" * 1000

FETCH_STAGE = """stages:
  fetch:
    foreach: [tiny]
    do:
      cmd: vcat fetch ${item} --no-dvc
      outs:
        - data/sources/${item}
"""


def entry_yaml(url: str) -> str:
    return f"""title: Tiny
description: One file from a local server.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: main
    url: {url}
    filename: tiny.bin
    size: {len(DATA)}
    checksum: md5:{hashlib.md5(DATA).hexdigest()}
"""


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)


@pytest.fixture
def url() -> Iterator[str]:
    with MisbehavingServer() as server:
        yield server.add("/tiny.bin", Route(DATA))


def make_repo(folder: Path, url: str, dvc_yaml: str) -> Path:
    (folder / "catalog" / "datasets").mkdir(parents=True)
    (folder / "catalog" / "models").mkdir()
    (folder / "catalog" / "datasets" / "tiny.yaml").write_text(entry_yaml(url))
    (folder / "dvc.yaml").write_text(dvc_yaml)
    for args in (["git", "init", "-q"], [DVC, "init", "-q"]):
        assert run(args, folder).returncode == 0
    return folder


def test_a_source_no_stage_writes_is_added_to_dvc(tmp_path: Path, url: str) -> None:
    repo = make_repo(tmp_path, url, "stages: {}\n")
    result = run([VCAT, "fetch", "tiny"], repo)
    assert result.returncode == 0, result.stderr
    assert (repo / "data" / "sources" / "tiny.dvc").is_file()
    assert "tracked by DVC in data/sources/tiny.dvc" in result.stdout


def test_a_source_a_stage_writes_is_left_to_the_stage(tmp_path: Path, url: str) -> None:
    repo = make_repo(tmp_path, url, FETCH_STAGE)
    result = run([VCAT, "fetch", "tiny"], repo)
    assert result.returncode == 0, result.stderr
    assert (repo / "data" / "sources" / "tiny" / "tiny.bin").read_bytes() == DATA
    assert not (repo / "data" / "sources" / "tiny.dvc").exists()
    assert "output of stage fetch@tiny" in result.stdout
    assert "dvc commit fetch@tiny" in result.stdout
    # the stage then records the data without any conflict
    commit = run([DVC, "commit", "-f", "fetch@tiny"], repo)
    assert commit.returncode == 0, commit.stderr
    status = run([DVC, "status", "fetch@tiny"], repo)
    assert status.returncode == 0 and "up to date" in status.stdout, status.stdout


def test_an_explicit_dvc_add_of_a_stage_output_fails_with_the_way_out(
    tmp_path: Path, url: str
) -> None:
    repo = make_repo(tmp_path, url, FETCH_STAGE)
    result = run([VCAT, "fetch", "tiny", "--dvc"], repo)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "the data is in place but not added to DVC" in result.stderr
    assert "stage fetch@tiny" in result.stderr
    assert (repo / "data" / "sources" / "tiny" / "tiny.bin").read_bytes() == DATA
    assert not (repo / "data" / "sources" / "tiny.dvc").exists()


def test_a_dvc_file_left_from_before_the_stage_is_named_with_the_fix(
    tmp_path: Path, url: str
) -> None:
    repo = make_repo(tmp_path, url, "stages: {}\n")
    assert run([VCAT, "fetch", "tiny"], repo).returncode == 0
    (repo / "dvc.yaml").write_text(FETCH_STAGE)  # the pipeline now fetches it too
    result = run([VCAT, "fetch", "tiny"], repo)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "dvc remove data/sources/tiny.dvc" in " ".join(result.stderr.split())
    # following the advice makes the pipeline usable again, with the data kept
    assert run([DVC, "remove", "data/sources/tiny.dvc"], repo).returncode == 0
    assert (repo / "data" / "sources" / "tiny" / "tiny.bin").read_bytes() == DATA
    assert run([VCAT, "fetch", "tiny"], repo).returncode == 0


def test_no_dvc_never_tracks(tmp_path: Path, url: str) -> None:
    repo = make_repo(tmp_path, url, "stages: {}\n")
    result = run([VCAT, "fetch", "tiny", "--no-dvc"], repo)
    assert result.returncode == 0, result.stderr
    assert not (repo / "data" / "sources" / "tiny.dvc").exists()
