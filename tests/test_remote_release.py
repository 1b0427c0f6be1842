"""`vcat remote` and `vcat release` as a user runs them: real git and DVC repositories, a real
SeaweedFS server started by `vcat remote up`, clones that pull what was released, licences
that keep data off a public remote, and a server that dies in the middle of a push."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from vcat.cli import app
from vcat.remote import process_is_server, read_state, state_path
from vcat.seaweedfs import remove_sockets

BIN = Path(sys.executable).parent
VCAT = str(BIN / "vcat")
DVC = str(BIN / "dvc")
GITIGNORE = "/data/**\n!/data/**/\n!/data/**/*.dvc\n!/data/**/.gitignore\n.vcat/\n"
LICENCES = {"open": "allowed", "closed": "forbidden", "unsure": "unknown"}
# closed -> prepared/closed.txt -> reports/report.txt: two stages between the data and the
# report, so the licence check must follow dvc.lock transitively.
PIPELINE = """stages:
  prepare:
    foreach: [open, closed]
    do:
      cmd: mkdir -p data/prepared && cat data/sources/${item}/* > data/prepared/${item}.txt
      deps: ["data/sources/${item}"]
      outs: ["data/prepared/${item}.txt"]
  report:
    cmd: mkdir -p data/reports && cat data/prepared/*.txt > data/reports/report.txt
    deps: [data/prepared/open.txt, data/prepared/closed.txt]
    outs: [data/reports/report.txt]
"""


def entry_yaml(name: str, redistribution: str) -> str:
    return f"""title: {name.title()} test data
description: Files made by the test.
licence: {{name: Test-{redistribution}, redistribution: {redistribution}}}
access: {{kind: manual, instructions: Made by the test.}}
"""


def run(
    args: list[str], cwd: Path, env: dict[str, str], code: int = 0
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == code, (
        f"{args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result


def commit(project: Path, env: dict[str, str], message: str) -> None:
    run(["git", "add", "-A"], project, env)
    run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project, env
    )


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of every command: servers' data under tmp_path, no DVC analytics.

    Afterwards any server the test left running is killed.
    """
    variables = {
        key: value
        for key, value in os.environ.items()
        if key not in ("VCAT_CATALOG", "VCAT_SETTINGS") and not key.startswith("AWS_")
    }
    variables.update(
        XDG_DATA_HOME=str(tmp_path / "xdg"),
        DVC_NO_ANALYTICS="1",
        PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    )
    yield variables
    for folder in (tmp_path / "xdg" / "vcat" / "s3").glob("*"):
        state = read_state(folder)
        if state is not None and state.pid and process_is_server(state.pid, state.server_dir):
            os.killpg(state.pid, signal.SIGKILL)
            while process_is_server(state.pid, state.server_dir):
                time.sleep(0.05)
        remove_sockets(folder / "server")


def make_project(
    folder: Path, env: dict[str, str], files: dict[str, dict[str, bytes]], repro: bool = True
) -> Path:
    """A committed git + DVC checkout with a catalog, ``data/sources/<entry>`` tracked and,
    with ``repro``, the pipeline run."""
    (folder / "catalog" / "datasets").mkdir(parents=True)
    (folder / "catalog" / "models").mkdir()
    for name, redistribution in LICENCES.items():
        (folder / "catalog" / "datasets" / f"{name}.yaml").write_text(
            entry_yaml(name, redistribution)
        )
    (folder / ".gitignore").write_text(GITIGNORE)
    (folder / "dvc.yaml").write_text(PIPELINE)
    run(["git", "init", "-q"], folder, env)
    run([DVC, "init", "-q"], folder, env)
    run([DVC, "config", "core.analytics", "false"], folder, env)
    for entry, contents in files.items():
        root = folder / "data" / "sources" / entry
        root.mkdir(parents=True)
        for name, data in contents.items():
            (root / name).write_bytes(data)
    run([DVC, "add", "-q", *(f"data/sources/{entry}" for entry in files)], folder, env)
    if repro:
        run([DVC, "repro", "-q"], folder, env)
    commit(folder, env, "data")
    return folder


def small_files() -> dict[str, dict[str, bytes]]:
    return {
        entry: {f"{i}.txt": f"{entry} {i}\n".encode() for i in range(3)}
        for entry in ("open", "closed", "unsure")
    }


def tree(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def bucket_objects(data_dir: Path) -> list[str]:
    """The objects in a served remote's bucket, listed with the server's own credentials."""
    import s3fs

    state = read_state(data_dir)
    assert state is not None
    filesystem = s3fs.S3FileSystem(
        key=state.access_key,
        secret=state.secret_key,
        client_kwargs={"endpoint_url": state.endpoint},
        skip_instance_cache=True,
    )
    return [path for path in filesystem.find(state.bucket) if not path.endswith("/")]


def clone_and_pull(project: Path, clone: Path, env: dict[str, str], *targets: str) -> None:
    """``git clone``, ``vcat remote up`` there (the server already runs), ``dvc pull``."""
    run(["git", "clone", "-q", str(project), str(clone)], project.parent, env)
    assert not (clone / ".dvc" / "config.local").exists()
    out = run([VCAT, "remote", "up"], clone, env).stdout
    assert "already running" in out
    run([DVC, "pull", "-q", *targets], clone, env)
    assert "up to date" in run([DVC, "status", *targets], clone, env).stdout.lower()


@pytest.mark.slow
def test_up_is_idempotent_credentials_stay_local_and_a_clone_pulls(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project", env, small_files())
    data_dir = tmp_path / "xdg" / "vcat" / "s3" / "demo"

    out = run([VCAT, "remote", "up"], project, env).stdout
    assert "started S3 server for remote 'demo'" in out
    assert "'demo' is now the default DVC remote" in out
    state = read_state(data_dir)
    assert state is not None and state.pid is not None
    assert state_path(data_dir).stat().st_mode & 0o777 == 0o600
    local = (project / ".dvc" / "config.local").read_text()

    again = run([VCAT, "remote", "up"], project, env).stdout
    assert "already running" in again and f"pid {state.pid}" in again
    assert read_state(data_dir) == state
    assert (project / ".dvc" / "config.local").read_text() == local

    shared = (project / ".dvc" / "config").read_text()
    assert "s3://vcat-demo/dvc" in shared and "remote = demo" in shared
    for secret in (state.access_key, state.secret_key, state.endpoint, "endpointurl"):
        assert secret not in shared
        assert secret in local
    run(["git", "check-ignore", "-q", ".dvc/config.local"], project, env)
    assert "audience: private" in (project / "releases.yaml").read_text()
    status = json.loads(run([VCAT, "remote", "status", "--json"], project, env).stdout)
    assert status["state"] == "running" and status["pid"] == state.pid
    assert status["checkout_endpoint"] == state.endpoint and status["audience"] == "private"

    out = run([VCAT, "release"], project, env).stdout
    assert re.search(r"pushed \d+ file\(s\) to 'demo'", out)
    assert "data/reports/report.txt: from closed" in out
    commit(project, env, "release to demo")

    # The server stops and comes back on its recorded port with its data.
    assert "data kept" in run([VCAT, "remote", "down"], project, env).stdout
    assert not process_is_server(state.pid, state.server_dir)
    stopped = json.loads(run([VCAT, "remote", "status", "--json"], project, env).stdout)
    assert stopped["state"] == "stopped" and stopped["pid"] is None
    assert "started" in run([VCAT, "remote", "up"], project, env).stdout
    restarted = read_state(data_dir)
    assert restarted is not None and restarted.port == state.port
    assert restarted.access_key == state.access_key

    clone_and_pull(project, tmp_path / "clone", env)
    assert tree(tmp_path / "clone" / "data") == tree(project / "data")
    assert "nothing new to push" in run([VCAT, "release"], project, env).stdout


@pytest.mark.slow
def test_public_remote_refuses_what_derives_from_forbidden_or_unknown_licences(
    tmp_path: Path, env: dict[str, str]
) -> None:
    project = make_project(tmp_path / "project", env, small_files())
    run([VCAT, "remote", "up"], project, env)
    run([VCAT, "remote", "up", "pub", "--public"], project, env)
    public_dir = tmp_path / "xdg" / "vcat" / "s3" / "pub"

    refused = run([VCAT, "release", "report", "--remote", "pub"], project, env, code=1)
    message = " ".join(refused.stderr.split())
    assert "remote 'pub' is public" in message
    assert (
        "data/reports/report.txt (target report): derives from 'closed', licence Test-forbidden "
        "(redistribution forbidden), via data/reports/report.txt <- stage report <- "
        "data/prepared/closed.txt <- stage prepare@closed <- data/sources/closed"
    ) in message
    assert "'open'" not in message  # open data in the same report is not the problem
    assert "nothing was pushed" in message and "private remote" in message
    assert "leave them out of this release" in message
    assert bucket_objects(public_dir) == []

    unsure = run([VCAT, "release", "data/sources/unsure", "-r", "pub"], project, env, code=1)
    assert "licence Test-unknown (redistribution unknown)" in " ".join(unsure.stderr.split())
    everything = run([VCAT, "release", "-r", "pub"], project, env, code=1).stderr
    for refused_output in ("data/sources/closed", "data/sources/unsure", "prepared/closed.txt"):
        assert refused_output in everything
    assert bucket_objects(public_dir) == []

    # dvc.yaml no longer names the closed data, but dvc.lock records that the report in the
    # workspace was built from it.
    (project / "dvc.yaml").write_text(PIPELINE.replace(", data/prepared/closed.txt]", "]"))
    still = run([VCAT, "release", "report", "--remote", "pub"], project, env, code=1).stderr
    assert "stage prepare@closed <- data/sources/closed" in " ".join(still.split())
    assert bucket_objects(public_dir) == []

    private = run([VCAT, "release", "report", "--remote", "demo"], project, env).stdout
    assert re.search(r"pushed [1-9]\d* file\(s\) to 'demo'", private)
    allowed = run([VCAT, "release", "prepare@open", "-r", "pub"], project, env).stdout
    assert "pushed 1 file(s) to 'pub'" in allowed
    assert len(bucket_objects(public_dir)) == 1


def test_errors_name_the_target_the_remote_or_the_line(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_project(tmp_path / "project", env, small_files(), repro=False)
    for key in ("VCAT_CATALOG", "VCAT_SETTINGS"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", env["XDG_DATA_HOME"])
    monkeypatch.chdir(project)

    def vcat(*args: str, code: int) -> Result:
        result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300"})
        assert result.exit_code == code, f"{args}: {result.output}{result.stderr}"
        return result

    out = vcat("release", "data/nowhere", "-r", "demo", code=2).stderr
    assert "remote 'demo' is not configured in this checkout: run `vcat remote up demo`" in out
    run([DVC, "remote", "add", "mirror", "s3://somewhere/else"], project, env)
    out = vcat("release", "data/nowhere", "-r", "mirror", code=2).stderr
    assert "'data/nowhere' is neither a DVC-tracked path nor a stage name" in out
    # A remote that releases.yaml does not declare counts as public.
    refused = vcat("release", "prepare@closed", "-r", "mirror", code=1)
    assert "not listed in releases.yaml, so public" in refused.stdout
    assert "licence Test-forbidden (redistribution forbidden)" in refused.stderr
    out = vcat("remote", "up", "mirror", code=2).stderr
    assert "remote 'mirror' already points at s3://somewhere/else" in out
    assert not (tmp_path / "xdg").exists()  # nothing was started

    (project / "releases.yaml").write_text("remotes:\n  mirror:\n    audience: friends\n")
    out = vcat("release", "-r", "mirror", code=2).stderr
    assert "releases.yaml:3: error: remotes.mirror.audience: the audience is 'private' or" in out
    (project / "releases.yaml").write_text(
        "remotes:\n  mirror: {audience: private}\n  bad name: {}\n"
    )
    out = vcat("remote", "status", "mirror", code=2).stderr
    assert "releases.yaml:3: error: 'bad name' is not a DVC remote name" in out


@pytest.mark.slow
def test_server_stopped_mid_push_then_the_same_release_finishes(
    tmp_path: Path, env: dict[str, str]
) -> None:
    # enough objects that the push is far from done when the first ones show on the server's
    # disk, which can lag behind what the client has sent
    generator = random.Random(7)
    many = {f"{i:03d}.bin": generator.randbytes(200_000) for i in range(600)}
    project = make_project(tmp_path / "project", env, {"open": many}, repro=False)
    data_dir = tmp_path / "xdg" / "vcat" / "s3" / "demo"
    run([VCAT, "remote", "up"], project, env)
    state = read_state(data_dir)
    assert state is not None and state.pid is not None

    push = subprocess.Popen(
        [VCAT, "release", "data/sources/open"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    uploaded: list[str] = []
    while len(uploaded) < 10:
        assert push.poll() is None, "the push finished before the server could be stopped"
        assert time.monotonic() < deadline
        time.sleep(0.05)
        uploaded = bucket_objects(data_dir)
    os.killpg(state.pid, signal.SIGKILL)
    _, err = push.communicate(timeout=60)
    assert push.returncode == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert (
        f"error: the S3 endpoint {state.endpoint} of remote 'demo' did not answer "
        "(connection refused); objects already uploaded are kept on the remote; run `vcat "
        "remote up demo`, then the same command again"
    ) == " ".join(lines[0].split())

    # Another program took the port meanwhile: the server comes back on a free one.
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", state.port))
        squatter.listen()
        up = run([VCAT, "remote", "up"], project, env)
    assert f"port {state.port} is taken" in " ".join(up.stderr.split())
    moved = read_state(data_dir)
    assert moved is not None and moved.port != state.port
    kept = bucket_objects(data_dir)
    assert set(uploaded) <= set(kept) and len(kept) < len(many) + 1

    out = run([VCAT, "release", "data/sources/open"], project, env).stdout
    pushed = int(re.search(r"pushed (\d+) file\(s\)", out).group(1))  # type: ignore[union-attr]
    assert pushed == len(many) + 1 - len(kept)  # the files and the folder's listing
    assert len(bucket_objects(data_dir)) == len(many) + 1
    commit(project, env, "released")

    clone_and_pull(project, tmp_path / "clone", env, "data/sources/open.dvc")
    assert tree(tmp_path / "clone" / "data" / "sources" / "open") == many
