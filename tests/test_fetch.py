"""`vcat fetch` and `vcat status` on a small project whose sources a local server provides."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.http_server import MisbehavingServer, Route
from vcat.cli import app
from vcat.fetch.workspace import Workspace

runner = CliRunner()
LIST = random.Random(1).randbytes(200_000)


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def zipped(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return buffer.getvalue()


IMAGES = {"scene/a.jpg": b"a" * 5000, "scene/b.jpg": b"b" * 7000}
ARCHIVE = tar_gz(IMAGES)
EMOJI = zipped({"emoji/smile.png": b"png" * 100})


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


def write_entry(project: Path, name: str, sources: str, subsets: str = "") -> None:
    text = f"""title: Test data {name}
description: A dataset served by the test's own HTTP server.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
{sources}
{subsets}"""
    (project / "catalog" / "datasets" / f"{name}.yaml").write_text(text)


def source_yaml(name: str, url: str, filename: str, data: bytes | None, **extra: str) -> str:
    lines = [f"  - name: {name}", f"    url: {url}", f"    filename: {filename}"]
    if data is not None:
        lines += [f"    size: {len(data)}", f"    checksum: md5:{md5(data)}"]
    else:
        lines.append("    checksum: unpublished")
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("VCAT_SETTINGS", raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    return root


def vcat(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def only_quarantine(project: Path, entry: str, source: str) -> Path:
    """The one quarantine folder of ``source``, which must exist."""
    [folder] = (project / "data" / "sources" / f".{entry}.vcat" / "quarantine" / source).iterdir()
    return folder


def status_of(name: str) -> dict[tuple[str, str], dict]:
    code, out = vcat("status", name, "--json")
    assert code == 0, out
    document = json.loads(out)
    assert document["format"] == "vcat.status/1"
    return {(item["part"], item["name"]): item for item in document["items"]}


def test_fetch_verifies_places_and_skips_next_time(
    project: Path, server: MisbehavingServer
) -> None:
    route = Route(LIST)
    url = server.add("/lists/flickr-0.1M.tsv.gz", route)
    sources = source_yaml("list-0.1M", url, "flickr-0.1M.tsv.gz", LIST, unpack_to="lists")
    subsets = """subsets:
  - name: 0.1M
    list_file: {source: list-0.1M, format: flickr-tsv-gz}
