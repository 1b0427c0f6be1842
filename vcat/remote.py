"""Release remotes: a persistent local S3 server, the DVC remote that points at it, and who
may read each remote (``releases.yaml``).

``vcat remote up NAME`` keeps one SeaweedFS server per data folder (default
``$XDG_DATA_HOME/vcat/s3/NAME``). The folder holds the server's data and ``state.json``
(mode 600): pid, port, bucket and the credentials, generated once per folder. The checkout
gets the remote's URL in ``.dvc/config`` (in git) and the endpoint and credentials only in
the git-ignored ``.dvc/config.local``, so a fresh clone runs ``vcat remote up`` and can
``dvc pull``.

``releases.yaml`` at the project root (in git) says who may read each remote::

    remotes:
      demo: {audience: private}
      mirror: {audience: public}

A remote it does not list counts as public when releasing.
"""

from __future__ import annotations

import errno
import fcntl
import http.client
import json
import os
import re
import secrets
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vcat.catalog.loader import format_location
from vcat.catalog.yaml_source import load_yaml
from vcat.problems import CatalogError, Problem, Severity, display_path
from vcat.project import user_data_dir
from vcat.seaweedfs import (
    S3Credentials,
    SeaweedS3,
    free_port,
    ports_in_command,
    remove_sockets,
)
from vcat.secret_files import private_dir, tighten, write_private

DEFAULT_NAME = "demo"
STATE_FILE = "state.json"
STATE_FORMAT = "vcat.remote.state/1"
RELEASES_FILE = "releases.yaml"
#: Names of remotes that ``vcat remote up`` serves; the bucket is ``vcat-<name>``.
SERVED_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,39}$"
#: Any DVC remote name ``releases.yaml`` may list.
REMOTE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
STOP_TIMEOUT = 15.0
#: How long a running server may take to answer before ``up`` restarts it.
ANSWER_TIMEOUT = 10.0
_CREDENTIAL_KEYS = ("access_key_id", "secret_access_key", "session_token")
_RELEASES_HEADER = (
    "# Who may read each DVC remote. `vcat release` refuses to push data derived from a\n"
    "# dataset whose licence forbids redistribution (or is unknown) to a public remote.\n"
    "# A remote not listed here counts as public.\n"
)


class RemoteError(Exception):
    """A remote cannot be set up, started or stopped; the message says what to do."""


class Audience(StrEnum):
    PRIVATE = "private"  # only people with the credentials, e.g. the team
    PUBLIC = "public"  # anyone; data must be redistributable


def check_served_name(name: str) -> str:
    """``name`` when ``vcat remote up`` can serve it, else ``RemoteError``."""
    if not re.match(SERVED_NAME_PATTERN, name):
        raise RemoteError(
            f"{name!r} cannot name a local remote: use up to 40 lowercase letters, digits "
            "and '-', starting with a letter or digit"
        )
    return name


def bucket_name(name: str) -> str:
    return f"vcat-{name}"


def remote_url(name: str) -> str:
    """The DVC remote URL of a served remote: a prefix inside its bucket."""
    return f"s3://{bucket_name(name)}/dvc"


def default_data_dir(name: str) -> Path:
    """``$XDG_DATA_HOME/vcat/s3/<name>``, else ``~/.local/share/vcat/s3/<name>``."""
    return user_data_dir("s3", name)


# --- the server and its state file ---------------------------------------------------------


@dataclass(frozen=True)
class ServerState:
    """What ``state.json`` records about one data folder's server."""

    name: str
    data_dir: Path
    bucket: str
    port: int
    access_key: str
    secret_key: str
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return remote_url(self.name)

    @property
    def server_dir(self) -> Path:
        """Where SeaweedFS keeps its data, configuration and log."""
        return self.data_dir / "server"

    @property
    def credentials(self) -> S3Credentials:
        return S3Credentials(self.access_key, self.secret_key)


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def new_state(name: str, data_dir: Path) -> ServerState:
    """A state with fresh credentials and a free port, for a folder that has none."""
    return ServerState(
        name=name,
        data_dir=data_dir,
        bucket=bucket_name(name),
        port=free_port(),
        access_key="vcat" + secrets.token_hex(8),
        secret_key=secrets.token_urlsafe(30),
    )


