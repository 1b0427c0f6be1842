"""Credentials in the checkout and in the server's folder: every file that holds one is mode
600 from its creation whatever the umask, a file an older version left open is tightened,
and a remote section that `.dvc/config.local` keeps after `.dvc/config` renamed or removed
the remote is named with its file, line and fix instead of DVC's bare validation error."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.port_probes import listeners
from vcat.cli import app
from vcat.remote import (
    ServerState,
    configure_checkout,
    local_config_leftovers,
    new_state,
    process_is_locked_down,
    process_is_server,
    read_state,
    write_local_remote,
    write_state,
)
from vcat.secret_files import tighten, write_private

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that lets every file be created readable and writable by everybody."""
    previous = os.umask(0)
    yield
    os.umask(previous)


def run(args: list[str], cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == code, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A git + DVC checkout with remote 'demo' served locally (its credentials in
    config.local, as `vcat remote up` leaves them; no server is started)."""
    project = tmp_path / "project"
    (project / "catalog" / "datasets").mkdir(parents=True)
    (project / "dvc.yaml").write_text("stages: {}\n")
    run(["git", "init", "-q"], project)
    run([DVC, "init", "-q"], project)
    run([DVC, "config", "core.analytics", "false"], project)
    configure_checkout(project, state_for(tmp_path, "demo"))
    return project


def state_for(tmp_path: Path, name: str) -> ServerState:
    folder = tmp_path / "xdg" / name
    folder.mkdir(parents=True, exist_ok=True)
    return new_state(name, folder)


def vcat(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str, code: int) -> str:
    monkeypatch.chdir(project)
    monkeypatch.setenv("XDG_DATA_HOME", str(project.parent / "xdg-data"))
    for key in ("VCAT_CATALOG", "VCAT_SETTINGS"):
        monkeypatch.delenv(key, raising=False)
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == code, f"{args}: {result.output}{result.stderr}"
    return " ".join((result.stdout + result.stderr).split())


# --- files written mode 600 from their creation -------------------------------------------


def test_private_files_are_600_under_any_umask_and_replace_atomically(
    tmp_path: Path, open_umask: None
) -> None:
    target = tmp_path / "secret.json"
    write_private(target, "first")
    assert mode(target) == 0o600 and target.read_text() == "first"
    target.chmod(0o644)
    write_private(target, b"second")
    assert mode(target) == 0o600 and target.read_bytes() == b"second"
    assert [path.name for path in tmp_path.iterdir()] == ["secret.json"]  # no temporary left


def test_tighten_reports_the_old_mode_only_when_it_changed(tmp_path: Path) -> None:
    target = tmp_path / "config.local"
    assert tighten(target) is None  # absent
    target.write_text("x")
    target.chmod(0o644)
    assert tighten(target) == 0o644 and mode(target) == 0o600
    assert tighten(target) is None
    target.chmod(0o640)
    assert tighten(target) == 0o640 and mode(target) == 0o600


def test_state_file_is_600_under_any_umask(tmp_path: Path, open_umask: None) -> None:
    state = state_for(tmp_path, "demo")
    write_state(state)
    assert mode(state.data_dir / "state.json") == 0o600
    assert read_state(state.data_dir) == state


@pytest.mark.slow
def test_config_local_is_created_600_and_keeps_other_sections(
    checkout: Path, tmp_path: Path, open_umask: None
) -> None:
    local = checkout / ".dvc" / "config.local"
    assert mode(local) == 0o600
    run([DVC, "remote", "add", "--local", "mine", "/srv/dvc-store"], checkout)
    text = local.read_text()
    local.write_text("# my own notes\n" + text)
    local.chmod(0o644)  # as DVC and older versions of vcat wrote it
    default_set, notes = configure_checkout(checkout, state_for(tmp_path, "team"))
    assert not default_set  # demo already is
    assert notes == [
        ".dvc/config.local was readable by others (mode 644); it holds credentials, so it is "
        "now readable by you only (mode 600)"
    ]
    assert mode(local) == 0o600
    text = local.read_text()
    assert text.startswith("# my own notes\n")
    remotes = run([DVC, "remote", "list"], checkout).stdout
    for name in ("demo", "team", "mine"):
        assert name in remotes
    secret = run([DVC, "config", "--local", "remote.team.secret_access_key"], checkout).stdout
    assert secret.strip() and secret.strip() not in (checkout / ".dvc" / "config").read_text()


@pytest.mark.slow
def test_configure_checkout_tightens_an_open_config_local_it_need_not_rewrite(
    checkout: Path, tmp_path: Path
) -> None:
    local = checkout / ".dvc" / "config.local"
    state = read_or_same(tmp_path, checkout)
    local.chmod(0o644)
    before = local.read_text()
    _, notes = configure_checkout(checkout, state)
    assert mode(local) == 0o600 and local.read_text() == before
    assert any("mode 644" in note for note in notes)


def read_or_same(tmp_path: Path, checkout: Path) -> ServerState:
    """The state whose credentials the checkout already holds."""
    state = state_for(tmp_path, "same")
    configure_checkout(checkout, state)
    return state


def test_write_local_remote_creates_a_file_dvc_reads(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "config.local"
    write_local_remote(path, "demo", {"endpointurl": "http://127.0.0.1:1", "access_key_id": "a"})
    write_local_remote(path, "demo", {"secret_access_key": "s"})
    assert mode(path) == 0o600
    from configobj import ConfigObj

    assert dict(ConfigObj(str(path))['remote "demo"']) == {
        "endpointurl": "http://127.0.0.1:1",
        "access_key_id": "a",
        "secret_access_key": "s",
    }


# --- a remote section left in config.local ------------------------------------------------


@pytest.mark.slow
def test_renamed_remote_gets_its_file_line_and_fix(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DVC renames the remote in .dvc/config, leaves its local section behind, and then
    # fails on what it left (exit 251)
    run([DVC, "remote", "rename", "demo", "team"], checkout, code=251)
    assert "team" in (checkout / ".dvc" / "config").read_text()
    bare = run([DVC, "status"], checkout, code=251).stderr
    assert "expected 'url'" in bare  # what DVC says: no file, no line, no fix
    (message,) = local_config_leftovers(checkout)
    assert message == (
        ".dvc/config.local:1: remote 'demo' has settings here (lines 1-4) but no url in "
        ".dvc/config, where it was renamed or removed; every dvc command fails until they "
        "go: run `dvc remote remove --local demo` (or delete those lines)"
    )
    # 'team' is not a served remote's URL (s3://vcat-team/dvc), so no `vcat remote up` hint
    for args in (("remote", "status", "team"), ("remote", "up", "team"), ("release",)):
        out = vcat(checkout, monkeypatch, *args, code=2)
        assert "error: .dvc/config.local:1: remote 'demo' has settings here" in out, args
        assert "Traceback" not in out
    assert not (checkout.parent / "xdg-data").exists()  # `remote up` started nothing
    run([DVC, "remote", "remove", "--local", "demo"], checkout)
    assert local_config_leftovers(checkout) == []
    run([DVC, "status"], checkout)


@pytest.mark.slow
def test_removed_remote_names_the_served_remote_to_set_up(
    checkout: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    local = checkout / ".dvc" / "config.local"
    local.write_text("[core]\n    autostage = true\n\n" + local.read_text())
    # .dvc/config from another branch: the remote is now 'team', served by vcat
    (checkout / ".dvc" / "config").write_text(
        "[core]\n    remote = team\n    analytics = false\n"
        "['remote \"team\"']\n    url = s3://vcat-team/dvc\n"
    )
    (message,) = local_config_leftovers(checkout)
    assert message.startswith(".dvc/config.local:4: remote 'demo' has settings here (lines 4-7)")
    assert message.endswith(
        "run `dvc remote remove --local demo` (or delete those lines), then `vcat remote up "
        "team` to give remote 'team' its credentials"
    )
    out = vcat(checkout, monkeypatch, "remote", "status", "team", code=2)
    assert "vcat remote up team" in out


@pytest.mark.slow
def test_local_only_remote_and_overrides_are_not_leftovers(checkout: Path) -> None:
    run([DVC, "remote", "add", "--local", "mine", "/srv/dvc-store"], checkout)
    run([DVC, "remote", "modify", "--local", "demo", "read_timeout", "30"], checkout)
    assert local_config_leftovers(checkout) == []
    run([DVC, "remote", "list"], checkout)


@pytest.mark.slow
def test_unreadable_config_local_is_named(checkout: Path) -> None:
    (checkout / ".dvc" / "config.local").write_bytes(b"['remote \"demo\"'\n   = \xff\n")
    (message,) = local_config_leftovers(checkout)
    assert message.startswith(".dvc/config.local: cannot be read (")
    assert message.endswith(
        "fix or delete it, then run `vcat remote up NAME` for each remote you use"
    )


# --- a server that an older vcat started ----------------------------------------------------


@pytest.mark.slow
def test_up_restarts_a_server_an_older_version_started_with_open_ports(
    checkout: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vcat.seaweedfs import free_port, weed_binary

    data_dir = checkout.parent / "xdg-data" / "vcat" / "s3" / "demo"
    state = new_state("demo", data_dir)
    server_dir = state.server_dir
    server_dir.mkdir(parents=True)
    config = server_dir / "s3.json"
    config.write_text(json.dumps({"identities": []}))
    ports = [free_port() for _ in range(8)]
    # the command line of vcat 0.1's server: no -disableHttp, no security.toml
    old = subprocess.Popen(
        [
            weed_binary(),
            "mini",
            f"-dir={server_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-master.port={ports[0]}",
            f"-master.port.grpc={ports[1]}",
            f"-volume.port={ports[2]}",
            f"-volume.port.grpc={ports[3]}",
            f"-filer.port={ports[4]}",
            f"-filer.port.grpc={ports[5]}",
            f"-s3.port={state.port}",
            f"-s3.port.grpc={ports[6]}",
            f"-admin.port={ports[7]}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    new_pid = None
    try:
        from vcat.remote import answers_within

        assert answers_within(state.endpoint, 60)
        write_state(ServerState(**{**state.__dict__, "pid": old.pid}))
        (data_dir / "state.json").chmod(0o644)  # as an older vcat may have left them
        server_dir.chmod(0o755)
        assert not process_is_locked_down(old.pid, server_dir)
        status = vcat(checkout, monkeypatch, "remote", "status", "--json", code=0)
        assert json.loads(status)["ports_closed"] is False
        old_sockets = listeners(old.pid).unix
        assert old_sockets and all(mode(Path(path)) & 0o077 for path in old_sockets)
        warned = vcat(checkout, monkeypatch, "remote", "status", code=0)
        assert "take requests without credentials (an older vcat started it)" in warned
        out = vcat(checkout, monkeypatch, "remote", "up", code=0)
        assert "was started by an older vcat" in out and "restarting it" in out
        old.wait(timeout=30)
        restarted = read_state(data_dir)
        assert restarted is not None and restarted.pid not in (None, old.pid)
        new_pid = restarted.pid
        current = set(listeners(new_pid).unix)
        assert [path for path in old_sockets if Path(path).exists() and path not in current] == []
        assert all(mode(Path(path)) & 0o077 == 0 for path in current)
        assert process_is_locked_down(new_pid, server_dir)
        assert mode(server_dir / "security.toml") == 0o600
        assert mode(data_dir / "state.json") == 0o600 and mode(server_dir) == 0o700
        assert "already running" in vcat(checkout, monkeypatch, "remote", "up", code=0)
        status = vcat(checkout, monkeypatch, "remote", "status", "--json", code=0)
        assert json.loads(status)["ports_closed"] is True
        vcat(checkout, monkeypatch, "remote", "down", code=0)
        assert not process_is_server(new_pid, server_dir)
    finally:
        for pid in (old.pid, new_pid):
            if pid is not None and process_is_server(pid, server_dir):
                os.killpg(pid, signal.SIGKILL)
        old.wait(timeout=30)
