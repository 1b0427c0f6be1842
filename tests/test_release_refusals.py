"""`vcat release` pushes nothing that lies outside the data folders, nor any output holding a
credential or a sensitive file's bytes (the second line of defence after vcat.localfiles).

Real git and DVC repositories in temporary folders, a local-folder DVC remote, real shards."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app
from vcat.leaks import Fingerprints, find_leaks, fingerprints, path_refusal
from vcat.shards import ShardWriter

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
SECRET = "k3y-0f-the-t3st-remote-a1b2c3d4e5f6"
KEY_ID = "TESTKEYID0123456789"
# credentials of another remote than the (local-folder) one the tests push to
CONFIG_LOCAL = f"""['remote "backup"']
    url = s3://team-bucket/dvc
    access_key_id = {KEY_ID}
    secret_access_key = {SECRET}
"""
runner = CliRunner()


def run(args: list[str], cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC checkout whose default remote is a local folder, with credentials in
    .dvc/config.local and a settings file, and the working directory inside it."""
    root = tmp_path / "project"
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "releases.yaml").write_text("remotes:\n  priv: {audience: private}\n")
    for variable in ("VCAT_CATALOG", "VCAT_SETTINGS", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    run(["git", "init", "-q"], root)
    run([DVC, "init", "-q"], root)
    run([DVC, "remote", "add", "-d", "priv", str(tmp_path / "remote")], root)
    (root / ".dvc" / "config.local").write_text(CONFIG_LOCAL)
    (root / ".vcat").mkdir()
    (root / ".vcat" / "settings.yaml").write_text("roots:\n  eth3d: /mnt/data/eth3d-private\n")
    monkeypatch.chdir(root)
    return root


def track(project: Path, files: dict[str, bytes]) -> None:
    """Write ``files`` and `dvc add` each folder that holds them."""
    for name, data in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    folders = sorted({str(Path(name).parent) for name in files})
    run([DVC, "add", "-q", *folders], project)


def pushed(project: Path) -> list[Path]:
    remote = project.parent / "remote"
    return [p for p in remote.rglob("*") if p.is_file()] if remote.exists() else []


def release(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["release", *args])
    return result.exit_code, result.output


# --- by path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "why"),
    [
        (".dvc/config.local", "inside .dvc/"),
        (".dvc/cache", "inside .dvc/"),
        (".vcat/settings.yaml", "inside .vcat/"),
        (".vcat/demo-world/flickr", "inside .vcat/"),
        (".git/config", "inside .git/"),
        ("data/sources/x/.git/config", "inside .git/"),
        ("secrets/keys.txt", "outside the data folders"),
        ("catalog/datasets", "outside the data folders"),
        ("/abs/elsewhere", "outside the project"),
        ("../sibling/data", "outside the project"),
    ],
)
def test_outputs_outside_the_data_folders_are_refused_by_path(output: str, why: str) -> None:
    refusal = path_refusal(output)
    assert refusal is not None and why in refusal


@pytest.mark.parametrize("output", ["data/sources/eth3d", "models/net.pt", "metrics/a.json"])
def test_outputs_in_the_data_folders_pass_by_path(output: str) -> None:
    assert path_refusal(output) is None


@pytest.mark.slow
def test_release_refuses_a_tracked_folder_outside_the_data_folders(project: Path) -> None:
    track(project, {"secrets/keys.txt": b"not data\n", "data/clean/a.txt": b"fine\n"})
    code, out = release()
    assert code == 1, out
    assert "secrets: it lies outside the data folders" in out and "nothing was pushed" in out
    assert pushed(project) == []


@pytest.mark.slow
def test_release_refuses_a_tracked_folder_inside_vcat(project: Path) -> None:
    (project / ".vcat" / "stash").mkdir()
    (project / ".vcat" / "stash" / "copy.txt").write_bytes(b"anything\n")
    run([DVC, "add", "-q", ".vcat/stash"], project)
    code, out = release()
    assert code == 1, out
    assert ".vcat/stash: it lies inside .vcat/" in out
    assert pushed(project) == []


# --- by content ----------------------------------------------------------------------------


@pytest.mark.slow
def test_release_refuses_data_that_holds_a_credential(project: Path) -> None:
    leaked = f"line one\naws said: {SECRET} (copied)\n".encode()
    track(project, {"data/notes/a.txt": b"fine\n", "data/notes/b.txt": leaked})
    code, out = release()
    assert code == 1, out
    assert "data/notes/b.txt holds the secret_access_key of .dvc/config.local" in out
    assert "rotate" in out and SECRET not in out
    assert pushed(project) == []


