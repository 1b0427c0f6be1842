"""Start-up of the local S3 server with its other ports closed, against the same `weed mini`
with them open (as vcat started it before).

    python bench/remote_start.py [--rounds 5]

Each round starts both in fresh folders, alternating which goes first, and times from the
call until an S3 listing with the credentials answers (what `vcat remote up` waits for),
then a restart in the same folder. The protected start adds a certificate authority and a
certificate (EC P-256), four JWT keys, ``security.toml`` and mutual TLS between the
components. Prints the medians and protected / open (target: at most 1.5x).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from vcat.seaweedfs import (
    S3Credentials,
    SeaweedS3,
    free_port,
    free_port_pair,
    ports_in_command,
    remove_sockets,
    weed_binary,
)

CREDENTIALS = S3Credentials("vcat-bench", "vcat-bench-secret")
TARGET = 1.5


def open_start(folder: Path) -> tuple[float, subprocess.Popen[bytes]]:
    """``weed mini`` as vcat started it before its other ports were closed."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "s3.json"
    identity = {
        "name": "vcat",
        "credentials": [{"accessKey": CREDENTIALS.access_key, "secretKey": CREDENTIALS.secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    s3_port = free_port()
    ports = [free_port() for _ in range(7)]
    admin = free_port_pair(10000)
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            weed_binary(),
            "mini",
            f"-dir={folder}",
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
            f"-s3.port={s3_port}",
            f"-s3.port.grpc={ports[6]}",
            f"-admin.port={admin}",
            f"-admin.port.grpc={admin + 10000}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "GOMEMLIMIT": "512MiB"},
        start_new_session=True,
    )
    _wait_for_s3(f"http://127.0.0.1:{s3_port}", process)
    return time.perf_counter() - began, process


def _stop_open(process: subprocess.Popen[bytes], folder: Path) -> None:
    """Stop an open server and remove the sockets it named after its ports."""
    arguments = [str(argument) for argument in process.args]  # type: ignore[union-attr]
    _stop(process)
    remove_sockets(folder, ports_in_command(arguments))


def _wait_for_s3(endpoint: str, process: subprocess.Popen[bytes]) -> None:
    import s3fs

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"weed exited with {process.returncode}")
        try:
            s3fs.S3FileSystem(
                key=CREDENTIALS.access_key,
                secret=CREDENTIALS.secret_key,
                client_kwargs={"endpoint_url": endpoint},
                skip_instance_cache=True,
            ).ls("")
            return
        except Exception:
            time.sleep(0.2)
    raise SystemExit(f"no S3 answer at {endpoint}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def protected_start(folder: Path) -> tuple[float, SeaweedS3]:
    began = time.perf_counter()
    server = SeaweedS3(folder, CREDENTIALS).start()
    return time.perf_counter() - began, server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"open": [], "protected": [], "open again": [], "again": []}
    with tempfile.TemporaryDirectory(prefix="vcat-bench-start-") as scratch:
        for round_number in range(args.rounds):
            order = ["open", "protected"] if round_number % 2 == 0 else ["protected", "open"]
            for kind in order:
                folder = Path(scratch) / f"{kind}-{round_number}"
                if kind == "open":
                    first, process = open_start(folder)
                    _stop_open(process, folder)
                    again, process = open_start(folder)
                    _stop_open(process, folder)
                    times["open"].append(first)
                    times["open again"].append(again)
                else:
                    first, server = protected_start(folder)
                    server.stop()
                    again, server = protected_start(folder)
                    server.stop()
                    times["protected"].append(first)
                    times["again"].append(again)
                shutil.rmtree(folder, ignore_errors=True)
    median = {kind: statistics.median(values) for kind, values in times.items()}
    print(f"rounds: {args.rounds}")
    print(f"first start:  open {median['open']:.2f} s, protected {median['protected']:.2f} s")
    print(f"restart:      open {median['open again']:.2f} s, protected {median['again']:.2f} s")
    ratio_first = median["protected"] / median["open"]
    ratio_again = median["again"] / median["open again"]
    print(f"protected / open: first {ratio_first:.2f}x, restart {ratio_again:.2f}x")
    verdict = "met" if max(ratio_first, ratio_again) <= TARGET else "MISSED"
    print(f"target: at most {TARGET:.1f}x: {verdict}")


if __name__ == "__main__":
    main()