def read_state(data_dir: Path) -> ServerState | None:
    """The state recorded in ``data_dir``; None when there is none yet."""
    path = state_path(data_dir)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RemoteError(_broken_state(path, str(exc))) from None
    try:
        if record["format"] != STATE_FORMAT:
            raise ValueError(f"format {record['format']!r}, expected {STATE_FORMAT!r}")
        pid = record["pid"]
        return ServerState(
            name=str(record["name"]),
            data_dir=data_dir,
            bucket=str(record["bucket"]),
            port=int(record["port"]),
            access_key=str(record["access_key"]),
            secret_key=str(record["secret_key"]),
            pid=None if pid is None else int(pid),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise RemoteError(_broken_state(path, f"{type(exc).__name__}: {exc}")) from None


def _broken_state(path: Path, reason: str) -> str:
    return (
        f"{display_path(path)} is not a valid server state ({reason}); stop the server if one "
        "runs, delete the file and run `vcat remote up` again (the data is kept, the "
        "credentials are new)"
    )


def write_state(state: ServerState) -> None:
    """Replace ``state.json`` atomically; the file is readable by its owner only."""
    record = {
        "format": STATE_FORMAT,
        "name": state.name,
        "bucket": state.bucket,
        "port": state.port,
        "pid": state.pid,
        "access_key": state.access_key,
        "secret_key": state.secret_key,
    }
    write_private(state_path(state.data_dir), json.dumps(record, indent=2) + "\n")


@contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    """Hold the data folder's lock, so that two commands never start two servers on it."""
    private_dir(data_dir)
    with (data_dir / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def process_is_server(pid: int, server_dir: Path) -> bool:
    """True when ``pid`` is a live (not zombie) ``weed`` serving ``server_dir``.

    The pid comes from a file and may have been reused by another program since, so on
    Linux the command line is checked too.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not ours
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no procfs: a live pid is the best evidence there is
    try:
        status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        arguments = (proc / "cmdline").read_bytes().split(b"\0")
    except (OSError, IndexError):
        return False
    return status not in ("Z", "X") and f"-dir={server_dir}".encode() in arguments


def process_is_locked_down(pid: int, server_dir: Path) -> bool:
    """True when the server runs with this version's protections (``vcat.seaweedfs``): its
    HTTP data paths off and its ``security.toml``. One that an older vcat started serves its
    filer, master and volume ports without credentials and must be restarted."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no procfs: nothing to tell, and the server is ours
    return b"-disableHttp" in arguments and f"-config_dir={server_dir}".encode() in arguments


def probe(endpoint: str, timeout: float = 2.0) -> Literal["answers", "refused", "silent"]:
    """Whether an HTTP server answers at ``endpoint``: any response counts as an answer.

    ``refused`` means nothing listens there (connection refused or reset); ``silent``
    means no answer within ``timeout`` or another network error.
    """
    match = re.match(r"^https?://([^/:]+)(?::(\d+))?", endpoint)
    if match is None:
        raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
    host = match.group(1)
    secure = endpoint.startswith("https")
    port = int(match.group(2) or (443 if secure else 80))
    kind = http.client.HTTPSConnection if secure else http.client.HTTPConnection
    connection = kind(host, port, timeout=timeout)
    try:
        connection.request("HEAD", "/")
        connection.getresponse().read()
        return "answers"
    except (ConnectionRefusedError, ConnectionResetError, ConnectionAbortedError):
        return "refused"
    except (OSError, http.client.HTTPException):
        return "silent"
    finally:
        connection.close()


def server_alive(state: ServerState) -> bool:
    """The recorded server process is alive (whether or not it answers)."""
    return state.pid is not None and process_is_server(state.pid, state.server_dir)


def answers_within(endpoint: str, seconds: float) -> bool:
    """True once ``endpoint`` answers, trying for up to ``seconds`` (a busy or starting
    server may take a while)."""
    deadline = time.monotonic() + seconds
    while True:
        if probe(endpoint) == "answers":
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)


def _port_taken(port: int) -> bool:
    with socket.socket() as candidate:
        # as a Go listener does, so that connections in TIME_WAIT do not count
        candidate.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            candidate.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def _start(state: ServerState) -> ServerState:
    """Start ``weed`` detached from this process on the state's port; the state with its pid."""
    server = SeaweedS3(state.server_dir, state.credentials, s3_port=state.port)
    try:
        server.start()
    except (RuntimeError, TimeoutError, FileNotFoundError) as exc:
        raise RemoteError(f"the S3 server for remote {state.name!r} did not start: {exc}") from None
    # SeaweedS3 starts weed in its own session, so it outlives this command.
    pid = server.pid
    if pid is None:
        raise RemoteError(f"the S3 server for remote {state.name!r} exited right after starting")
    started = replace(state, pid=pid)
    try:
        _ensure_bucket(started)
        write_state(started)
    except BaseException as exc:
        server.stop()  # a server that no state file records would never be stopped
        if isinstance(exc, OSError):
            raise RemoteError(f"cannot set up bucket {state.bucket}: {exc}") from None
        raise
    return started


def _ensure_bucket(state: ServerState) -> None:
    import s3fs

    filesystem = s3fs.S3FileSystem(
        key=state.access_key,
        secret=state.secret_key,
        client_kwargs={"endpoint_url": state.endpoint},
        skip_instance_cache=True,
    )
    if not filesystem.exists(state.bucket):
        filesystem.mkdir(state.bucket)


def _command_ports(pid: int) -> list[int]:
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return []
    return ports_in_command(arguments.split("\0"))


def _stop(state: ServerState) -> None:
    """SIGTERM the server's process group and wait; SIGKILL after ``STOP_TIMEOUT``."""
    assert state.pid is not None
    ports = _command_ports(state.pid) or None  # also for a server an older vcat started
    for sent in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(state.pid, sent)  # weed leads its own session, so pgid == pid
        except ProcessLookupError:
            remove_sockets(state.server_dir, ports)
            return
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if not process_is_server(state.pid, state.server_dir):
                remove_sockets(state.server_dir, ports)
                return
            time.sleep(0.1)
    raise RemoteError(f"the S3 server (pid {state.pid}) did not stop; stop it by hand")


@dataclass(frozen=True)
class UpReport:
    """What ``remote_up`` did."""

    state: ServerState
    started: bool
    notes: list[str]
    default_set: bool
    audience: Audience


def remote_up(
    project_root: Path, name: str, data_dir: Path | None = None, public: bool = False
) -> UpReport:
    """Start the server of ``data_dir`` unless it already runs, and point the checkout at it.

    Idempotent: with the server up, only ``.dvc/config.local`` is (re)written. A recorded
    port that another program took is replaced by a free one, reported in ``notes``.
    """
    check_served_name(name)
    folder = (data_dir or default_data_dir(name)).expanduser().resolve()
    load_audiences(project_root)  # a broken releases.yaml stops us before anything starts
    _check_remote_url(project_root, name)
    notes: list[str] = []
    with _locked(folder):
        state = read_state(folder)
        # what an older vcat left readable by others: the credentials and the server's data
        tighten(state_path(folder))
        if (folder / "server").is_dir():
            private_dir(folder / "server")
        if state is None:
            state = new_state(name, folder)
        elif state.name != name:
            raise RemoteError(
                f"{display_path(folder)} holds the server of remote {state.name!r}; "
                f"give remote {name!r} its own --data-dir"
            )
        alive = server_alive(state)
        exposed = alive and not process_is_locked_down(state.pid or 0, state.server_dir)
        started = exposed or not (alive and answers_within(state.endpoint, ANSWER_TIMEOUT))
        if started:
            if exposed:
                notes.append(
                    f"the server (pid {state.pid}) was started by an older vcat whose filer, "
                    "master and volume ports take requests without credentials; restarting it "
                    "with only its S3 port open"
                )
                _stop(state)
            elif alive:
                notes.append(
                    f"the server (pid {state.pid}) did not answer in {ANSWER_TIMEOUT:.0f} s; "
                    "restarting it"
                )
                _stop(state)
            if _port_taken(state.port):
                port = free_port()
                notes.append(
                    f"port {state.port} is taken by another program; the server now listens "
                    f"on {port} (run `vcat remote up {name}` in other checkouts of it too)"
                )
                state = replace(state, port=port)
            state = _start(state)
    default_set, config_notes = configure_checkout(project_root, state)
    audience = record_audience(project_root, name, public)
    return UpReport(state, started, notes + config_notes, default_set, audience)


def remote_down(name: str, data_dir: Path | None = None) -> ServerState | None:
    """Stop the server of ``data_dir`` (data kept); the state it had, None if it was not up."""
    folder = (data_dir or default_data_dir(check_served_name(name))).expanduser().resolve()
    if not state_path(folder).exists():
        return None
    with _locked(folder):
        state = read_state(folder)
        if state is None or state.pid is None:
            return None
        running = process_is_server(state.pid, state.server_dir)
        if running:
            _stop(state)
        write_state(replace(state, pid=None))
    return state if running else None


@dataclass(frozen=True)
class RemoteStatus:
    """A remote as ``vcat remote status`` shows it."""

    name: str
    data_dir: Path
    state: Literal["running", "stopped", "not-set-up", "not-answering"]
    pid: int | None
    endpoint: str | None
    url: str | None
    audience: Audience | None
    audience_declared: bool
    checkout_endpoint: str | None
    #: False for a running server that an older vcat started with its other ports open
    ports_closed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "data_dir": str(self.data_dir),
            "state": self.state,
            "pid": self.pid,
            "endpoint": self.endpoint,
            "url": self.url,
            "audience": None if self.audience is None else str(self.audience),
            "audience_declared": self.audience_declared,
            "checkout_endpoint": self.checkout_endpoint,
            "ports_closed": self.ports_closed,
        }


