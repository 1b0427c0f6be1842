"""URLs from somebody else's list reach public hosts only: never the machine itself, its
private network, the cloud's metadata service or a bucket read with the user's credentials."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import requests

from tests.http_server import MisbehavingServer, Route
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.hosts import HostPolicy, checked_session

PUBLIC_ONLY = HostPolicy()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("http://127.0.0.1:8333/buckets/", "loopback"),
        ("http://127.1/x.jpg", "loopback"),
        ("http://2130706433/x.jpg", "loopback"),  # 127.0.0.1 as one number
        ("http://localhost/x.jpg", "loopback"),
        ("http://[::1]/x.jpg", "loopback"),
        ("http://[::ffff:127.0.0.1]/x.jpg", "loopback"),
        ("http://169.254.169.254/latest/meta-data/iam/", "link-local"),
        ("http://[fe80::1]/x.jpg", "link-local"),
        ("http://10.0.0.7/x.jpg", "private"),
        ("http://192.168.1.1/x.jpg", "private"),
        ("http://172.16.5.4/x.jpg", "private"),
        ("http://[fd00::1]/x.jpg", "private"),
        ("http://0.0.0.0/x.jpg", "unspecified"),
        ("http://224.0.0.1/x.jpg", "multicast"),
    ],
)
def test_hosts_that_are_not_public_are_refused(url: str, said: str) -> None:
    with pytest.raises(FetchFailure) as refused:
        PUBLIC_ONLY.check(url)
    assert refused.value.failure is FailureClass.FORBIDDEN
    assert said in refused.value.reason
    assert "allowed_hosts" in refused.value.reason


@pytest.mark.parametrize(
    "url",
    [
        "s3://private-bucket/credentials.json",
        "ftp://example.org/x.jpg",
        "gs://bucket/x.jpg",
        "x.jpg",
        "http:///x.jpg",
    ],
)
def test_schemes_and_shapes_a_list_may_not_use_are_refused(url: str) -> None:
    with pytest.raises(FetchFailure) as refused:
        PUBLIC_ONLY.check(url)
    assert refused.value.failure is FailureClass.FORBIDDEN


def test_public_addresses_file_urls_and_unresolvable_names_pass() -> None:
    PUBLIC_ONLY.check("https://93.184.215.14/x.jpg")
    PUBLIC_ONLY.check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/x.jpg")
    PUBLIC_ONLY.check("file:.vcat/demo-world/x.jpg")  # vcat.localfiles decides those
    PUBLIC_ONLY.check("https://no-such-host.invalid/x.jpg")  # fails later as unreachable


def test_a_host_allowed_by_name_passes_and_only_that_one() -> None:
    policy = HostPolicy.allowing(["127.0.0.1", "[::1]"])
    policy.check("http://127.0.0.1:9000/x.jpg")
    policy.check("http://[::1]:9000/x.jpg")
    with pytest.raises(FetchFailure):
        policy.check("http://localhost:9000/x.jpg")


def test_a_redirect_to_a_refused_host_is_never_followed() -> None:
    with MisbehavingServer() as server:
        secret = server.add("/secret", Route(b"credentials"))
        hop = server.add(
            "/hop", Route(secret.replace("127.0.0.1", "localhost").encode(), "redirect")
        )
        session = checked_session(HostPolicy.allowing(["127.0.0.1"]))
        with pytest.raises(FetchFailure) as refused:
            session.get(hop, timeout=5)
        assert "localhost" in refused.value.reason
        assert server.routes["/secret"].requests == 0
        # the same redirect inside the allowed host is followed
        inside = server.add("/inside", Route(secret.encode(), "redirect"))
        assert session.get(inside, timeout=5).content == b"credentials"


def test_a_checked_session_still_raises_requests_errors_for_network_faults() -> None:
    session = checked_session(HostPolicy.allowing(["127.0.0.1"]))
    with pytest.raises(requests.ConnectionError):
        session.get("http://127.0.0.1:9/x.jpg", timeout=2)


def jpeg_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def run_stage(tmp_path: Path, lines: list[str], **settings: object) -> tuple[Path, dict[int, str]]:
    from stages.flickr_images import MISSING_NAME, main

    listed = tmp_path / "flickr-x.tsv.gz"
    listed.write_bytes(gzip.compress("".join(f"{line}\n" for line in lines).encode()))
    conf = {"attempts": 1, "max_missing_fraction": 1.0, **settings}
    output = main(conf, listed, tmp_path / "out")
    missing = {}
    for row in (output / MISSING_NAME).read_text().splitlines()[1:]:
        line, _, _, failure, _ = row.split("\t")
        missing[int(line)] = failure
    return output, missing


def test_the_image_stage_stores_nothing_a_list_points_at_on_this_machine(tmp_path: Path) -> None:
    from vcat.shards import ShardReader

    with MisbehavingServer() as server:
        secret = server.add("/secret.jpg", Route(jpeg_bytes()))
        lines = [
            f"1\t{secret}\timages/a.jpg",
            f"2\t{secret.replace('127.0.0.1', 'localhost')}\timages/b.jpg",
            "3\ts3://private-bucket/secret.jpg\timages/c.jpg",
            "4\thttp://169.254.169.254/latest/meta-data/iam/x.jpg\timages/d.jpg",
            "5\thttp://[::1]:9/x.jpg\timages/e.jpg",
        ]
        output, missing = run_stage(tmp_path, lines)
        assert missing == {
            1: "forbidden",
            2: "forbidden",
            3: "forbidden",
            4: "forbidden",
            5: "forbidden",
        }
        assert server.routes["/secret.jpg"].requests == 0
        assert ShardReader(output).keys() == []


def test_allowed_hosts_let_a_mirror_serve_the_images_but_not_redirect_away(tmp_path: Path) -> None:
    from vcat.shards import ShardReader

    with MisbehavingServer() as server:
        image = server.add("/a.jpg", Route(jpeg_bytes()))
        away = server.add(
            "/away.jpg", Route(image.replace("127.0.0.1", "localhost").encode(), "redirect")
        )
        lines = [f"1\t{image}\timages/a.jpg", f"2\t{away}\timages/b.jpg"]
        output, missing = run_stage(tmp_path, lines, allowed_hosts=["127.0.0.1"])
        assert missing == {2: "forbidden"}
        assert server.routes["/a.jpg"].requests == 1
        assert ShardReader(output).keys() == ["images/a"]