@pytest.mark.slow
def test_release_refuses_a_shard_member_that_is_a_settings_file(project: Path) -> None:
    settings = (project / ".vcat" / "settings.yaml").read_bytes()
    with ShardWriter(project / "data" / "images", max_count=2) as writer:
        for index in range(5):
            writer.add(f"img/{index}", {"jpg": f"image {index}".encode() * 20})
        writer.add("img/9001", {"jpg": settings})
    run([DVC, "add", "-q", "data/images"], project)
    code, out = release()
    assert code == 1, out
    assert "shard-000002.tar:img/9001.jpg holds the bytes of .vcat/settings.yaml" in out
    assert pushed(project) == []


@pytest.mark.slow
def test_release_reads_what_the_cache_pushes_not_the_workspace(project: Path) -> None:
    """The workspace was cleaned after `dvc add`, but DVC would push the cached version."""
    track(project, {"data/notes/b.txt": f"{KEY_ID}\n".encode()})
    (project / "data" / "notes" / "b.txt").unlink()
    (project / "data" / "notes" / "b.txt").write_bytes(b"clean now\n")
    code, out = release()
    assert code == 1, out
    assert "holds the access_key_id of .dvc/config.local" in out


@pytest.mark.slow
def test_release_refuses_data_holding_the_environment_s_key(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-value-42")
    track(project, {"data/notes/c.txt": b"xx env-secret-value-42 yy\n"})
    code, out = release()
    assert code == 1, out
    assert "holds the value of $AWS_SECRET_ACCESS_KEY" in out


@pytest.mark.slow
def test_clean_data_is_released(project: Path) -> None:
    with ShardWriter(project / "data" / "images", max_count=2) as writer:
        for index in range(3):
            writer.add(f"img/{index}", {"jpg": f"image {index}".encode() * 20})
    track(project, {"data/notes/a.txt": b"fine\n", "models/m/w.bin": b"w" * 64})
    run([DVC, "add", "-q", "data/images"], project)
    code, out = release()
    assert code == 0, out
    assert "pushed" in out and len(pushed(project)) >= 5


@pytest.mark.slow
def test_a_clean_target_is_released_beside_a_leaking_one(project: Path) -> None:
    track(project, {"data/clean/a.txt": b"fine\n", "data/leak/b.txt": SECRET.encode()})
    code, out = release("data/clean")
    assert code == 0, out
    code, out = release("data/leak")
    assert code == 1 and "data/leak/b.txt holds" in out, out


def test_a_secret_split_across_read_chunks_is_found(tmp_path: Path) -> None:
    from vcat import leaks

    data = b"x" * (leaks._CHUNK - 5) + SECRET.encode() + b"y" * 100
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    prints = Fingerprints({SECRET.encode(): "the test secret"}, {})
    [leak] = find_leaks("data/big", [("data/big/big.bin", str(path))], prints)
    assert leak.what == "the test secret"


def test_the_users_aws_credentials_are_secrets_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text(
        "[default]\naws_access_key_id = AKIAHOMEKEY000\naws_secret_access_key = home-secret-99\n"
    )
    monkeypatch.setenv("HOME", str(home))
    project = tmp_path / "project"
    project.mkdir()
    data = tmp_path / "a.txt"
    data.write_bytes(b"prefix home-secret-99 suffix")
    prints = fingerprints(project)
    [leak] = find_leaks("data/a", [("data/a/a.txt", str(data))], prints)
    assert leak.what == f"the aws_secret_access_key of {home / '.aws' / 'credentials'}"


def test_a_shard_member_that_is_etc_passwd_is_found(tmp_path: Path) -> None:
    passwd = Path("/etc/passwd").read_bytes()
    with ShardWriter(tmp_path / "shards") as writer:
        writer.add("img/ok", {"jpg": b"an image" * 10})
        writer.add("img/bad", {"jpg": passwd})
    prints = fingerprints(tmp_path)
    files = [(f"data/s/{p.name}", str(p)) for p in sorted((tmp_path / "shards").glob("*.tar"))]
    leaks = find_leaks("data/s", files, prints)
    assert [leak.describe() for leak in leaks] == [
        "data/s/shard-000000.tar:img/bad.jpg holds the bytes of /etc/passwd"
    ]