def remote_status(project_root: Path | None, name: str, data_dir: Path | None) -> RemoteStatus:
    """The server's state, and, inside a checkout, the remote's audience and endpoint there."""
    folder = (data_dir or default_data_dir(check_served_name(name))).expanduser().resolve()
    state = read_state(folder)
    kind: Literal["running", "stopped", "not-set-up", "not-answering"] = "not-set-up"
    if state is not None:
        if not server_alive(state):
            kind = "stopped"
        else:
            kind = "running" if probe(state.endpoint) == "answers" else "not-answering"
    audience: Audience | None = None
    declared = False
    checkout_endpoint: str | None = None
    if project_root is not None:
        audience, declared = audience_of(project_root, name)
        checkout_endpoint = dvc_remote(project_root, name).get("endpointurl")
    return RemoteStatus(
        name=name,
        data_dir=folder,
        state=kind,
        pid=state.pid if state is not None and kind != "stopped" else None,
        endpoint=state.endpoint if state is not None else None,
        url=state.url if state is not None else None,
        audience=audience,
        audience_declared=declared,
        checkout_endpoint=checkout_endpoint,
        ports_closed=(
            process_is_locked_down(state.pid, state.server_dir)
            if state is not None and state.pid is not None and kind != "stopped"
            else None
        ),
    )


