"""Local settings: roots are remembered, read back, and a hand-edited file fails clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from vcat.settings import (
    SETTINGS_ENV,
    SettingsError,
    dataset_root,
    forget_root,
    load_settings,
    remember_root,
    set_local_root,
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
    # No temporary files are left beside it; only the (empty) lock file that writers share.
    assert sorted(p.name for p in written.parent.iterdir()) == [
        ".settings.yaml.lock",
        "settings.yaml",
    ]
    # Private to the user: the file can name mounts and the folders file: URLs may read.
    assert written.stat().st_mode & 0o777 == 0o600


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
        # local_roots: the folders file: URLs may read
        ("local_roots:\n  - relative/nas\n", 2, "not an absolute path"),
        ("local_roots: /mnt/nas\n", 1, "local_roots: Input should be a valid"),
        ("roots: {}\nlocal_root: [/mnt]\n", 2, "unknown key 'local_root'"),
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


@pytest.mark.parametrize(
    "text",
    [
        "roots:\n",
        "roots: null\n",
        "roots: {}\n",
        "roots:\nlocal_roots:\n",
        "local_roots: []\n",
        "# only a comment\nroots: ~\n",
    ],
)
def test_empty_or_null_roots_are_valid(project: Path, text: str) -> None:
    path = settings_path(project)
    path.parent.mkdir()
    path.write_text(text)
    assert load_settings(project).roots == {}
    assert load_settings(project).local_roots == ()
    # ... and remembering a root on top of such a file works and keeps it valid.
    remember_root(project, "eth3d", Path("/data/eth3d"))
    assert load_settings(project).roots == {"eth3d": "/data/eth3d"}


def test_forget_drops_one_root_and_keeps_the_rest(project: Path) -> None:
    remember_root(project, "eth3d", Path("/data/eth3d"))
    remember_root(project, "inloc", Path("/data/inloc"))
    set_local_root(project, Path("/mnt/nas"), allowed=True)
    assert forget_root(project, "eth3d") is True
    assert forget_root(project, "eth3d") is False
    settings = load_settings(project)
    assert settings.roots == {"inloc": "/data/inloc"}
    assert settings.local_roots == ("/mnt/nas",)
    assert dataset_root("eth3d", project) == project / "data" / "sources" / "eth3d"


def test_local_roots_are_added_once_and_removed(project: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    assert set_local_root(project, nas, allowed=True) is True
    assert set_local_root(project, nas, allowed=True) is False
    remember_root(project, "eth3d", Path("/data/eth3d"))  # keeps local_roots
    assert load_settings(project).local_roots == (str(nas),)
    assert set_local_root(project, nas, allowed=False) is True
    assert set_local_root(project, nas, allowed=False) is False
    assert load_settings(project).local_roots == ()


def test_a_file_edited_in_place_is_read_again(project: Path) -> None:
    """The parsed file is reused only while its bytes are the same, also for an edit of the
    same size within the same clock tick."""
    path = settings_path(project)
    path.parent.mkdir()
    path.write_text("roots:\n  eth3d: /data/aaaaa\n")
    assert load_settings(project).roots == {"eth3d": "/data/aaaaa"}
    path.write_text("roots:\n  eth3d: /data/bbbbb\n")
    assert load_settings(project).roots == {"eth3d": "/data/bbbbb"}


_REMEMBER_MANY = """
import sys
from pathlib import Path
from vcat.settings import remember_root
project, first, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for index in range(first, first + count):
    remember_root(project, f"entry-{index:03d}", Path(f"/data/entry-{index:03d}"))
"""


@pytest.mark.slow
def test_concurrent_writers_lose_no_root(project: Path) -> None:
    """Several processes remembering different roots at the same time all keep theirs."""
    processes, each = 4, 25
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(SETTINGS_ENV, None)
    started = [
        subprocess.Popen(
            [sys.executable, "-c", _REMEMBER_MANY, str(project), str(n * each), str(each)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    for process in started:
        _, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
    roots = load_settings(project).roots
    expected = {f"entry-{i:03d}": f"/data/entry-{i:03d}" for i in range(processes * each)}
    assert roots == expected
    assert settings_path(project).stat().st_mode & 0o777 == 0o600
    # no temporary file is left behind
    names = sorted(p.name for p in settings_path(project).parent.iterdir())
    assert names == [".settings.yaml.lock", "settings.yaml"]
