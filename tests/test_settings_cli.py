"""The newcomer's settings through the CLI: `vcat fetch --dest` remembers a root only once the
tree passes, and `vcat settings show|forget|allow|disallow` read and change the file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app
from vcat.localfiles import DEMO_WORLD, LOCAL_ROOTS_ENV
from vcat.settings import SETTINGS_ENV, load_settings, remember_root

runner = CliRunner()
DATA = b"the bytes of the source\n" * 10


def entry(checksum: str) -> str:
    return f"""title: Local test data
description: A file of the demo world.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: file
    url: file:.vcat/demo-world/file.bin
    filename: file.bin
    size: {len(DATA)}
    checksum: {checksum}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / DEMO_WORLD).mkdir(parents=True)
    (root / DEMO_WORLD / "file.bin").write_bytes(DATA)
    for variable in (SETTINGS_ENV, "VCAT_CATALOG", LOCAL_ROOTS_ENV):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.chdir(root)
    return root


def vcat(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def write_entry(project: Path, checksum: str) -> None:
    (project / "catalog" / "datasets" / "local.yaml").write_text(entry(checksum))


# --- vcat fetch --dest ---------------------------------------------------------------------


def test_a_failed_fetch_does_not_remember_its_dest(project: Path, tmp_path: Path) -> None:
    write_entry(project, "md5:" + "0" * 32)  # the file does not match: verification fails
    dest = tmp_path / "disk" / "local"
    code, out = vcat("fetch", "local", "--dest", str(dest), "--no-dvc")
    assert code == 1, out
    assert "remembered" not in out
    assert load_settings(project).roots == {}


def test_a_refused_source_does_not_remember_its_dest(project: Path, tmp_path: Path) -> None:
    write_entry(project, "unpublished")
    (project / DEMO_WORLD / "file.bin").unlink()
    (project / DEMO_WORLD / "file.bin").symlink_to("../../dvc.yaml")  # leads out: forbidden
    code, out = vcat("fetch", "local", "--dest", str(tmp_path / "disk" / "local"), "--no-dvc")
    assert code == 1 and "forbidden" in out, out
    assert load_settings(project).roots == {}


def test_a_passing_fetch_remembers_its_dest(project: Path, tmp_path: Path) -> None:
    write_entry(project, f"md5:{hashlib.md5(DATA).hexdigest()}")
    dest = tmp_path / "disk" / "local"
    code, out = vcat("fetch", "local", "--dest", str(dest), "--no-dvc")
    assert code == 0, out
    assert "remembered" in out
    assert load_settings(project).roots == {"local": str(dest)}
    assert (dest / "file.bin").read_bytes() == DATA


# --- vcat settings -------------------------------------------------------------------------


def test_show_prints_roots_and_readable_folders(project: Path, tmp_path: Path) -> None:
    remember_root(project, "eth3d", tmp_path)
    remember_root(project, "inloc", tmp_path / "gone")
    code, out = vcat("settings", "show")
    assert code == 0, out
    assert f"eth3d: {tmp_path}\n" in out and f"inloc: {tmp_path / 'gone'}  (missing)" in out
    assert str((project / DEMO_WORLD).resolve()) in out
    code, out = vcat("settings", "show", "--json")
    document = json.loads(out)
    assert document["format"] == "vcat.settings/1"
    assert document["roots"]["inloc"] == {"path": str(tmp_path / "gone"), "exists": False}
    assert document["readable_roots"] == [str((project / DEMO_WORLD).resolve())]


def test_forget_removes_a_root_and_says_so(project: Path, tmp_path: Path) -> None:
    remember_root(project, "eth3d", tmp_path)
    remember_root(project, "inloc", tmp_path)
    code, out = vcat("settings", "forget", "eth3d")
    assert code == 0, out
    assert "forgot the root of eth3d" in out
    assert load_settings(project).roots == {"inloc": str(tmp_path)}
    assert tmp_path.is_dir()  # the folder itself stays


def test_forget_of_an_unknown_name_suggests_close_ones(project: Path, tmp_path: Path) -> None:
    remember_root(project, "eth3d", tmp_path)
    code, out = vcat("settings", "forget", "eth3")
    assert code == 2
    assert "no root is remembered for 'eth3'" in out and "did you mean 'eth3d'?" in out
    assert load_settings(project).roots == {"eth3d": str(tmp_path)}


def test_allow_and_disallow_change_local_roots(project: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    assert vcat("settings", "allow", str(nas))[0] == 0
    code, out = vcat("settings", "allow", str(nas))
    assert code == 0 and "already allowed" in out
    assert load_settings(project).local_roots == (str(nas),)
    assert vcat("settings", "disallow", str(nas))[0] == 0
    code, out = vcat("settings", "disallow", str(nas))
    assert code == 2 and "is not in local_roots" in out


@pytest.mark.parametrize("command", [["show"], ["forget", "eth3d"], ["allow", "/tmp"]])
def test_an_invalid_settings_file_is_named_with_its_line(project: Path, command: list[str]) -> None:
    path = project / ".vcat" / "settings.yaml"
    path.write_text("roots:\n  eth3d: relative/path\n")
    code, out = vcat("settings", *command)
    assert code == 2
    assert "settings.yaml:2: error:" in out and "not an absolute path" in out
    assert path.read_text() == "roots:\n  eth3d: relative/path\n"  # left as it was


def test_outside_a_project_the_settings_commands_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    code, out = vcat("settings", "show")
    assert code == 2 and "no vcat project" in out
