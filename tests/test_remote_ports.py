"""The local S3 server as an attacker on the same machine sees it: every port the `weed`
process listens on (read from the kernel, so a port that a later `weed` adds is probed too)
refuses a client without credentials, except the S3 port, which answers 403; S3 with the
credentials works. The probes are real requests: HTTP/1.1 reads, writes, deletes and
listings, and gRPC calls that do list the bucket when given the server's own certificate."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.port_probes import (
    first_string_field,
    grpc_call,
    http_request,
    listeners,
    multipart,
    protobuf_string,
    protobuf_varint,
)
from vcat.seaweed_security import client_certificate
from vcat.seaweedfs import S3Credentials, SeaweedS3

pytestmark = pytest.mark.slow

CREDENTIALS = S3Credentials("vcat-probe", "probe-secret-0123456789")
BUCKET = "vcat-probe"
OBJECT = "dvc/files/md5/ab/private-object-name"
CONTENT = b"private bytes of the release " * 40
LIST_ENTRIES = "/filer_pb.SeaweedFiler/ListEntries"
ASSIGN = "/master_pb.Seaweed/Assign"
REFUSED = (None, 400, 401, 403, 404, 405)


def _s3(server: SeaweedS3, credentials: S3Credentials | None = CREDENTIALS):  # type: ignore[no-untyped-def]
    import s3fs

    if credentials is None:
        return s3fs.S3FileSystem(
            anon=True, client_kwargs={"endpoint_url": server.endpoint}, skip_instance_cache=True
        )
    return s3fs.S3FileSystem(
        key=credentials.access_key,
        secret=credentials.secret_key,
        client_kwargs={"endpoint_url": server.endpoint},
        skip_instance_cache=True,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    folder = tmp_path_factory.mktemp("weed") / "server"
    with SeaweedS3(folder, CREDENTIALS) as running:
        filesystem = _s3(running)
        filesystem.mkdir(BUCKET)
        filesystem.pipe(f"{BUCKET}/{OBJECT}", CONTENT)
        yield running


def _other_ports(server: SeaweedS3) -> list[int]:
    assert server.pid is not None
    found = listeners(server.pid)
    ports = [port for _, port in found.tcp]
    assert server.s3_port in ports
    # what weed was told to open is found; the probes run over what it opened
    assert set(server.ports.values()) <= set(ports)
    return [port for port in ports if port != server.s3_port]


def _no_secret(body: bytes) -> bool:
    return CONTENT[:40] not in body and b"private-object-name" not in body


def test_every_port_listens_on_loopback_only_and_unix_sockets_are_private(
    server: SeaweedS3,
) -> None:
    assert server.pid is not None
    found = listeners(server.pid)
    assert len(found.tcp) >= 10
    assert {address for address, _ in found.tcp} == {"127.0.0.1"}
    assert found.udp == []
    assert found.unix, "weed opens Unix sockets beside its ports"
    for path in found.unix:
        mode = os.stat(path).st_mode
        assert stat.S_ISSOCK(mode)
        assert stat.S_IMODE(mode) & 0o077 == 0, f"{path} is open to others: {oct(mode)}"
        assert os.stat(path).st_uid == os.getuid()


def test_no_http_read_write_delete_or_listing_without_credentials(server: SeaweedS3) -> None:
    upload, upload_headers = multipart("evil.txt", b"written by a stranger")
    requests = [
        ("GET", f"/buckets/{BUCKET}/{OBJECT}", None, {}),
        ("GET", f"/buckets/{BUCKET}/dvc/files/md5/ab/", None, {}),  # a listing
        ("GET", f"/buckets/{BUCKET}/?pretty=y", None, {"Accept": "application/json"}),
        ("GET", "/", None, {"Accept": "application/json"}),
        ("PUT", f"/buckets/{BUCKET}/dvc/evil.txt", b"written by a stranger", {}),
        ("POST", f"/buckets/{BUCKET}/dvc/evil.txt", upload, upload_headers),
        ("DELETE", f"/buckets/{BUCKET}/{OBJECT}", None, {}),
        ("DELETE", f"/buckets/{BUCKET}/?recursive=true", None, {}),
        ("GET", "/dir/assign", None, {}),
        ("POST", "/dir/assign?count=1", None, {}),
        ("GET", "/dir/lookup?volumeId=1", None, {}),
        ("GET", "/vol/status", None, {}),
        ("POST", "/submit", upload, upload_headers),
        ("GET", "/1,0100000000", None, {}),
        ("POST", "/1,0100000000", upload, upload_headers),
        ("DELETE", "/1,0100000000", None, {}),
    ]
    answered: list[str] = []
    for port in _other_ports(server):
        for method, path, body, headers in requests:
            status, content = http_request(port, method, path, body, headers)
            where = f"{method} 127.0.0.1:{port}{path} -> {status}"
            assert _no_secret(content), where
            if path == "/" and method == "GET" and status == 200:
                continue  # the master's status page: the cluster's shape, no objects
            assert status in REFUSED, where
            answered.append(where)
    # the object is still there and unchanged, and nothing else was written
    filesystem = _s3(server)
    assert filesystem.cat(f"{BUCKET}/{OBJECT}") == CONTENT
    assert filesystem.find(BUCKET) == [f"{BUCKET}/{OBJECT}"]
    assert answered


def test_no_grpc_call_without_the_servers_certificate(server: SeaweedS3) -> None:
    listing = protobuf_string(1, f"/buckets/{BUCKET}/dvc/files/md5/ab")
    assign = protobuf_varint(1, 1)
    for port in _other_ports(server):
        for method, message in ((LIST_ENTRIES, listing), (ASSIGN, assign)):
            for tls in (False, True):
                answer = grpc_call(port, method, message, tls=tls)
                assert answer is None, f"{method} on 127.0.0.1:{port} (tls={tls}): {answer!r}"


def test_the_grpc_probe_reaches_data_with_the_certificate_and_volumes_want_a_token(
    server: SeaweedS3,
) -> None:
    """The probes above are real attacks: with the server's own certificate the same calls
    list the object and hand out a file id. Writing to that id still needs the token."""
    certificate = client_certificate(server.data_dir)
    ports = server.ports
    listing = grpc_call(
        ports["filer.grpc"],
        LIST_ENTRIES,
        protobuf_string(1, f"/buckets/{BUCKET}/dvc/files/md5/ab"),
        tls=True,
        certificate=certificate,
    )
    assert listing is not None and b"private-object-name" in listing
    assigned = grpc_call(
        ports["master.grpc"], ASSIGN, protobuf_varint(1, 1), tls=True, certificate=certificate
    )
    assert assigned
    fid = first_string_field(assigned)
    assert "," in fid
    upload, headers = multipart("evil.txt", b"written by a stranger")
    assert http_request(ports["volume"], "POST", f"/{fid}", upload, headers)[0] == 401
    assert http_request(ports["volume"], "PUT", f"/{fid}", b"stranger", {})[0] == 401
    assert http_request(ports["volume"], "GET", f"/{fid}")[0] == 401


def test_s3_works_with_credentials_and_answers_403_without(server: SeaweedS3) -> None:
    filesystem = _s3(server)
    filesystem.pipe(f"{BUCKET}/dvc/second", b"second")
    assert filesystem.cat(f"{BUCKET}/dvc/second") == b"second"
    filesystem.rm(f"{BUCKET}/dvc/second")
    port = server.s3_port
    for method, path, body in (
        ("GET", f"/{BUCKET}/{OBJECT}", None),
        ("HEAD", f"/{BUCKET}/{OBJECT}", None),
        ("GET", f"/{BUCKET}?list-type=2", None),
        ("GET", "/", None),
        ("PUT", f"/{BUCKET}/dvc/evil.txt", b"stranger"),
        ("DELETE", f"/{BUCKET}/{OBJECT}", None),
    ):
        status, content = http_request(port, method, path, body)
        assert status == 403, f"{method} {path} -> {status}"
        assert CONTENT[:40] not in content  # (the error names the key the request asked for)
    wrong = _s3(server, S3Credentials(CREDENTIALS.access_key, "not-the-secret-key"))
    with pytest.raises(PermissionError):
        wrong.cat(f"{BUCKET}/{OBJECT}")
    assert filesystem.cat(f"{BUCKET}/{OBJECT}") == CONTENT


def test_credential_files_are_private_and_a_restart_makes_new_keys(tmp_path: Path) -> None:
    folder = tmp_path / "server"
    folder.mkdir(mode=0o755)
    (folder / "s3.json").write_text("{}")
    (folder / "s3.json").chmod(0o644)  # as an older version left it
    server = SeaweedS3(folder, CREDENTIALS)
    with server:
        old_certificate = tmp_path / "old.crt", tmp_path / "old.key"
        for copied, original in zip(old_certificate, client_certificate(folder), strict=True):
            shutil.copy(original, copied)
        old_keys = (folder / "security.toml").read_text()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    for path in (
        folder / "s3.json",
        folder / "security.toml",
        *client_certificate(folder),
        folder / "tls" / "ca.crt",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert CREDENTIALS.secret_key not in (folder / "weed.log").read_text(errors="replace")
    with server:
        assert (folder / "security.toml").read_text() != old_keys
        answer = grpc_call(
            server.ports["filer.grpc"],
            LIST_ENTRIES,
            protobuf_string(1, "/buckets"),
            tls=True,
            certificate=old_certificate,
        )
        assert answer is None, "a certificate of the previous start still opens the filer"


def test_sockets_of_a_killed_server_are_removed_by_the_next_start(tmp_path: Path) -> None:
    import signal

    folder = tmp_path / "server"
    server = SeaweedS3(folder, CREDENTIALS).start()
    assert server.pid is not None
    old = listeners(server.pid).unix
    os.killpg(server.pid, signal.SIGKILL)
    assert server._process is not None
    server._process.wait(timeout=30)
    assert all(Path(path).exists() for path in old)  # weed had no chance to remove them
    with SeaweedS3(folder, CREDENTIALS) as again:
        assert again.pid is not None
        current = set(listeners(again.pid).unix)
        assert [path for path in old if Path(path).exists() and path not in current] == []
    assert [path for path in current if Path(path).exists()] == []  # and a stop removes its own
