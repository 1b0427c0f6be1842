"""A full disk or a name too long ends every command with one line naming the file, exit 2.

The real `vcat` runs in a subprocess against a real small file system: a tmpfs of a few
hundred KB where mounting one is permitted (ENOSPC), else a file size limit set with
``RLIMIT_FSIZE`` in the child (EFBIG: CPython ignores SIGXFSZ, so the write fails instead of
killing the process). Either way the OS refuses the write; nothing is simulated.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import random
import resource
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.bad_images import jpeg
from tests.http_server import MisbehavingServer, Route
from vcat.oserrors import os_error_message
from vcat.shards import pack_tree

VCAT = str(Path(sys.executable).with_name("vcat"))
DISK_BYTES = 256 << 10
FILE_LIMIT = 96 << 10  # RLIMIT_FSIZE where no tmpfs can be mounted
TINY_ENTRY = """\
title: Tiny
description: A tree of one image.
licence: {name: CC0-1.0, redistribution: allowed}
access: {kind: public}
sources:
  - {name: images, url: "file:upstream/i.zip", filename: i.zip, checksum: unpublished}
"""


@dataclass
class SmallDisk:
    """A folder on which writes fail: a full tmpfs, or (``mounted`` False) a size limit."""

    path: Path
    mounted: bool

    def fill(self) -> None:
        """Leave no free byte (a tmpfs); with a size limit every write past it fails anyway."""
        if not self.mounted:
            return
        try:
            with (self.path / "filler").open("wb") as filler:
                while True:
                    filler.write(b"\0" * 4096)
                    filler.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC

    def run(self, *args: str, cwd: Path, limit: int = FILE_LIMIT) -> subprocess.CompletedProcess:
        def limit_file_size() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

        return subprocess.run(
            [VCAT, *args],
            capture_output=True,
            text=True,
            timeout=180,
            cwd=cwd,
            preexec_fn=None if self.mounted else limit_file_size,
        )


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(folder)]
    try:
        mounted = subprocess.run(mount, capture_output=True).returncode == 0
    except FileNotFoundError:
        mounted = False
    try:
        yield SmallDisk(folder, mounted)
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def assert_one_line(done: subprocess.CompletedProcess, naming: Path) -> str:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {naming}"), lines[0]
    return lines[0]


DISK_FULL = ("No space left on device; free space", "File too large; the file is larger")


def test_flickr_images_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    with MisbehavingServer() as server:
        rows = []
        for index in range(40):
            url = server.add(f"/{index}.jpg", Route(jpeg(index, (96, 96))))
            rows.append(f"{index}\t{url}\timages/{index}.jpg\n")
        listed = tmp_path / "flickr-x.tsv.gz"
        listed.write_bytes(gzip.compress("".join(rows).encode()))
        params = tmp_path / "params.yaml"
        params.write_text(
            "flickr-images:\n  shard_max_count: 10\n  jobs: 2\n  allowed_hosts: [127.0.0.1]\n"
        )
        out = small_disk.path / "out"
        done = small_disk.run(
            "stage", "flickr-images", str(listed), str(out), "--params", str(params), cwd=tmp_path
        )
    line = assert_one_line(done, out / ".shard-")
    assert line.split(": ", 2)[2].startswith(DISK_FULL), line
    assert not (out / "index.json").exists()
    assert [p.name for p in out.iterdir() if p.name.endswith(".partial")] == []
    for shard in out.glob("shard-*.tar"):  # each sealed shard is whole
        with tarfile.open(shard) as tar:
            assert len(tar.getmembers()) == 10


def test_dataset_stats_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    catalog = tmp_path / "catalog" / "datasets"
    catalog.mkdir(parents=True)
    (catalog / "tiny.yaml").write_text(TINY_ENTRY)
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.jpg").write_bytes(jpeg(0))
    output = small_disk.path / "metrics" / "tiny.json"
    output.parent.mkdir()
    small_disk.fill()
    args = ["stage", "dataset-stats", "tiny", str(root), str(output)]
    done = small_disk.run(*args, "--catalog", str(catalog.parent), cwd=tmp_path, limit=64)
    line = assert_one_line(done, output.parent / ".tiny.json.partial")
    assert line.split(": ", 2)[2].startswith(DISK_FULL), line
    assert list(output.parent.iterdir()) == []


def test_shards_unpack_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for index in range(12):
        size = FILE_LIMIT + 1 if index == 6 else 40 << 10  # past the disk and the size limit
        (tree / f"{index:02d}.bin").write_bytes(os.urandom(size))
    pack_tree(tree, tmp_path / "shards")
    dest = small_disk.path / "unpacked"
    done = small_disk.run("shards", "unpack", str(tmp_path / "shards"), str(dest), cwd=tmp_path)
    line = assert_one_line(done, small_disk.path / ".unpacked.unpacking")
    assert line.split(": ", 2)[2].startswith(DISK_FULL), line
    assert not dest.exists()
    staging = small_disk.path / ".unpacked.unpacking"
    assert [p.name for p in staging.iterdir() if p.name.endswith(".partial")] == []


def test_names_too_long_for_the_file_system(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog" / "datasets"
    catalog.mkdir(parents=True)
    (catalog / "tiny.yaml").write_text(TINY_ENTRY)
    (tmp_path / "root").mkdir()
    output = tmp_path / ("m" * 300 + ".json")
    args = [VCAT, "stage", "dataset-stats", "tiny", str(tmp_path / "root"), str(output)]
    done = subprocess.run(
        [*args, "--catalog", str(catalog.parent)], capture_output=True, text=True, timeout=120
    )
    line = assert_one_line(done, output)
    assert "File name too long; the name is too long for the file system" in line

    pack_tree(tmp_path / "root", tmp_path / "shards")
    dest = tmp_path / ("d" * 300)
    done = subprocess.run(
        [VCAT, "shards", "unpack", str(tmp_path / "shards"), str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "File name too long" in assert_one_line(done, dest)


def test_the_message_stays_one_line_whatever_the_name() -> None:
    error = OSError(36, "File name too long", "a\nb\x1b[31m")
    assert os_error_message(error).startswith("a\\nb\\x1b[31m: File name too long; ")
    assert "\n" not in os_error_message(OSError(5, "Input/output error\nmore"))


def test_fetch_on_a_full_disk(tmp_path: Path, small_disk: SmallDisk) -> None:
    data = random.Random(1).randbytes(1 << 20)
    with MisbehavingServer() as server:
        url = server.add("/big.bin", Route(data))
        project = tmp_path / "project"
        (project / "catalog" / "datasets").mkdir(parents=True)
        (project / "catalog" / "models").mkdir()
        (project / "dvc.yaml").write_text("stages: {}\n")
        (project / "catalog" / "datasets" / "big.yaml").write_text(
            f"""title: Big
