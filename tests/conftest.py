"""Fixtures shared by the test modules; a module may define its own ``project`` instead."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from vcat.cluster.local import ClusterState


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty vcat project (dvc.yaml and catalog/) made the working directory, with no
    catalog or settings file named by the environment."""
    (tmp_path / "catalog" / "datasets").mkdir(parents=True)
    (tmp_path / "catalog" / "models").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    monkeypatch.delenv("VCAT_SETTINGS", raising=False)
    return tmp_path


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root whose ``data/prepared`` holds the demo pipeline's artifacts (this
    checkout after ``dvc repro``, else a copy built once per session: tests/demo_artifacts.py)."""
    from tests.demo_artifacts import demo_root as find_or_build

    return find_or_build(tmp_path_factory.mktemp("demo-project"))


@pytest.fixture(scope="session")
def demo_trained_root(demo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project root after `vcat run`: the demo's trained head and evaluations
    (tests/demo_artifacts.py)."""
    from tests.demo_artifacts import trained_root

    return trained_root(demo_root, tmp_path_factory.mktemp("demo-trained"))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    """A real single-node SLURM cluster (vcat.cluster) in a temporary folder, started once per
    test session; ``SLURM_CONF`` in its ``environment()`` points clients at it."""
    from vcat.cluster.local import cluster_down, cluster_up

    report = cluster_up(tmp_path_factory.mktemp("slurm"))
    try:
        yield report.state
    finally:
        cluster_down(report.state.folder)
