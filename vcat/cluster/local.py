"""Start, stop and inspect the local cluster: munged, MariaDB, slurmdbd, slurmctld, slurmd.

One folder holds everything: the munge key, the configuration, the accounting database, the
controller's state, the logs and ``cluster.json`` (pids, ports; mode 600). Every start picks
free ports on 127.0.0.1 and rewrites the configuration; the key, the database and the
controller's state are kept, so ``sacct`` still knows the jobs of an earlier start.

``cluster_down`` cancels the jobs first (with ``proctrack/linuxproc`` a job's processes do
not end with slurmd), then stops the daemons in reverse order, then ends any job process of
this cluster that is still there.
"""

from __future__ import annotations

import fcntl
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vcat.cluster.config import (
    ACCOUNTING_DATABASE,
    ACCOUNTING_USER,
    CLUSTER_NAME,
    NODE_NAME,
    ClusterLayout,
    Ports,
    node_memory_mb,
    slurm_conf,
    slurmdbd_conf,
)
from vcat.cluster.daemons import DaemonError, daemon_alive, start_daemon, stop_daemon, wait_until
from vcat.project import user_data_dir
from vcat.seaweedfs import free_port
from vcat.secret_files import private_dir, write_private

STATE_FILE = "cluster.json"
STATE_FORMAT = "vcat.cluster.state/1"
#: The daemons in the order they start; they stop in the reverse order.
DAEMONS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd")
PROGRAMS = (
    "munged",
    "mariadbd",
    "mariadb-install-db",
    "mariadb",
    "slurmdbd",
    "slurmctld",
    "slurmd",
    "sbatch",
    "sacct",
    "sacctmgr",
)
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server"
MUNGE_KEY_BYTES = 1024


class ClusterError(RuntimeError):
    """The cluster cannot be started, stopped or read; the message says what to do."""


def default_folder() -> Path:
    """``$XDG_DATA_HOME/vcat/slurm``, else ``~/.local/share/vcat/slurm``."""
    return user_data_dir("slurm")


@dataclass
class ClusterState:
    """What ``cluster.json`` records."""

    folder: Path
    cpus: int
    memory_mb: int
    user: str
    database_password: str
    ports: Ports | None = None
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def layout(self) -> ClusterLayout:
        return ClusterLayout(self.folder)

    def environment(self) -> dict[str, str]:
        """What a client (sbatch, sacct, submitit) needs to reach this cluster."""
        return {"SLURM_CONF": str(self.layout.slurm_conf)}

    def running(self) -> dict[str, bool]:
        """Each daemon: whether its recorded process is alive."""
        return {name: daemon_alive(self.pids.get(name), self.folder) for name in DAEMONS}