# --- the checkout's DVC configuration ------------------------------------------------------


LOCAL_CONFIG = ".dvc/config.local"


def _dvc_config(project_root: Path) -> Any:
    """DVC's configuration of the checkout, after checking what DVC would fail on with a bare
    validation error: a remote section left in ``.dvc/config.local``."""
    from dvc.config import Config

    dvc_dir = project_root / ".dvc"
    if not dvc_dir.is_dir():
        raise RemoteError(f"{project_root} is not a DVC repository: run `dvc init` there first")
    leftovers = local_config_leftovers(project_root)
    if leftovers:
        raise RemoteError("\n".join(leftovers))
    return Config(dvc_dir=str(dvc_dir))


def local_config_leftovers(project_root: Path) -> list[str]:
    """One message per remote section of ``.dvc/config.local`` that has no ``url`` there nor
    in any other config file: the remote was renamed or removed in ``.dvc/config``, and
    until the section goes every ``dvc`` command fails. Empty when there is none."""
    from configobj import ConfigObj, ConfigObjError
    from dvc.config import Config

    path = project_root / LOCAL_CONFIG
    try:
        text = path.read_text(encoding="utf-8")
        local = ConfigObj(text.splitlines(), interpolation=False)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, ConfigObjError) as exc:
        return [f"{LOCAL_CONFIG}: cannot be read ({exc}); fix or delete it, then run "
                "`vcat remote up NAME` for each remote you use"]  # fmt: skip
    names = [match.group(1) for key in local if (match := _REMOTE_SECTION.match(key))]
    orphans = [name for name in names if "url" not in local[f'remote "{name}"']]
    if not orphans:
        return []
    config = Config(dvc_dir=str(project_root / ".dvc"), validate=False)
    with_url: set[str] = set()
    for level in ("system", "global", "repo"):
        try:
            remotes = config.load_one(level).get("remote", {})
        except Exception:  # another level's own error is DVC's to report
            continue
        with_url |= {name for name, conf in remotes.items() if "url" in conf}
    served_elsewhere = sorted(
        name
        for name in with_url - set(names)
        if re.match(SERVED_NAME_PATTERN, name) and _repo_url(config, name) == remote_url(name)
    )
    messages = []
    for name in orphans:
        if name in with_url:
            continue
        first, last = _section_lines(text, name)
        then = (
            f", then `vcat remote up {served_elsewhere[0]}` to give remote "
            f"{served_elsewhere[0]!r} its credentials"
            if len(served_elsewhere) == 1
            else ""
        )
        messages.append(
            f"{LOCAL_CONFIG}:{first}: remote {name!r} has settings here (lines {first}-{last}) "
            f"but no url in .dvc/config, where it was renamed or removed; every dvc command "
            f"fails until they go: run `dvc remote remove --local {name}` (or delete those "
            f"lines){then}"
        )
    return messages


