"""`vcat verify NAME` checks the files a fetch placed, `vcat status` never calls a changed tree
verified, and `vcat fetch` repairs what was damaged: each kind of damage is done to a real
tree fetched from a local HTTP server, and checked through the command line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.http_server import MisbehavingServer, Route
from vcat.cli import app

runner = CliRunner()
VCAT = str(Path(sys.executable).with_name("vcat"))
RNG = random.Random(11)
MEMBERS = {f"scene/{i:02d}.jpg": RNG.randbytes(3000 + 17 * i) for i in range(12)}
MEMBERS.update({f"depth/{i:02d}.h5": RNG.randbytes(5000 + i) for i in range(4)})
LIST = RNG.randbytes(40_000)
NOTES = b"notes that the catalog publishes no checksum for\n" * 50


def tar_gz(files: dict[str, bytes], links: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 1_600_000_000
            archive.addfile(info, io.BytesIO(data))
        for name, target in links.items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            archive.addfile(info)
    return buffer.getvalue()


ARCHIVE = tar_gz(MEMBERS, {"scene/latest.jpg": "11.jpg"})


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def source_yaml(name: str, url: str, filename: str, data: bytes, published: bool, **extra: str):
    lines = [f"  - name: {name}", f"    url: {url}", f"    filename: {filename}"]
    if published:
        lines += [
            f"    size: {len(data)}",
            f"    checksum: md5:{md5(data)}",
            '    checksum_source: {kind: published, where: "the test"}',
        ]
    else:
        lines.append("    checksum: unpublished")
    lines += [f"    {key}: {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: MisbehavingServer) -> Path:
    """Entry ``scenes`` fetched into its root: an archive with a link inside, a list with a
    published checksum and notes without one."""
    project = tmp_path / "project"
    (project / "catalog" / "datasets").mkdir(parents=True)
    (project / "catalog" / "models").mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(project)
    monkeypatch.delenv("VCAT_SETTINGS", raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    sources = (
        source_yaml(
            "images", server.add("/i.tar.gz", Route(ARCHIVE)), "images.tar.gz", ARCHIVE, True,
            archive="tar.gz",
        )
        + source_yaml("list", server.add("/list.bin", Route(LIST)), "list.bin", LIST, True)
        + source_yaml("notes", server.add("/notes.txt", Route(NOTES)), "notes.txt", NOTES, False)
    )  # fmt: skip
    (project / "catalog" / "datasets" / "scenes.yaml").write_text(
        "title: Scenes\ndescription: Served by the test.\n"
        "licence: {name: CC0-1.0, redistribution: allowed}\naccess: {kind: public}\n"
        f"sources:\n{sources}"
    )
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    folder = project / "data" / "sources" / "scenes"
    assert verify()[0] == 0
    return folder


def vcat(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.output


def vcat_json(*args: str) -> tuple[int, dict]:
    result = runner.invoke(app, [*args, "--json"], env={"COLUMNS": "250"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, json.loads(result.stdout)


def verify(*extra: str) -> tuple[int, dict]:
    return vcat_json("verify", "scenes", *extra)


def states(*extra: str) -> dict[str, tuple[str, str]]:
    code, document = vcat_json("status", "scenes", *extra)
    assert code == 0, document
    return {item["name"]: (item["state"], item["detail"]) for item in document["items"]}


def overwrite_keeping_times(path: Path, data: bytes) -> None:
    """Write ``data`` into ``path`` and set its times back, as a careless tool might."""
    before = os.stat(path)
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def flip(data: bytes) -> bytes:
    return bytes([data[0] ^ 0xFF]) + data[1:]


SECRET = b"not for hashing\n"


def outside(root: Path) -> Path:
    """A file outside the tree that no check may read."""
    path = root.parent.parent / "secret.txt"
    path.write_bytes(SECRET)
    return path


# Each damage: what to do to the fetched tree, the path it damages, the class verify reports,
# and the source that is no longer verified.
Damage = Callable[[Path], None]
CASES: dict[str, tuple[Damage, str, str, str]] = {
    "deleted": (lambda r: (r / "scene/03.jpg").unlink(), "scene/03.jpg", "missing", "images"),
    "same size, other bytes": (
        lambda r: (r / "scene/04.jpg").write_bytes(flip(MEMBERS["scene/04.jpg"])),
        "scene/04.jpg",
        "checksum_mismatch",
        "images",
    ),
    "same size, times set back": (
        lambda r: overwrite_keeping_times(r / "depth/01.h5", flip(MEMBERS["depth/01.h5"])),
        "depth/01.h5",
        "checksum_mismatch",
        "images",
    ),
    "truncated": (
        lambda r: os.truncate(r / "scene/05.jpg", 100),
        "scene/05.jpg",
        "truncated",
        "images",
    ),
    "a FIFO added": (
        lambda r: os.mkfifo(r / "scene/pipe.jpg"),
        "scene/pipe.jpg",
        "not_a_file",
        "images",
    ),
    "a file replaced by a link out of the tree": (
        lambda r: ((r / "scene/06.jpg").unlink(), (r / "scene/06.jpg").symlink_to(outside(r))),
        "scene/06.jpg",
        "not_a_file",
        "images",
    ),
    "a link out of the tree added": (
        lambda r: (r / "depth/all").symlink_to("/", target_is_directory=True),
        "depth/all",
        "unexpected",
        "images",
    ),
    "the archive's own link changed": (
        lambda r: ((r / "scene/latest.jpg").unlink(), (r / "scene/latest.jpg").symlink_to("0.jpg")),
        "scene/latest.jpg",
        "checksum_mismatch",
        "images",
    ),
    "a plain file overwritten, same size": (
        lambda r: overwrite_keeping_times(r / "list.bin", flip(LIST)),
        "list.bin",
        "checksum_mismatch",
        "list",
    ),
    "an unpublished file overwritten, same size": (
        lambda r: (r / "notes.txt").write_bytes(flip(NOTES)),
        "notes.txt",
        "checksum_mismatch",
        "notes",
    ),
    "a plain file replaced by a FIFO": (
        lambda r: ((r / "list.bin").unlink(), os.mkfifo(r / "list.bin")),
        "list.bin",
        "not_a_file",
        "list",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_damage_is_found_named_and_repaired(root: Path, case: str) -> None:
    damage, path, failure, source = CASES[case]
    damage(root)
    code, report = verify()
    assert code == 1
    files = report["files"]
    assert [(f["path"], f["status"]) for f in files["failures"]] == [(path, failure)]
    assert files["counts"][failure] == 1 and not report["ok"]
    state, detail = states()[source]
    assert state in ("changed", "damaged") and state != "verified", (state, detail)
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    placed = re.search(rf"^{source} +(\S+)", out, re.MULTILINE)
    assert placed is not None and placed.group(1) in ("verified", "fetched"), out
    code, report = verify()
    assert code == 0, report
    assert states()[source][0] in ("verified", "fetched")


def test_status_compares_stamps_and_hashes_on_request(root: Path) -> None:
    """A file only touched is 'changed' (nothing read) until a check hashes it once."""
    os.utime(root / "scene" / "02.jpg", ns=(1, 1))
    os.utime(root / "list.bin", ns=(1, 1))
    for source, path in (("images", "scene/02.jpg"), ("list", "list.bin")):
        state, detail = states()[source]
        assert state == "changed" and path in detail
    assert states("--full")["images"][0] == "verified"
    assert states("--full")["list"][0] == "verified"
    # --full proved it and recorded its new stamp: a plain status is quiet again, and a
    # plain verify reads nothing
    assert states()["images"][0] == "verified"
    code, report = verify()
    assert code == 0 and report["files"]["hashed"] == 0
    code, report = verify("--full")
    assert code == 0 and report["files"]["hashed"] == len(MEMBERS) + 2


def placed_states(out: str) -> list[str]:
    """The state column of the table `vcat fetch` prints, in source order."""
    return re.findall(r"^(?:images|list|notes)  +(\S+)  ", out, re.MULTILINE)


def test_fetch_of_an_intact_tree_is_up_to_date_and_force_places_it_again(root: Path) -> None:
    inode = os.stat(root / "scene" / "00.jpg").st_ino
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0 and placed_states(out) == ["up-to-date"] * 3, out
    assert os.stat(root / "scene" / "00.jpg").st_ino == inode
    code, out = vcat("fetch", "scenes", "--no-dvc", "--force")
    assert code == 0 and placed_states(out) == ["verified", "verified", "fetched"], out
    assert os.stat(root / "scene" / "00.jpg").st_ino != inode  # unpacked again
    assert verify()[0] == 0


def test_a_fifo_or_link_to_one_never_hangs_a_check(root: Path, tmp_path: Path) -> None:
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    (root / "scene" / "07.jpg").unlink()
    (root / "scene" / "07.jpg").symlink_to(pipe)
    with socket.socket(socket.AF_UNIX) as bound:
        bound.bind(str(root / "depth" / "sock"))
        for args in (("verify", "scenes"), ("verify", "scenes", "--full"), ("status", "scenes")):
            code, out = vcat(*args)
            assert code == (0 if args[0] == "status" else 1), out
        code, report = verify("--full")
    assert {(f["path"], f["status"], f["detail"]) for f in report["files"]["failures"]} == {
        ("scene/07.jpg", "not_a_file", f"symbolic link to {pipe}"),
        ("depth/sock", "not_a_file", "a socket"),
    }


MANY = {f"{i:04d}.jpg": random.Random(i).randbytes(2000) for i in range(1000)}


def many_entry(project: Path, server: MisbehavingServer, files: dict[str, bytes]) -> None:
    """Entry ``scenes``: one archive whose top level holds ``files``, served at one URL."""
    archive = tar_gz(files, {})
    route = server.routes.get("/many.tar.gz")
    if route is None:
        url = server.add("/many.tar.gz", Route(archive))
    else:
        route.data, url = archive, server.url("/many.tar.gz")
    (project / "catalog" / "datasets" / "scenes.yaml").write_text(
        "title: Many\ndescription: Many top-level files.\n"
        "licence: {name: CC0-1.0, redistribution: allowed}\naccess: {kind: public}\n"
        "sources:\n" + source_yaml("images", url, "many.tar.gz", archive, True, archive="tar.gz")
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "project"
    (folder / "catalog" / "datasets").mkdir(parents=True)
    (folder / "catalog" / "models").mkdir()
    (folder / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(folder)
    monkeypatch.delenv("VCAT_SETTINGS", raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    return folder


def test_a_fetch_stopped_after_450_of_1000_moves_fails_verify_file_by_file_until_repaired(
    project: Path, server: MisbehavingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    many_entry(project, server, MANY)
    root = project / "data" / "sources" / "scenes"
    real_replace = os.replace
    moves: list[str] = []

    def killed_at_the_451st_move(source: str, destination: str) -> None:
        if os.path.dirname(destination) == str(root):
            if len(moves) == 450:
                raise KeyboardInterrupt  # the process dies here: nothing after runs
            moves.append(destination)
        real_replace(source, destination)

    monkeypatch.setattr("vcat.fetch.placing.os.replace", killed_at_the_451st_move)
    assert vcat("fetch", "scenes", "--no-dvc")[0] == 130
    monkeypatch.setattr("vcat.fetch.placing.os.replace", real_replace)
    assert len(os.listdir(root)) == 450

    code, report = verify()
    assert code == 1
    [problem] = report["files"]["problems"]
    assert "unpacking was interrupted, the tree is incomplete" in problem
    missing = [f["path"] for f in report["files"]["failures"] if f["status"] == "missing"]
    assert missing == sorted(MANY)[450:]
    assert report["files"]["counts"]["ok"] == 450
    state, detail = states()["images"]
    assert state == "partial" and "unpacking was interrupted" in detail

    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    assert sorted(os.listdir(root)) == sorted(MANY)
    code, report = verify()
    assert code == 0 and report["files"]["counts"]["ok"] == len(MANY)
    assert states()["images"][0] == "verified"


@pytest.mark.slow
def test_a_fetch_killed_while_unpacking_a_new_version_fails_verify_until_repaired(
    project: Path, server: MisbehavingServer
) -> None:
    many_entry(project, server, MANY)
    assert vcat("fetch", "scenes", "--no-dvc")[0] == 0
    newer = {name: data[::-1] for name, data in MANY.items()}
    many_entry(project, server, newer)
    extracting = project / "data" / "sources" / ".scenes.vcat" / "extract" / "images"
    process = subprocess.Popen(
        [VCAT, "fetch", "scenes", "--no-dvc"],
        cwd=project,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not (extracting.is_dir() and len(os.listdir(extracting)) >= 20):
        assert process.poll() is None, "the fetch ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()

    code, report = verify()
    assert code == 1
    [problem] = report["files"]["problems"]
    assert "unpacking was interrupted" in problem
    state, detail = states()["images"]
    assert state == "partial" and "unpacking was interrupted" in detail
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 0, out
    root = project / "data" / "sources" / "scenes"
    assert {name: (root / name).read_bytes() for name in newer} == newer
    assert verify()[0] == 0


def test_a_folder_swapped_for_a_link_is_never_read_written_or_emptied_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, server: MisbehavingServer
) -> None:
    project = tmp_path / "project"
    (project / "catalog" / "datasets").mkdir(parents=True)
    (project / "catalog" / "models").mkdir()
    (project / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(project)
    sources = source_yaml(
        "images", server.add("/i.tar.gz", Route(ARCHIVE)), "images.tar.gz", ARCHIVE, True,
        archive="tar.gz", unpack_to="assets",
    ) + source_yaml(
        "list", server.add("/list.bin", Route(LIST)), "list.bin", LIST, True, unpack_to="lists"
    )  # fmt: skip
    (project / "catalog" / "datasets" / "scenes.yaml").write_text(
        "title: Scenes\ndescription: Served by the test.\n"
        "licence: {name: CC0-1.0, redistribution: allowed}\naccess: {kind: public}\n"
        f"sources:\n{sources}"
    )
    assert vcat("fetch", "scenes", "--no-dvc")[0] == 0
    root = project / "data" / "sources" / "scenes"
    elsewhere = tmp_path / "elsewhere"
    for folder in ("assets", "lists"):  # an identical copy outside, linked in its place
        shutil.copytree(root / folder, elsewhere / folder, symlinks=True)
        shutil.rmtree(root / folder)
        (root / folder).symlink_to(elsewhere / folder, target_is_directory=True)
    before = {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()}

    code, report = verify()
    assert code == 1
    failures = {(f["path"], f["status"]) for f in report["files"]["failures"]}
    assert ("assets", "unexpected") in failures and ("lists", "unexpected") in failures
    assert ("lists/list.bin", "missing") in failures
    assert ("assets/scene/00.jpg", "missing") in failures
    assert report["files"]["hashed"] == 0  # nothing behind the links was read
    code, out = vcat("fetch", "scenes", "--no-dvc")
    assert code == 1
    assert "assets is a symbolic link to" in out and "lists is a symbolic link to" in out
    assert {p: p.read_bytes() for p in elsewhere.rglob("*") if p.is_file()} == before

    for folder in ("assets", "lists"):
        (root / folder).unlink()
    assert vcat("fetch", "scenes", "--no-dvc")[0] == 0
    assert verify()[0] == 0


def test_fifos_in_the_work_area_or_as_the_manifest_are_refused_not_waited_on(
    root: Path,
) -> None:
    area = root.parent / ".scenes.vcat"
    (area / "manifests" / "images.stamps.tsv").unlink()
    os.mkfifo(area / "manifests" / "images.stamps.tsv")
    (area / "records" / "notes.json").unlink()
    os.mkfifo(area / "records" / "notes.json")
    os.mkfifo(root.parent / "manifest.tsv")
    project = root.parent.parent.parent

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [VCAT, *args], cwd=project, capture_output=True, text=True, timeout=120
        )

    status = run("status", "scenes")
    assert status.returncode == 0, status.stderr
    assert re.search(r"images +changed", status.stdout)  # no stamps to prove it by
    assert re.search(r"notes +fetched", status.stdout)  # no record: present, not verified
    verified = run("verify", "scenes")
    assert verified.returncode == 0, verified.stdout  # hashed, and stamps written anew
    assert not stat_is_fifo(area / "manifests" / "images.stamps.tsv")
    manifest = run("verify", "scenes", "--manifest", str(root.parent / "manifest.tsv"))
    assert manifest.returncode == 2
    assert "manifest.tsv: cannot read: a FIFO (named pipe), not a regular file" in (manifest.stderr)


def stat_is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)