"""
    write_entry(project, "flickr", sources, subsets)
    assert status_of("flickr")[("source", "list-0.1M")]["state"] == "absent"
    code, out = vcat("fetch", "flickr", "--subset", "0.1M", "--no-dvc")
    assert code == 0, out
    assert "verified" in out
    placed = project / "data" / "sources" / "flickr" / "lists" / "flickr-0.1M.tsv.gz"
    assert placed.read_bytes() == LIST
    states = status_of("flickr")
    assert states[("source", "list-0.1M")]["state"] == "verified"
    assert states[("subset", "0.1M")]["state"] == "verified"
    assert md5(LIST) in states[("source", "list-0.1M")]["detail"]
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 0 and "up-to-date" in out
    assert route.requests == 1


def test_checksum_mismatch_is_quarantined_not_placed(
    project: Path, server: MisbehavingServer
) -> None:
    served = bytes([LIST[0] ^ 0xFF]) + LIST[1:]
    url = server.add("/list.gz", Route(served))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 1
    assert "checksum_mismatch" in out and "the size is right but the content differs" in out
    root = project / "data" / "sources" / "flickr"
    assert not (root / "list.gz").exists()
    folder = only_quarantine(project, "flickr", "list")
    assert (folder / "list.gz").read_bytes() == served
    reason = json.loads((folder / "reason.json").read_text())
    assert reason["failure"] == "checksum_mismatch"
    assert reason["url"] == url
    assert status_of("flickr")[("source", "list")]["state"] == "failed:checksum_mismatch"


def test_html_page_is_quarantined_with_the_page(project: Path, server: MisbehavingServer) -> None:
    url = server.add("/login", Route(behaviour="html"))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 1
    assert "html_instead_of_file" in out and "Sign in - Example Storage" in out
    folder = only_quarantine(project, "flickr", "list")
    assert b"Log in required" in (folder / "page.html").read_bytes()
    assert not (project / "data" / "sources" / "flickr" / "list.gz").exists()
    assert status_of("flickr")[("source", "list")]["state"] == "failed:html_instead_of_file"


def test_archives_are_unpacked_and_kept(project: Path, server: MisbehavingServer) -> None:
    tar_url = server.add("/images.tar.gz", Route(ARCHIVE))
    zip_url = server.add("/emoji.download", Route(EMOJI))
    sources = source_yaml(
        "images", tar_url, "images.tar.gz", ARCHIVE, archive="tar.gz", unpack_to="."
    ) + source_yaml("emoji", zip_url, "emoji.download", None, archive="auto", unpack_to="assets")
    write_entry(project, "scenes", sources)
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    root = project / "data" / "sources" / "scenes"
    for name, data in IMAGES.items():
        assert (root / name).read_bytes() == data
    assert (root / "assets" / "emoji" / "smile.png").read_bytes() == b"png" * 100
    area = project / "data" / "sources" / ".scenes.vcat"
    assert (area / "archives" / "images.tar.gz").read_bytes() == ARCHIVE
    assert not list((area / "extract").iterdir())
    states = status_of("scenes")
    assert states[("source", "images")]["state"] == "verified"
    assert states[("source", "emoji")]["state"] == "fetched"  # no published checksum
    assert "add `checksum: md5:" in out
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0
    assert re.search(r"images +up-to-date +verified earlier, unchanged", out)
    assert re.search(r"emoji +up-to-date +fetched earlier, unchanged", out)

    # every unpacked file was hashed while unpacking: the tree can be proven unchanged later
    manifest = str(area / "scenes.md5.manifest.tsv")
    code, out = vcat("verify", "scenes", "--manifest", manifest)
    assert code == 0, out
    (root / "scene" / "b.jpg").write_bytes(b"B" * 7000)
    code, out = vcat("verify", "scenes", "--manifest", manifest)
    assert code == 1
    assert "checksum_mismatch" in out and "scene/b.jpg" in out


def serve_archive_entry(project: Path, server: MisbehavingServer, archive: bytes) -> None:
    """Entry ``scenes`` with one tar.gz source ``images`` that the server serves as given."""
    url = server.add("/images.tar.gz", Route(archive))
    entry = source_yaml("images", url, "images.tar.gz", archive, archive="tar.gz", unpack_to=".")
    write_entry(project, "scenes", entry)


def test_corrupt_archive_is_classified_and_nothing_is_placed(
    project: Path, server: MisbehavingServer
) -> None:
    broken = ARCHIVE[: len(ARCHIVE) // 2]
    serve_archive_entry(project, server, broken)
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 1
    assert "corrupt_archive" in out
    root = project / "data" / "sources" / "scenes"
    assert not root.exists() or not any(root.iterdir())
    assert status_of("scenes")[("source", "images")]["state"] == "failed:corrupt_archive"


def test_upstream_change_is_reported(project: Path, server: MisbehavingServer) -> None:
    url = server.add("/list.gz", Route(LIST + b"appended later"))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 1
    assert "upstream_changed" in out and "update the entry's size and checksum" in out


def test_unknown_subset_suggests_a_name(project: Path, server: MisbehavingServer) -> None:
    url = server.add("/list.gz", Route(LIST))
    subsets = "subsets:\n  - name: 0.1M\n    list_file: {source: list, format: flickr-tsv-gz}\n"
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST), subsets)
    code, out = vcat("fetch", "flickr", "--subset", "0.1m")
    assert code == 2
    assert "flickr has no subset '0.1m'; did you mean '0.1M'?" in out


def test_dest_is_remembered_for_status(
    project: Path, server: MisbehavingServer, tmp_path: Path
) -> None:
    url = server.add("/list.gz", Route(LIST))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    elsewhere = tmp_path / "big-disk" / "flickr"
    code, out = vcat("fetch", "flickr", "--dest", str(elsewhere), "--no-dvc")
    assert code == 0, out
    assert (elsewhere / "list.gz").read_bytes() == LIST
    code, out = vcat("status", "flickr", "--json")
    document = json.loads(out)
    assert document["roots"]["flickr"] == str(elsewhere)
    assert document["items"][0]["state"] == "verified"


def test_file_url_source(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VCAT_LOCAL_ROOTS", str(tmp_path / "mirror"))  # see vcat/localfiles.py
    upstream = tmp_path / "mirror" / "list.gz"
    upstream.parent.mkdir()
    upstream.write_bytes(LIST)
    write_entry(project, "flickr", source_yaml("list", upstream.as_uri(), "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 0, out
    assert (project / "data" / "sources" / "flickr" / "list.gz").read_bytes() == LIST


def test_relative_file_url_is_read_from_inside_the_project(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = project / "upstream" / "list.gz"
    upstream.parent.mkdir()
    monkeypatch.setenv("VCAT_LOCAL_ROOTS", str(upstream.parent))  # see vcat/localfiles.py
    upstream.write_bytes(LIST)
    write_entry(project, "flickr", source_yaml("list", "file:upstream/list.gz", "list.gz", LIST))
    (project / "elsewhere").mkdir()
    monkeypatch.chdir(project / "elsewhere")
    code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 0, out
    assert (project / "data" / "sources" / "flickr" / "list.gz").read_bytes() == LIST


def test_hostile_archive_is_refused_and_nothing_is_placed(
    project: Path, server: MisbehavingServer
) -> None:
    hostile = tar_gz({"scene/ok.jpg": b"fine", "../../escaped.txt": b"owned"})
    serve_archive_entry(project, server, hostile)
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 1
    assert "unsafe_archive" in out and "../../escaped.txt" in out
    root = project / "data" / "sources" / "scenes"
    assert not (root / "scene").exists()
    assert not list(project.parent.rglob("escaped.txt"))
    folder = only_quarantine(project, "scenes", "images")
    assert (folder / "images.tar.gz").read_bytes() == hostile


MANUAL = """title: Hand-made scenes
description: Photos arranged by hand.
licence: {name: CC0-1.0, redistribution: allowed}
access:
  kind: manual
  instructions: Download the scenes from the project page and unpack them.
