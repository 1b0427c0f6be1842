"""Manifests and hashing never follow a symbolic link and never open anything but a regular
file: links are recorded as links, FIFOs, sockets and devices are named. Real trees, real
FIFOs and sockets; a FIFO behind a link would hang any reader that followed it."""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app
from vcat.failures import FailureClass
from vcat.hashing import NotARegularFile, hash_file, open_regular
from vcat.verify.manifest import (
    ManifestError,
    TreeError,
    build_manifest,
    check_manifest,
    list_tree,
    read_manifest,
    walk_files,
)


@pytest.fixture
def trap(tmp_path: Path) -> Path:
    """A FIFO outside every tree: following a link to it and reading would block forever."""
    path = tmp_path / "trap"
    os.mkfifo(path)
    return path


@pytest.fixture
def bound_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "root" / "sock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        yield path


def linked_tree(root: Path, trap: Path) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "images" / "a.jpg").write_bytes(b"a" * 100)
    (root / "images" / "latest.jpg").symlink_to("a.jpg")
    (root / "passwd").symlink_to("/etc/passwd")
    (root / "trap.jpg").symlink_to(trap)
    (root / "disk").symlink_to("/", target_is_directory=True)
    (root / "tab\tlink").symlink_to("odd\ttarget")
    return root


def test_links_are_recorded_as_links_and_never_followed(tmp_path: Path, trap: Path) -> None:
    root = linked_tree(tmp_path / "root", trap)
    out = tmp_path / "m.tsv"
    manifest = build_manifest(root, out, workers=2)
    lines = out.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# vcat-manifest 1 algorithm=md5 files=6 bytes=100"
    assert lines[1:] == [
        "symlink\t/\tdisk",
        f"{hashlib.md5(b'a' * 100).hexdigest()}\t100\timages/a.jpg",
        "symlink\ta.jpg\timages/latest.jpg",
        "symlink\t/etc/passwd\tpasswd",
        "symlink\todd\\ttarget\ttab\\tlink",
        f"symlink\t{trap}\ttrap.jpg",
    ]
    assert read_manifest(out) == manifest
    assert check_manifest(root, out).ok


def test_link_and_special_file_failures(tmp_path: Path, trap: Path) -> None:
    root = linked_tree(tmp_path / "root", trap)
    (root / "b.bin").write_bytes(b"b" * 10)
    (root / "c.bin").write_bytes(b"c" * 10)
    out = tmp_path / "m.tsv"
    build_manifest(root, out)
    (root / "b.bin").unlink()
    (root / "b.bin").symlink_to(trap)  # a file became a link
    (root / "c.bin").unlink()
    os.mkfifo(root / "c.bin")  # a file became a FIFO
    (root / "passwd").unlink()
    (root / "passwd").write_bytes(b"root:x:0:0\n")  # a link became a file
    (root / "images" / "latest.jpg").unlink()
    (root / "images" / "latest.jpg").symlink_to("../passwd")  # a link points elsewhere
    (root / "disk").unlink()  # a link is gone
    (root / "shadow").symlink_to("/etc/shadow")  # a link appeared
    os.mkfifo(root / "images" / "new.jpg")  # a FIFO appeared
    report = check_manifest(root, out, workers=2)
    found = {(f.path, f.failure, f.detail) for f in report.failures}
    assert found == {
        ("b.bin", FailureClass.NOT_A_FILE, f"symbolic link to {trap}"),
        ("c.bin", FailureClass.NOT_A_FILE, "a FIFO"),
        ("passwd", FailureClass.NOT_A_FILE, "a file"),
        ("images/latest.jpg", FailureClass.CHECKSUM_MISMATCH, None),
        ("disk", FailureClass.MISSING, "symbolic link to / expected"),
        ("shadow", FailureClass.UNEXPECTED, "symbolic link to /etc/shadow"),
        ("images/new.jpg", FailureClass.NOT_A_FILE, "a FIFO"),
    }
    changed = next(f for f in report.failures if f.path == "images/latest.jpg")
    assert changed.expected_digest == "symbolic link to a.jpg"
    assert changed.actual_digest == "symbolic link to ../passwd"
    assert report.counts["ok"] == 3  # a.jpg and the links to the trap and with a tab


def test_a_tree_with_a_fifo_or_socket_cannot_be_listed_as_files(
    tmp_path: Path, bound_socket: Path
) -> None:
    root = bound_socket.parent
    (root / "a.bin").write_bytes(b"a")
    os.mkfifo(root / "pipe")
    with pytest.raises(TreeError) as caught:
        build_manifest(root, tmp_path / "m.tsv")
    assert "pipe: a FIFO, not a file" in str(caught.value)
    assert "sock: a socket, not a file" in str(caught.value)
    assert not (tmp_path / "m.tsv").exists()
    with pytest.raises(TreeError, match="pipe: a FIFO"):
        walk_files(root)
    listing = list_tree(root)
    assert listing.others == {"pipe": "FIFO", "sock": "socket"}
    assert listing.files == [("a.bin", 1)]


def test_only_regular_files_are_opened(tmp_path: Path, trap: Path, bound_socket: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    (tmp_path / "real").write_bytes(b"real")
    cases = {
        trap: "FIFO",
        bound_socket: "socket",
        Path("/dev/null"): "character device",
        link: "symbolic link",
        tmp_path: "folder",
    }
    for path, kind in cases.items():
        with pytest.raises(NotARegularFile) as caught:
            hash_file(path)
        assert caught.value.kind == kind and caught.value.filename == str(path)
        with pytest.raises(NotARegularFile):
            open_regular(path)
    assert hash_file(tmp_path / "real") == {"md5": hashlib.md5(b"real").hexdigest()}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("symlink\t\ta", "a link is 'symlink TAB <target> TAB <path>'"),
        ("symlink\ta", "a link is 'symlink TAB <target> TAB <path>'"),
        ("symlink\tx\\q\ta", "unknown escape"),
        ("symlink\tx\t../a", "must be relative to the root"),
    ],
)
def test_malformed_link_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "m.tsv"
    path.write_text(f"# vcat-manifest 1 algorithm=md5\n{line}\n", encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert caught.value.line == 2 and message in caught.value.message


ENTRY = """\
title: Tiny scenes
description: A few files arranged by hand.
licence: {name: CC-BY-4.0, redistribution: allowed}
access: {kind: manual, instructions: Copy them by hand.}
layout:
  rules:
    - {glob: "*.bin", min: 1}
"""


def test_cli_names_the_fifo_in_one_line_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "catalog" / "datasets").mkdir(parents=True)
    (tmp_path / "catalog" / "datasets" / "tiny-scenes.yaml").write_text(ENTRY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VCAT_SETTINGS", str(tmp_path / "settings.yaml"))
    root = tmp_path / "scenes"
    root.mkdir()
    (root / "a.bin").write_bytes(b"a")
    os.mkfifo(root / "b.bin")
    runner = CliRunner()
    args = ["manifest", "build", "tiny-scenes", "--root", str(root), "--out", "m.tsv"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "b.bin: a FIFO, not a file" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(app, ["verify", "tiny-scenes", "--root", str(root)])
    assert result.exit_code == 1
    assert "b.bin: a FIFO, not a file; not opened" in result.stdout
