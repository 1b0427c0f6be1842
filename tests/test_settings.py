"""Local settings: roots are remembered, read back, and a hand-edited file fails clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcat.settings import (
    SETTINGS_ENV,
    SettingsError,
    dataset_root,
    load_settings,
    remember_root,
    settings_path,
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A bare project folder (dvc.yaml + catalog/), with $VCAT_SETTINGS unset."""
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    (tmp_path / "catalog").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def test_round_trip_keeps_every_root(project: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "MegaDepth", tmp_path / "with space ünï"
    written = remember_root(project, "megadepth-v1", first)
    remember_root(project, "eth3d", second)
    assert written == project / ".vcat" / "settings.yaml"
    assert load_settings(project).roots == {"eth3d": str(second), "megadepth-v1": str(first)}
    assert dataset_root("megadepth-v1", project) == first
    assert dataset_root("eth3d", project) == second
    # No temporary files are left beside it.
    assert [p.name for p in written.parent.iterdir()] == ["settings.yaml"]


def test_remember_replaces_a_root_and_makes_it_absolute(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remember_root(project, "eth3d", Path("/old/place"))
    monkeypatch.chdir(project)
    remember_root(project, "eth3d", Path("relative/data"))
    assert dataset_root("eth3d", project) == project.resolve() / "relative" / "data"


def test_default_root_is_where_fetch_writes(project: Path) -> None:
    assert load_settings(project).roots == {}
    assert dataset_root("inloc", project) == project / "data" / "sources" / "inloc"


def test_dataset_root_finds_the_project_from_the_working_directory(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remember_root(project, "eth3d", Path("/data/eth3d"))
    (project / "stages").mkdir()
    monkeypatch.chdir(project / "stages")
    assert dataset_root("eth3d") == Path("/data/eth3d")
    assert dataset_root("inloc") == project.resolve() / "data" / "sources" / "inloc"


def test_environment_names_another_file(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere" / "mine.yaml"
    monkeypatch.setenv(SETTINGS_ENV, str(other))
    assert settings_path(project) == other
    remember_root(project, "eth3d", Path("/data/eth3d"))
    assert other.is_file()
    assert not (project / ".vcat").exists()


def test_comments_only_file_is_empty_settings(project: Path) -> None:
    path = settings_path(project)
    path.parent.mkdir()
    path.write_text("# nothing yet\n\n")
    assert load_settings(project).roots == {}


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("roots:\n  eth3d: /data/eth3d\nroot:\n  x: /y\n", 3, "unknown key 'root'"),
        ("roots:\n  eth3d: /data/eth3d\n  inloc: data/inloc\n", 3, "not an absolute path"),
        ("roots:\n  eth3d: /a\n  Bad Name: /b\n", 3, "not a catalog entry name"),
        ("roots:\n  eth3d: /a\n  eth3d: /b\n", 3, "duplicate key 'eth3d'"),
        # Hand-written text that is not YAML at all.
        ("roots:\n  eth3d: /a\n  inloc = /b: [\n", 4, "invalid YAML"),
        ("roots:\n  - /data/eth3d\n", 1, "roots: Input should be a valid dictionary"),
        ("- just a list\n", 1, "expected a mapping with 'roots'"),
    ],
)
def test_bad_file_names_file_line_and_fix(
    project: Path, text: str, line: int, message: str
) -> None:
    path = settings_path(project)
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(SettingsError) as caught:
        load_settings(project)
    problem = caught.value.problems[0]
    assert (problem.path, problem.line) == (path, line)
    assert message in problem.message
    assert "delete the file" in problem.message  # says what to do
    assert f"settings.yaml:{line}: error:" in str(caught.value)


def test_remember_refuses_to_overwrite_a_broken_file(project: Path) -> None:
    path = settings_path(project)
    path.parent.mkdir()
    path.write_text("roots: [\n")
    with pytest.raises(SettingsError):
        remember_root(project, "eth3d", Path("/data"))
    assert path.read_text() == "roots: [\n"