layout:
  rules:
    - {glob: "[0-9][0-9][0-9][0-9]", type: dir, min: 1}
    - {glob: "[0-9][0-9][0-9][0-9]/images/*.jpg", min: 2}
"""


def test_manual_dataset_status_follows_its_tree(project: Path, tmp_path: Path) -> None:
    (project / "catalog" / "datasets" / "scenes.yaml").write_text(MANUAL)
    code, out = vcat("fetch", "scenes")
    assert code == 2
    assert "scenes lists no downloadable sources. It is obtained by hand: Download" in out
    assert "vcat verify scenes --root DIR" in out
    assert status_of("scenes")[("tree", "layout")]["state"] == "manual:missing"
    tree = tmp_path / "by-hand"
    (tree / "0001" / "images").mkdir(parents=True)
    (tree / "0001" / "images" / "a.jpg").write_bytes(b"jpeg")
    code, out = vcat("verify", "scenes", "--root", str(tree))
    assert code == 1  # one photo where two are expected
    assert status_of("scenes")[("tree", "layout")]["state"] == "manual:missing"
    (tree / "0001" / "images" / "b.jpg").write_bytes(b"jpeg")
    code, out = vcat("verify", "scenes", "--root", str(tree))
    assert code == 0, out
    row = status_of("scenes")[("tree", "layout")]
    assert row["state"] == "manual:present" and row["detail"] == "2 files"


def test_a_second_fetch_into_the_same_root_is_refused(
    project: Path, server: MisbehavingServer
) -> None:
    url = server.add("/list.gz", Route(LIST))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    workspace = Workspace(project / "data" / "sources" / "flickr")
    with workspace.lock():
        code, out = vcat("fetch", "flickr", "--no-dvc")
    assert code == 2
    assert "another vcat fetch is writing to" in out
    assert server.routes["/list.gz"].requests == 0


TWO_FOLDERS = tar_gz({"a/1.jpg": b"1" * 100, "b/2.jpg": b"2" * 100, "c/3.jpg": b"3" * 100})


def test_new_archive_version_replaces_what_the_old_one_placed(
    project: Path, server: MisbehavingServer
) -> None:
    route = Route(ARCHIVE)
    url = server.add("/images.tar.gz", route)
    entry = source_yaml("images", url, "images.tar.gz", ARCHIVE, archive="tar.gz")
    write_entry(project, "scenes", entry)
    assert vcat("fetch", "scenes", "--no-dvc")[0] == 0
    changed = tar_gz({"scene/a.jpg": b"new a"})
    route.data = changed
    write_entry(
        project, "scenes", source_yaml("images", url, "images.tar.gz", changed, archive="tar.gz")
    )
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    root = project / "data" / "sources" / "scenes"
    assert (root / "scene" / "a.jpg").read_bytes() == b"new a"
    assert not (root / "scene" / "b.jpg").exists()


def test_crash_while_moving_an_archive_into_place_is_finished_by_the_next_run(
    project: Path, server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.add("/folders.tar.gz", Route(TWO_FOLDERS))
    entry = source_yaml("folders", url, "folders.tar.gz", TWO_FOLDERS, archive="tar.gz")
    write_entry(project, "scenes", entry)
    real_replace = os.replace
    moves = []

    def crash_on_second_move(source: str, destination: str) -> None:
        if f"{os.sep}scenes{os.sep}" in str(destination):  # a move into the root
            moves.append(destination)
            if len(moves) == 2:
                raise KeyboardInterrupt  # the run stops between two moves
        real_replace(source, destination)

    monkeypatch.setattr("vcat.fetch.placing.os.replace", crash_on_second_move)
    code, _ = vcat("fetch", "scenes", "--no-dvc")
    assert code == 130
    monkeypatch.setattr("vcat.fetch.placing.os.replace", real_replace)
    root = project / "data" / "sources" / "scenes"
    assert (root / "a").exists() and not (root / "c").exists()
    row = status_of("scenes")[("source", "folders")]
    assert row["state"] == "partial" and "unpacking was interrupted" in row["detail"]
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    for name in ("a/1.jpg", "b/2.jpg", "c/3.jpg"):
        assert (root / name).read_bytes() == name[2].encode() * 100
    assert status_of("scenes")[("source", "folders")]["state"] == "verified"


def test_dvc_refusing_to_track_is_an_error_that_keeps_the_data(
    project: Path, server: MisbehavingServer
) -> None:
    url = server.add("/list.gz", Route(LIST))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run(
        [str(Path(sys.executable).with_name("dvc")), "init", "-q"], cwd=project, check=True
    )
    # the folder is excluded from DVC, so `dvc add` must refuse it
    (project / ".dvcignore").write_text("/data/sources/flickr\n")
    code, out = vcat("fetch", "flickr")
    assert code == 1
    assert "the data is in place but DVC did not track it" in out
    assert "dvc add data/sources/flickr" in out
    assert (project / "data" / "sources" / "flickr" / "list.gz").read_bytes() == LIST


def test_a_stalled_source_fails_naming_each_attempt_and_places_nothing(
    project: Path, server: MisbehavingServer
) -> None:
    url = server.add("/list.gz", Route(LIST, "stall", cut=1000))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc", "--stall-timeout", "0.5", "--retries", "2")
    assert code == 1
    assert "list: attempt 1 of 2 failed: " in out and "(the transfer stalled)" in out
    assert "2,000 bytes kept to resume" in out  # 1,000 bytes from each attempt
    assert status_of("flickr")[("source", "list")]["state"] == "partial"
    assert not (project / "data" / "sources" / "flickr" / "list.gz").exists()


def test_a_crawling_source_fails_as_too_slow(project: Path, server: MisbehavingServer) -> None:
    url = server.add("/list.gz", Route(LIST, "trickle", interval=0.01))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    options = ["--min-speed", "10K", "--speed-window", "1", "--retries", "1"]
    code, out = vcat("fetch", "flickr", "--no-dvc", *options)
    assert code == 1
    assert "the transfer crawled" in out and "bytes kept to resume" in out
    assert status_of("flickr")[("source", "list")]["state"] == "partial"


@pytest.mark.parametrize("behaviour", ["endless", "good"])
def test_a_source_without_a_size_stops_at_the_ceiling_and_its_bytes_go(
    project: Path, server: MisbehavingServer, behaviour: str
) -> None:
    url = server.add("/list.gz", Route(LIST, behaviour))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", None))
    code, out = vcat("fetch", "flickr", "--no-dvc", "--max-size", "100K")
    assert code == 1
    assert "oversized" in out and "--max-size" in out
    assert status_of("flickr")[("source", "list")]["state"] == "failed:oversized"
    assert not (project / "data" / "sources" / "flickr" / "list.gz").exists()
    partials = project / "data" / "sources" / ".flickr.vcat" / "partial"
    assert not partials.exists() or list(partials.iterdir()) == []
    if behaviour == "good":  # the default ceiling lets the whole file through
        code, out = vcat("fetch", "flickr", "--no-dvc")
        assert code == 0, out


def test_a_refused_connection_says_each_attempt_on_stderr(project: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/list.gz"
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    result = runner.invoke(app, ["fetch", "flickr", "--no-dvc", "--retries", "2"])
    assert result.exit_code == 1
    line = f"list: attempt 1 of 2 failed: 127.0.0.1:{port} refused the connection; retrying in"
    assert line in result.stderr
    assert "failed" in result.stdout


@pytest.mark.parametrize(
    ("option", "value"),
    [("--max-size", "lots"), ("--min-speed", "-3"), ("--stall-timeout", "0")],
)
def test_bad_transfer_limits_exit_2_naming_the_option(
    project: Path, server: MisbehavingServer, option: str, value: str
) -> None:
    url = server.add("/list.gz", Route(LIST))
    write_entry(project, "flickr", source_yaml("list", url, "list.gz", LIST))
    code, out = vcat("fetch", "flickr", "--no-dvc", option, value)
    assert code == 2
    assert option in out and "Traceback" not in out