description: One file from a local server.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: main
    url: {url}
    filename: big.bin
    size: {len(data)}
    checksum: md5:{hashlib.md5(data).hexdigest()}
"""
        )
        subprocess.run(["git", "init", "-q"], cwd=project, check=True)
        dest = small_disk.path / "big"
        done = small_disk.run("fetch", "big", "--dest", str(dest), "--no-dvc", cwd=project)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {small_disk.path}/.big.vcat/partial/main.part: "), last
    assert last.split(": ", 2)[2].startswith(DISK_FULL), last
    assert not (dest / "big.bin").exists()


def test_stage_commands_turn_os_errors_into_one_line_in_process_too(tmp_path: Path) -> None:
    """`vcat stage` run without the console script (as tests and `python -c` do)."""
    from typer.testing import CliRunner

    from vcat.cli import app

    catalog = tmp_path / "catalog" / "datasets"
    catalog.mkdir(parents=True)
    (catalog / "tiny.yaml").write_text(TINY_ENTRY)
    (tmp_path / "root").mkdir()
    output = tmp_path / ("m" * 300 + ".json")
    args = ["stage", "dataset-stats", "tiny", str(tmp_path / "root"), str(output)]
    result = CliRunner().invoke(app, [*args, "--catalog", str(catalog.parent)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith(f"error: {output}: File name too long;")
    assert len(result.stderr.strip().splitlines()) == 1
