"""The README's "Pointing the pipeline at the real datasets" example works as written: its
params give a pipeline that DVC accepts, in which every stage reads what another writes."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
SECTION = "### Pointing the pipeline at the real datasets"


def readme_params() -> dict[str, dict[str, object]]:
    """The YAML block of the README section, as the keys it tells the user to set."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None, "the section has no yaml example"
    return yaml.safe_load(block.group(1))


def project_copy(destination: Path) -> Path:
    """What a pipeline run reads of this project: dvc.yaml, params, catalog, code, DVC config."""
    for name in ("dvc.yaml", "params.yaml", "pyproject.toml"):
        shutil.copy2(REPO / name, destination / name)
    for name in ("catalog", "stages", "vcat"):
        shutil.copytree(REPO / name, destination / name, ignore=shutil.ignore_patterns("*.pyc"))
    (destination / ".dvc").mkdir()
    shutil.copy2(REPO / ".dvc" / "config", destination / ".dvc" / "config")
    subprocess.run(["git", "init", "-q"], cwd=destination, check=True)
    return destination


#: Sections the example replaces whole (the README says so); in the others it sets the keys shown.
REPLACED = ("gates", "model_gates", "result_gates")  # gate sections are replaced whole


def set_keys(params_file: Path, changes: dict[str, dict[str, object]]) -> None:
    params = yaml.safe_load(params_file.read_text())
    for section, keys in changes.items():
        if section in REPLACED:
            params[section] = keys
        else:
            params.setdefault(section, {}).update(keys)
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def real_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = project_copy(tmp_path_factory.mktemp("real-pipeline"))
    set_keys(project / "params.yaml", readme_params())
    return project


def test_the_example_names_entries_of_the_catalog(real_pipeline: Path) -> None:
    for entry in readme_params()["fetch"]["entries"]:
        assert (real_pipeline / "catalog" / "datasets" / f"{entry}.yaml").is_file(), entry


def test_dvc_accepts_the_example_pipeline(real_pipeline: Path) -> None:
    for args in (["status"], ["dag"]):
        result = subprocess.run([DVC, *args], cwd=real_pipeline, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "fetch@flickr-cc" in result.stdout
        assert "flickr-memmap@1M" in result.stdout
        assert "fetch@demo-flickr" not in result.stdout


def test_the_example_fetches_only_the_lists_it_uses(real_pipeline: Path) -> None:
    from dvc.repo import Repo

    with Repo(str(real_pipeline)) as repo:
        commands = {stage.name: stage.cmd for stage in repo.index.stages}
    assert commands["fetch@flickr-cc"].split() == [
        *["vcat", "fetch", "flickr-cc", "--no-dvc", "--subset", "0.1M", "--subset", "1M"]
    ]
    assert commands["fetch@croco-crop-metadata"].split() == [
        *["vcat", "fetch", "croco-crop-metadata", "--no-dvc"]
    ]


def fetched_files(project: Path, entry: str, selection: dict[str, list[str]]) -> list[Path]:
    """The files (or unpack folders) that ``vcat fetch ENTRY`` with ``selection`` places."""
    from vcat.catalog.loader import load_entry
    from vcat.catalog.schema import ArchiveKind
    from vcat.fetch.placing import archive_target, file_target
    from vcat.fetch.selection import select_sources

    spec = load_entry(project / "catalog" / "datasets" / f"{entry}.yaml").spec
    root = project / "data" / "sources" / entry
    sources = select_sources(entry, spec, selection.get("subset", ()), selection.get("source", ()))
    return [
        archive_target(s, root) if s.archive is not ArchiveKind.NONE else file_target(s, root)
        for s in sources
    ]


def test_every_stage_of_the_example_reads_what_another_writes(real_pipeline: Path) -> None:
    from dvc.repo import Repo

    selections = readme_params()["fetch"]["entries"]
    with Repo(str(real_pipeline)) as repo:
        stages = list(repo.index.stages)
    outputs = [Path(out.fs_path) for stage in stages for out in stage.outs]
    sources = real_pipeline / "data" / "sources"
    for stage in stages:
        for dep in stage.deps:
            path = Path(dep.fs_path)
            if not path.is_relative_to(real_pipeline / "data"):
                continue  # code, catalog entries and params are in git
            where = f"{stage.name} reads {path.relative_to(real_pipeline)}"
            assert any(path == out or path.is_relative_to(out) for out in outputs), (
                f"{where}, which no stage writes"
            )
            if path.is_relative_to(sources) and path.parent != sources:
                entry = path.relative_to(sources).parts[0]
                placed = fetched_files(real_pipeline, entry, selections[entry])
                assert any(path == p or path.is_relative_to(p) for p in placed), (
                    f"{where}, which the selection {selections[entry]} of fetch@{entry} "
                    "does not download"
                )


def test_a_dry_run_lists_every_stage_after_the_stages_it_reads(real_pipeline: Path) -> None:
    from dvc.repo import Repo

    result = subprocess.run(
        [DVC, "repro", "--dry", "--force"], cwd=real_pipeline, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ERROR" not in result.stdout + result.stderr
    listed = re.findall(r"^Running stage '([^']+)':", result.stdout, re.MULTILINE)
    with Repo(str(real_pipeline)) as repo:
        graph = repo.index.graph
        stages = {stage.name: stage for stage in repo.index.stages}
        assert sorted(listed) == sorted(stages), "the dry run skipped or repeated a stage"
        position = {name: i for i, name in enumerate(listed)}
        for name, stage in stages.items():
            for producer in graph.successors(stage):  # DVC's edges point at what a stage reads
                assert position[producer.name] < position[name], (
                    f"{name} is listed before {producer.name}, whose output it reads"
                )
    assert not (real_pipeline / "data").exists(), "a dry run wrote data"