def read_state(folder: Path) -> ClusterState | None:
    """The state recorded in ``folder``; None when no cluster was ever started there."""
    path = folder / STATE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ClusterError(_broken(path, str(exc))) from None
    try:
        if record["format"] != STATE_FORMAT:
            raise ValueError(f"format {record['format']!r}, expected {STATE_FORMAT!r}")
        ports = record["ports"]
        return ClusterState(
            folder=folder,
            cpus=int(record["cpus"]),
            memory_mb=int(record["memory_mb"]),
            user=str(record["user"]),
            database_password=str(record["database_password"]),
            ports=None if ports is None else Ports(**{k: int(v) for k, v in ports.items()}),
            pids={str(name): int(pid) for name, pid in record["pids"].items()},
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ClusterError(_broken(path, f"{type(exc).__name__}: {exc}")) from None


def _broken(path: Path, reason: str) -> str:
    return (
        f"{path} is not a cluster state ({reason}); stop any slurmctld, slurmd, slurmdbd, "
        "mariadbd and munged started from that folder, delete the folder and run "
        "`vcat cluster up` again"
    )


def write_state(state: ClusterState) -> None:
    record: dict[str, Any] = {
        "format": STATE_FORMAT,
        "cpus": state.cpus,
        "memory_mb": state.memory_mb,
        "user": state.user,
        "database_password": state.database_password,
        "ports": None if state.ports is None else asdict(state.ports),
        "pids": state.pids,
    }
    write_private(state.folder / STATE_FILE, json.dumps(record, indent=2) + "\n")


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """Hold the folder's lock: two commands never start or stop the same cluster at once."""
    private_dir(folder)
    with (folder / ".lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def missing_programs() -> list[str]:
    return [program for program in PROGRAMS if shutil.which(program) is None]


def _check_machine() -> None:
    missing = missing_programs()
    if missing:
        raise ClusterError(
            f"{', '.join(missing)} not found: install Debian's packages "
            f"(`apt-get install {PACKAGES}`; `make test` does it)"
        )
    if os.geteuid() != 0:
        raise ClusterError(
            "the local SLURM cluster runs as root (slurmd starts each job as the user who "
            "submitted it): run `vcat cluster up` as root, or use a cluster of your site"
        )


# --- starting ------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpReport:
    state: ClusterState
    started: bool


def cluster_up(folder: Path, cpus: int | None = None) -> UpReport:
    """Start every daemon of the cluster in ``folder`` unless all run already; wait until the
    node takes jobs. On a failure the daemons started so far are stopped again."""
    _check_machine()
    folder = folder.absolute()
    with _locked(folder):
        state = read_state(folder)
        if state is not None and all(state.running().values()):
            return UpReport(state, started=False)
        if state is not None:
            _stop_all(state)  # what is left of a start that failed or was killed
        else:
            state = ClusterState(
                folder=folder,
                cpus=cpus or os.cpu_count() or 1,
                memory_mb=node_memory_mb(),
                user=pwd.getpwuid(os.geteuid()).pw_name,
                database_password=secrets.token_urlsafe(24),
            )
        if cpus is not None:
            state.cpus = cpus
        try:
            _start_all(state)
        except BaseException:
            _stop_all(state)
            raise
        return UpReport(state, started=True)


def _start_all(state: ClusterState) -> None:
    layout = state.layout
    for folder in (layout.folder / "etc", layout.run_dir, layout.log_dir, layout.state_dir):
        private_dir(folder)
    layout.spool_dir.mkdir(parents=True, exist_ok=True)
    if not layout.munge_key.is_file():
        write_private(layout.munge_key, secrets.token_bytes(MUNGE_KEY_BYTES))
    layout.munge_key.chmod(0o400)
    state.ports = Ports(free_port(), free_port(), free_port(), free_port())
    state.pids = {}
    write_private(
        layout.slurm_conf,
        slurm_conf(layout, state.ports, state.user, state.cpus, state.memory_mb),
    )
    write_private(
        layout.slurmdbd_conf,
        slurmdbd_conf(layout, state.ports, state.user, state.database_password),
    )
    # slurmctld and slurmd read slurm.conf as the SlurmUser: root here, so 600 is enough
    environment = {**os.environ, **state.environment()}

    _start(
        state,
        "munged",
        _munged_command(layout),
        environment,
        lambda: _socket_answers(layout.munge_socket),
    )
    _initialise_database(layout)
    _start(
        state,
        "mariadbd",
        _mariadbd_command(state),
        environment,
        lambda: _database(state, "SELECT 1").returncode == 0,
    )
    _grant_accounting_user(state)
    _start(
        state,
        "slurmdbd",
        ["slurmdbd", "-D"],
        environment,
        lambda: _port_answers(state.ports.slurmdbd),  # type: ignore[union-attr]
    )
    _register_cluster(state)
    _start(
        state,
        "slurmctld",
        ["slurmctld", "-D", "-f", str(layout.slurm_conf)],
        environment,
        lambda: "UP" in _client(state, ["scontrol", "ping"], check=False),
    )
    _start(
        state,
        "slurmd",
        ["slurmd", "-D", "-f", str(layout.slurm_conf), "-N", NODE_NAME],
        environment,
        lambda: _node_takes_jobs(state),
    )


def _start(
    state: ClusterState,
    name: str,
    command: list[str],
    environment: Mapping[str, str],
    ready: Any,
) -> None:
    own_log, output = state.layout.log(name), state.layout.log(f"{name}.out")
    process = start_daemon(command, output, environment)
    state.pids[name] = process.pid
    write_state(state)
    wait_until(ready, process, name, [own_log, output])


def _munged_command(layout: ClusterLayout) -> list[str]:
    return [
        "munged",
        "--foreground",
        "--force",  # it runs as root and its files are not in the system's folders
        f"--key-file={layout.munge_key}",
        f"--socket={layout.munge_socket}",
        f"--pid-file={layout.pid_file('munged')}",
        f"--log-file={layout.log('munged')}",
        f"--seed-file={layout.run_dir / 'munged.seed'}",
    ]


def _mariadbd_command(state: ClusterState) -> list[str]:
    layout = state.layout
    return [
        "mariadbd",
        "--no-defaults",
        f"--datadir={layout.database_dir}",
        f"--socket={layout.database_socket}",
        f"--port={state.ports.database}",  # type: ignore[union-attr]
        "--bind-address=127.0.0.1",
        f"--user={state.user}",
        f"--pid-file={layout.pid_file('mariadbd')}",
        f"--log-error={layout.log('mariadbd')}",
        # slurmdbd's recommendation; the defaults make its first start slow
        "--innodb-buffer-pool-size=128M",
        "--innodb-lock-wait-timeout=900",
    ]


def _initialise_database(layout: ClusterLayout) -> None:
    """Create the database folder once, in a temporary folder renamed into place."""
    if (layout.database_dir / "mysql").is_dir():
        return
    scratch = Path(tempfile.mkdtemp(prefix=".mysql.", dir=layout.folder))
    try:
        result = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={scratch}",
                "--auth-root-authentication-method=normal",
                f"--user={pwd.getpwuid(os.geteuid()).pw_name}",
                "--skip-test-db",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise ClusterError(
                f"mariadb-install-db failed ({result.returncode}): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        shutil.rmtree(layout.database_dir, ignore_errors=True)
        os.replace(scratch, layout.database_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _grant_accounting_user(state: ClusterState) -> None:
    password = state.database_password.replace("'", "''")
    statements = "; ".join(
        [
            f"CREATE DATABASE IF NOT EXISTS {ACCOUNTING_DATABASE}",
            *(
                f"CREATE USER IF NOT EXISTS '{ACCOUNTING_USER}'@'{host}' "
                f"IDENTIFIED BY '{password}'; "
                f"ALTER USER '{ACCOUNTING_USER}'@'{host}' IDENTIFIED BY '{password}'; "
                f"GRANT ALL ON {ACCOUNTING_DATABASE}.* TO '{ACCOUNTING_USER}'@'{host}'"
                for host in ("127.0.0.1", "localhost")
            ),
        ]
    )
    result = _database(state, statements)
    if result.returncode != 0:
        raise ClusterError(
            f"could not set up the accounting database: {result.stderr.strip()} "
            f"(log: {state.layout.log('mariadbd')})"
        )


def _database(state: ClusterState, statements: str) -> subprocess.CompletedProcess[str]:
    """``statements`` run by MariaDB's root user over the server's Unix socket."""
    return subprocess.run(
        [
            "mariadb",
            "--no-defaults",
            f"--socket={state.layout.database_socket}",
            "--user=root",
            "--execute",
            statements,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _register_cluster(state: ClusterState) -> None:
    listed = _client(state, ["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"])
    if CLUSTER_NAME not in listed.split():
        _client(state, ["sacctmgr", "-i", "add", "cluster", CLUSTER_NAME])


def _node_takes_jobs(state: ClusterState) -> bool:
    node = _client(state, ["sinfo", "-h", "-N", "-n", NODE_NAME, "-o", "%T"], check=False)
    node = node.strip().rstrip("*~#$@+")
    if node in ("down", "drained", "draining", "fail"):
        # a node that a killed start left down comes back once slurmd answers again
        _client(
            state,
            ["scontrol", "update", f"nodename={NODE_NAME}", "state=resume"],
            check=False,
        )
    return node in ("idle", "mixed", "allocated", "completing")


def _client(state: ClusterState, command: list[str], check: bool = True) -> str:
    """A SLURM client command against this cluster; its standard output."""
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **state.environment()},
        timeout=60,
    )
    if check and result.returncode != 0:
        raise ClusterError(
            f"`{' '.join(command)}` failed ({result.returncode}): "
            f"{(result.stderr or result.stdout).strip()}; the logs are in {state.layout.log_dir}"
        )
    return result.stdout


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _port_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- stopping ------------------------------------------------------------------------------


def cluster_down(folder: Path) -> ClusterState | None:
    """Cancel the cluster's jobs and stop its daemons; the state it had, None when no cluster
    was ever started in ``folder``."""
    folder = folder.absolute()
    with _locked(folder):
        state = read_state(folder)
        if state is None:
            return None
        _stop_all(state)
        return state


def _stop_all(state: ClusterState) -> None:
    running = state.running()
    if running.get("slurmctld"):
        _cancel_jobs(state)
    for name in reversed(DAEMONS):
        stop_daemon(state.pids.get(name), state.folder)
    _end_job_processes(state)
    state.pids = {}
    write_state(state)


def _cancel_jobs(state: ClusterState, wait: float = 20.0) -> None:
    jobs = _client(state, ["squeue", "-h", "-o", "%i"], check=False).split()
    if not jobs:
        return
    _client(state, ["scancel", "--full", *jobs], check=False)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not _client(state, ["squeue", "-h", "-o", "%i"], check=False).split():
            return
        time.sleep(0.2)


def _end_job_processes(state: ClusterState) -> None:
    """SIGKILL what jobs of this cluster left running: processes whose environment names
    this cluster's slurm.conf and that are a job step or ``slurmstepd`` (a shell that only
    exported SLURM_CONF is left alone)."""
    conf = f"SLURM_CONF={state.layout.slurm_conf}".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environment = (proc / "environ").read_bytes().split(b"\0")
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if conf not in environment:
            continue
        in_job = any(entry.startswith(b"SLURM_JOB_ID=") for entry in environment)
        if in_job or command.startswith(b"slurmstepd"):
            with suppress(OSError):
                os.kill(int(proc.name), signal.SIGKILL)


# --- status --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusterStatus:
    folder: Path
    state: ClusterState | None
    running: dict[str, bool]
    node: str | None
    jobs: int | None

    @property
    def up(self) -> bool:
        return bool(self.running) and all(self.running.values())

    def to_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "format": "vcat.cluster.status/1",
            "folder": str(self.folder),
            "up": self.up,
            "daemons": self.running,
            "node": self.node,
            "jobs": self.jobs,
            "cpus": None if state is None else state.cpus,
            "memory_mb": None if state is None else state.memory_mb,
            "slurm_conf": None if state is None else str(state.layout.slurm_conf),
            "logs": None if state is None else str(state.layout.log_dir),
        }


def cluster_status(folder: Path) -> ClusterStatus:
    """What runs in ``folder`` and, when the controller answers, the node and job count."""
    folder = folder.absolute()
    state = read_state(folder)
    if state is None:
        return ClusterStatus(folder, None, {}, None, None)
    running = state.running()
    node = jobs = None
    if running["slurmctld"]:
        try:
            node = _client(state, ["sinfo", "-h", "-N", "-o", "%T"], check=False).strip() or None
            jobs = len(_client(state, ["squeue", "-h", "-o", "%i"]).split())
        except (ClusterError, subprocess.TimeoutExpired):
            pass
    return ClusterStatus(folder, state, running, node, jobs)


__all__ = [
    "ClusterError",
    "ClusterState",
    "ClusterStatus",
    "DaemonError",
    "cluster_down",
    "cluster_status",
    "cluster_up",
    "default_folder",
]