_REMOTE_SECTION = re.compile(r'^remote\s+"(.+)"$')


def _repo_url(config: Any, name: str) -> str | None:
    try:
        return config.load_one("repo").get("remote", {}).get(name, {}).get("url")
    except Exception:
        return None


def _section_lines(text: str, name: str) -> tuple[int, int]:
    """The first and last line numbers of remote ``name``'s section in a DVC config file."""
    lines = text.splitlines()
    opening = r"^\s*\[\s*['\"]?remote\s+\""
    closing = r"\"['\"]?\s*\]"
    header = re.compile(opening + re.escape(name) + closing)
    first = next((number for number, line in enumerate(lines, 1) if header.match(line)), 1)
    last = first
    for number in range(first + 1, len(lines) + 1):
        if lines[number - 1].lstrip().startswith("["):
            break
        if lines[number - 1].strip():
            last = number
    return first, last


def dvc_remote(project_root: Path, name: str) -> dict[str, Any]:
    """Remote ``name`` as DVC sees it (all config levels merged); empty when not configured."""
    return dict(_dvc_config(project_root).read().get("remote", {}).get(name, {}))


def default_remote(project_root: Path) -> str | None:
    """The checkout's default DVC remote (``core.remote``), if any."""
    return _dvc_config(project_root).read().get("core", {}).get("remote")


def _check_remote_url(project_root: Path, name: str) -> None:
    """Refuse to repoint a remote that this checkout already sends elsewhere."""
    configured = dvc_remote(project_root, name).get("url")
    if configured is not None and configured != remote_url(name):
        raise RemoteError(
            f"remote {name!r} already points at {configured} in .dvc/config; choose another "
            f"NAME, or remove it first with `dvc remote remove {name}`"
        )


def configure_checkout(project_root: Path, state: ServerState) -> tuple[bool, list[str]]:
    """Write the remote's URL to ``.dvc/config`` (if absent) and its endpoint and credentials
    to ``.dvc/config.local``; make it the default remote when there is none.

    Returns whether it became the default, and notes for the user.
    """
    config = _dvc_config(project_root)
    notes: list[str] = []
    shared = config.read("repo").get("remote", {}).get(state.name, {})
    if shared.get("url") != state.url:
        with config.edit("repo") as conf:
            conf["remote"].setdefault(state.name, {})["url"] = state.url
    leaked = [key for key in _CREDENTIAL_KEYS if key in shared]
    if leaked:
        notes.append(
            f".dvc/config holds {', '.join(leaked)} of remote {state.name!r}: remove them "
            f"from it (vcat keeps credentials in .dvc/config.local)"
        )
    wanted = {
        "endpointurl": state.endpoint,
        "access_key_id": state.access_key,
        "secret_access_key": state.secret_key,
    }
    local = config.read("local").get("remote", {}).get(state.name, {})
    path = project_root / LOCAL_CONFIG
    old_mode = tighten(path)
    if old_mode is not None:
        notes.append(
            f"{LOCAL_CONFIG} was readable by others (mode {old_mode:o}); it holds "
            "credentials, so it is now readable by you only (mode 600)"
        )
    if any(local.get(key) != value for key, value in wanted.items()):
        write_local_remote(path, state.name, wanted)
    default_set = config.read().get("core", {}).get("remote") is None
    if default_set:
        with config.edit("repo") as conf:
            conf["core"]["remote"] = state.name
    return default_set, notes


