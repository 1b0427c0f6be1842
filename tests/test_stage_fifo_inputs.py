"""A FIFO where a preparation stage expects a file ends the stage with a line naming it, never
a wait: a FIFO blocks whoever opens it until a writer comes, which would hang `dvc repro`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

VCAT = str(Path(sys.executable).with_name("vcat"))


def stage(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [VCAT, "stage", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "input.txt"
    os.mkfifo(path)
    (tmp_path / "empty").mkdir()
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["croco-crops", "input.txt", "empty", "out"],
        ["video-frames", "input.txt", "out"],
        ["vsc-train", "empty", "input.txt", "out"],
        ["path-list", "input.txt", "out", "--format", "path-list"],
    ],
    ids=["crop-list", "video-list", "vsc-ground-truth", "path-list"],
)
def test_a_fifo_as_the_input_file_is_refused_by_name(fifo: Path, args: list[str]) -> None:
    result = stage(fifo.parent, *args)
    assert result.returncode == 2, result.stderr
    assert "input.txt" in result.stderr and "FIFO" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_fifo_as_a_scene_info_file_fails_its_scene_by_name(tmp_path: Path) -> None:
    (tmp_path / "root" / "scene_info").mkdir(parents=True)
    os.mkfifo(tmp_path / "root" / "scene_info" / "demo99.npz")
    result = stage(tmp_path, "overlap", "root", "out")
    assert result.returncode == 1, result.stderr
    failures = (tmp_path / "out" / "failures.tsv").read_text().splitlines()
    assert failures[1].startswith("demo99\tunreadable_scene\troot/scene_info/demo99.npz")
    assert "FIFO" in failures[1]