def write_local_remote(path: Path, name: str, settings: dict[str, str]) -> None:
    """Set remote ``name``'s ``settings`` in DVC config file ``path`` (``config.local``),
    keeping its other sections and comments. The file is replaced atomically and is mode 600
    from its creation: it holds credentials."""
    from configobj import ConfigObj

    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    conf = ConfigObj(lines, interpolation=False, write_empty_values=True)
    section = f'remote "{name}"'
    if section not in conf:
        conf[section] = {}
    conf[section].update(settings)
    write_private(path, "\n".join(conf.write()) + "\n")


# --- releases.yaml: who may read each remote -----------------------------------------------


class ReleasesError(CatalogError):
    """``releases.yaml`` cannot be used; each problem names the file and line."""


class _RemoteRelease(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    audience: Audience


class _Releases(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    remotes: dict[str, _RemoteRelease] = Field(default_factory=dict)


def releases_path(project_root: Path) -> Path:
    return project_root / RELEASES_FILE


def load_audiences(project_root: Path) -> dict[str, Audience]:
    """The audience of every remote ``releases.yaml`` lists (empty when there is no file).

    Raises ``ReleasesError`` naming the file and line when the file is not valid.
    """
    path = releases_path(project_root)
    if not path.exists() or _is_blank(path):
        return {}
    try:
        document = load_yaml(path)
    except CatalogError as exc:
        raise ReleasesError.of(exc.problems) from None
    if not isinstance(document.data, dict):
        raise ReleasesError(path, 1, "expected a mapping with 'remotes'; " + _RELEASES_HINT)
    problems = [
        Problem(path, document.lines.line_of(("remotes", key)), Severity.ERROR,
                f"{key!r} is not a DVC remote name; " + _RELEASES_HINT)
        for key in (document.data.get("remotes") or {})
        if not re.match(REMOTE_NAME_PATTERN, str(key))
    ]  # fmt: skip
    try:
        parsed = _Releases.model_validate(document.data)
    except ValidationError as exc:
        problems += [
            Problem(path, document.lines.line_of(err["loc"]), Severity.ERROR, _describe(err))
            for err in exc.errors(include_url=False)
        ]
    if problems:
        raise ReleasesError.of(sorted(problems))
    return {name: remote.audience for name, remote in parsed.remotes.items()}


_RELEASES_HINT = "write `remotes: {NAME: {audience: private}}` (or public)"


def _describe(error: Any) -> str:
    loc = [part for part in error["loc"] if part != "[key]"]
    where = format_location(loc)
    if error["type"] == "extra_forbidden":
        return f"unknown key {str(loc[-1])!r}; {_RELEASES_HINT}"
    if error["type"] == "enum":
        return f"{where}: the audience is 'private' or 'public'"
    message = error["msg"]
    return f"{where}: {message}; {_RELEASES_HINT}" if where else f"{message}; {_RELEASES_HINT}"


def _is_blank(path: Path) -> bool:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False  # load_yaml reports it with a line
    return all(not line.strip() or line.lstrip().startswith("#") for line in text.splitlines())


def audience_of(project_root: Path, name: str) -> tuple[Audience, bool]:
    """Remote ``name``'s audience and whether ``releases.yaml`` declares it (else public)."""
    audiences = load_audiences(project_root)
    if name in audiences:
        return audiences[name], True
    return Audience.PUBLIC, False


def record_audience(project_root: Path, name: str, public: bool) -> Audience:
    """Declare remote ``name`` in ``releases.yaml``: public when ``public``, else private
    unless it is already declared. A declared public remote stays public; making it private
    is a decision to write into the file by hand."""
    audiences = load_audiences(project_root)
    current = audiences.get(name)
    wanted = Audience.PUBLIC if public else (current or Audience.PRIVATE)
    if current == wanted:
        return wanted
    audiences[name] = wanted
    path = releases_path(project_root)
    header = _leading_comments(path) or _RELEASES_HEADER
    body = yaml.safe_dump(
        {"remotes": {key: {"audience": str(value)} for key, value in sorted(audiences.items())}},
        default_flow_style=False,
        sort_keys=False,
    )
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(header + body)
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return wanted


def _leading_comments(path: Path) -> str:
    """The comment lines at the top of ``path``, which a rewrite keeps."""
    if not path.exists():
        return ""
    kept: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
        if not line.startswith("#"):
            break
        kept.append(line)
    return "".join(kept)
