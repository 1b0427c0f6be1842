"""Archive extraction: round trips, detection, hostile and damaged archives.

Every archive is built here with the standard library; limits are small so bombs stay fast.
"""

from __future__ import annotations

import bz2
import io
import lzma
import os
import random
import stat
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

from vcat.archive import (
    DestinationNotEmpty,
    ExtractLimits,
    detect_archive_kind,
    extract_archive,
)
from vcat.catalog.schema import ArchiveKind
from vcat.failures import FailureClass, FetchFailure

BIG = random.Random(3).randbytes(2**20 + 4099)  # more than one 1 MiB block, incompressible
MTIME = 1_600_000_000
TAR_MODES = {
    ArchiveKind.TAR: "w:",
    ArchiveKind.TAR_GZ: "w:gz",
    ArchiveKind.TAR_BZ2: "w:bz2",
    ArchiveKind.TAR_XZ: "w:xz",
}
SUFFIXES = {
    ArchiveKind.ZIP: "zip",
    ArchiveKind.TAR: "tar",
    ArchiveKind.TAR_GZ: "tar.gz",
    ArchiveKind.TAR_BZ2: "tar.bz2",
    ArchiveKind.TAR_XZ: "tar.xz",
    ArchiveKind.GZIP: "gz",
}
DEFAULT_LIMITS = ExtractLimits()
TarEntry = tuple[tarfile.TarInfo, bytes | None]


# --- building archives ---------------------------------------------------------------------


def t_file(name: str, data: bytes = b"data\n", mode: int = 0o644) -> TarEntry:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, MTIME
    return info, data


def t_dir(name: str, mode: int = 0o755) -> TarEntry:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, mode
    return info, None


def t_link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> TarEntry:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def t_special(name: str, kind: bytes) -> TarEntry:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def write_tar(path: Path, entries: list[TarEntry], kind: ArchiveKind = ArchiveKind.TAR) -> Path:
    with tarfile.open(path, TAR_MODES[kind], format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def z_file(
    name: str, data: bytes = b"data\n", mode: int = 0o100644
) -> tuple[zipfile.ZipInfo, bytes]:
    info = zipfile.ZipInfo(name, date_time=(2020, 9, 13, 12, 26, 40))
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info, data


def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zipped:
        for info, data in entries:
            zipped.writestr(info, data)
    return path


def write_gzip(path: Path, data: bytes, stored_name: str | None = None) -> Path:
    """A gzip file, by hand so that the header's original name can be anything."""
    flags = 0x08 if stored_name is not None else 0
    header = b"\x1f\x8b\x08" + bytes([flags]) + bytes(5) + b"\xff"
    if stored_name is not None:
        header += stored_name.encode("latin-1") + b"\x00"
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = packer.compress(data) + packer.flush()
    trailer = zlib.crc32(data).to_bytes(4, "little") + len(data).to_bytes(4, "little")
    path.write_bytes(header + body + trailer)
    return path


CONTENT: dict[str, bytes] = {
    "a.txt": b"hello\n",
    "sub/deep/big.bin": BIG,
    "sub/empty.txt": b"",
    "run.sh": b"#!/bin/sh\necho hi\n",
}


def build(kind: ArchiveKind, folder: Path) -> Path:
    """An archive of ``kind`` holding CONTENT plus an empty folder; run.sh is setuid and
    executable, the folder world-writable."""
    path = folder / f"data.{SUFFIXES[kind]}"
    if kind is ArchiveKind.ZIP:
        entries = [z_file(name, data) for name, data in CONTENT.items() if name != "run.sh"]
        entries += [z_file("run.sh", CONTENT["run.sh"], 0o104777), z_file("empty/", b"", 0o40777)]
        return write_zip(path, entries)
    if kind is ArchiveKind.GZIP:
        return write_gzip(path, BIG)
    tar_entries = [t_dir("./", 0o777), t_dir("empty", 0o777)]
    tar_entries += [t_file(f"./{name}", data) for name, data in CONTENT.items() if name != "run.sh"]
    tar_entries.append(t_file("run.sh", CONTENT["run.sh"], 0o4777))
    return write_tar(path, tar_entries, kind)


def leftovers(destination: Path) -> list[str]:
    return sorted(p.name for p in destination.parent.glob(f".{destination.name}.extract-*"))


def refused(
    archive: Path,
    kind: ArchiveKind,
    destination: Path,
    failure: FailureClass,
    *names: str,
    limits: ExtractLimits = DEFAULT_LIMITS,
) -> str:
    """Extracts, expecting ``failure`` naming every one of ``names``; nothing may be left."""
    with pytest.raises(FetchFailure) as caught:
        extract_archive(archive, kind, destination, limits=limits)
    assert caught.value.failure is failure, caught.value.reason
    for name in names:
        assert name in caught.value.reason
    assert not destination.exists() and not destination.is_symlink()
    assert leftovers(destination) == []
    return caught.value.reason


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- round trips and detection --------------------------------------------------------------

ARCHIVES = [k for k in SUFFIXES if k is not ArchiveKind.GZIP]


@pytest.mark.parametrize("kind", ARCHIVES, ids=str)
@pytest.mark.parametrize("asked", ["explicit", "auto"])
def test_round_trip(tmp_path: Path, kind: ArchiveKind, asked: str) -> None:
    archive = build(kind, tmp_path)
    destination = tmp_path / "out" / "data"
    steps: list[int] = []
    result = extract_archive(
        archive,
        kind if asked == "explicit" else ArchiveKind.AUTO,
        destination,
        progress=steps.append,
    )
    total = sum(len(data) for data in CONTENT.values())
    assert (result.destination, result.kind, result.files) == (destination, kind, len(CONTENT))
    assert result.bytes_written == sum(steps) == total
    assert max(steps) <= 2**20
    for name, data in CONTENT.items():
        assert (destination / name).read_bytes() == data
        assert mode_of(destination / name) == (0o755 if name == "run.sh" else 0o644)
    assert (destination / "empty").is_dir() and not any((destination / "empty").iterdir())
    assert {mode_of(destination / d) for d in ("empty", "sub", "sub/deep")} == {0o755}
    assert mode_of(destination) == 0o755
    assert abs((destination / "a.txt").stat().st_mtime - MTIME) < 2 * 86400  # zip: local time
    assert leftovers(destination) == []


@pytest.mark.parametrize(
    ("file_name", "stored_name", "expected"),
    [
        ("images.csv.gz", None, "images.csv"),
        ("download.bin", "labels.csv", "labels.csv"),  # the header's name wins
        ("labels.csv.GZ", "../../evil", "labels.csv"),  # an unsafe stored name is ignored
        ("labels.csv.gz", "C:evil", "labels.csv"),
        ("bundle.tgz", None, "bundle.tar"),
        ("blob", None, "blob"),
    ],
)
def test_gzip_round_trip(
    tmp_path: Path, file_name: str, stored_name: str | None, expected: str
) -> None:
    archive = write_gzip(tmp_path / file_name, BIG, stored_name)
    destination = tmp_path / "out"
    result = extract_archive(archive, ArchiveKind.GZIP, destination)
    assert [p.name for p in destination.iterdir()] == [expected]
    assert (destination / expected).read_bytes() == BIG
    assert (result.files, result.bytes_written) == (1, len(BIG))


@pytest.mark.parametrize("kind", list(SUFFIXES), ids=str)
def test_detects_each_kind(tmp_path: Path, kind: ArchiveKind) -> None:
    assert detect_archive_kind(build(kind, tmp_path)) is kind


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<!DOCTYPE html><html><body>Sign in to continue</body></html>",
        random.Random(1).randbytes(4096),
        bz2.compress(b"plain text, not a tar" * 100),
        lzma.compress(b"plain text, not a tar" * 100),
    ],
    ids=["empty", "html", "random", "bz2-not-tar", "xz-not-tar"],
)
def test_detects_non_archives(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "file"
    path.write_bytes(content)
    assert detect_archive_kind(path) is ArchiveKind.NONE


def test_auto_on_a_non_archive_is_corrupt(tmp_path: Path) -> None:
    page = tmp_path / "page.zip"
    page.write_bytes(b"<html>quota exceeded</html>")
    refused(page, ArchiveKind.AUTO, tmp_path / "out", FailureClass.CORRUPT_ARCHIVE, "page.zip")


def test_kind_none_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to extract"):
        extract_archive(build(ArchiveKind.ZIP, tmp_path), ArchiveKind.NONE, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# --- links that stay inside ----------------------------------------------------------------


def test_links_inside_the_tree_are_kept(tmp_path: Path) -> None:
    archive = write_tar(
        tmp_path / "links.tar.gz",
        [
            t_file("v1/data.txt", b"payload"),
            t_link("latest", "v1"),
            t_link("v1/same.txt", "./data.txt"),
            t_link("v2/up.txt", "../v1/data.txt"),
            t_link("v1/copy.txt", "v1/data.txt", tarfile.LNKTYPE),
            t_link("dangling", "v1/not-there"),
        ],
        ArchiveKind.TAR_GZ,
    )
    destination = tmp_path / "out"
    result = extract_archive(archive, ArchiveKind.TAR_GZ, destination)
    assert os.readlink(destination / "latest") == "v1"
    for name in ("latest/data.txt", "v1/same.txt", "v2/up.txt", "v1/copy.txt"):
        assert (destination / name).read_bytes() == b"payload"
    # a hard link becomes an independent copy
    assert not (destination / "v1/copy.txt").is_symlink()
    assert (destination / "v1/copy.txt").stat().st_ino != (
        destination / "v1/data.txt"
    ).stat().st_ino
    assert (result.files, result.bytes_written) == (2, 14)


def test_zip_symlink_inside_is_kept(tmp_path: Path) -> None:
    archive = write_zip(
        tmp_path / "links.zip",
        [z_file("dir/data.txt", b"payload"), z_file("dir/link", b"data.txt", 0o120777)],
    )
    destination = tmp_path / "out"
    extract_archive(archive, ArchiveKind.ZIP, destination)
    assert os.readlink(destination / "dir/link") == "data.txt"
    assert (destination / "dir/link").read_bytes() == b"payload"


def test_zip_backslashes_are_separators(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "win.zip", [z_file("dir\\sub\\data.txt", b"payload")])
    extract_archive(archive, ArchiveKind.ZIP, tmp_path / "out")
    assert (tmp_path / "out/dir/sub/data.txt").read_bytes() == b"payload"


# --- hostile archives ----------------------------------------------------------------------

GOOD = t_file("good.txt")  # written first, so a streamed tar has something to clean up

HOSTILE_TARS: dict[str, tuple[list[TarEntry], str, str]] = {
    # id: (entries, member the message names, why)
    "dotdot": ([t_file("../evil.txt")], "../evil.txt", "'..'"),
    "dotdot-inner": ([t_file("a/../../evil.txt")], "a/../../evil.txt", "'..'"),
    "absolute": ([t_file("/tmp/evil.txt")], "/tmp/evil.txt", "absolute"),
    "symlink-absolute": ([t_link("passwd", "/etc/passwd")], "passwd", "absolute"),
    "symlink-relative": ([t_link("a/b/up", "../../../x")], "a/b/up", "outside"),
    "symlink-chain": (
        [t_link("a/b/root", "../.."), t_link("escape", "a/b/root/..")],
        "escape",
        "outside",
    ),
    "write-through-symlink": (
        [t_link("inside", "sub"), t_file("inside/x.txt")],
        "inside/x.txt",
        "symbolic link",
    ),
    "hardlink-relative": ([t_link("hl", "../outside", tarfile.LNKTYPE)], "hl", "outside"),
    "hardlink-absolute": ([t_link("hl", "/etc/passwd", tarfile.LNKTYPE)], "hl", "outside"),
    "hardlink-missing": ([t_link("hl", "nope.txt", tarfile.LNKTYPE)], "hl", "not a regular"),
    "hardlink-to-symlink": (
        [t_link("s", "good.txt"), t_link("hl", "s", tarfile.LNKTYPE)],
        "hl",
        "not a regular",
    ),
    "char-device": ([t_special("null", tarfile.CHRTYPE)], "null", "character device"),
    "block-device": ([t_special("sda", tarfile.BLKTYPE)], "sda", "block device"),
    "fifo": ([t_special("pipe", tarfile.FIFOTYPE)], "pipe", "FIFO"),
    "duplicate-file": ([t_file("good.txt", b"other")], "good.txt", "replace"),
    "file-then-child": ([t_file("good.txt/child")], "good.txt/child", "which is a file"),
    "dir-over-file": ([t_dir("good.txt")], "good.txt", "replace"),
}


@pytest.mark.parametrize("kind", [ArchiveKind.TAR, ArchiveKind.TAR_GZ], ids=str)
@pytest.mark.parametrize("case", HOSTILE_TARS)
def test_hostile_tar_is_refused(tmp_path: Path, kind: ArchiveKind, case: str) -> None:
    entries, member, why = HOSTILE_TARS[case]
    archive = write_tar(tmp_path / f"bad.{SUFFIXES[kind]}", [GOOD, *entries], kind)
    refused(archive, kind, tmp_path / "out", FailureClass.UNSAFE_ARCHIVE, repr(member), why)
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x").exists()


HOSTILE_ZIPS: dict[str, tuple[tuple[zipfile.ZipInfo, bytes], str, str]] = {
    "dotdot": (z_file("../evil.txt"), "../evil.txt", "'..'"),
    "absolute": (z_file("/tmp/evil.txt"), "/tmp/evil.txt", "absolute"),
    "drive": (z_file("C:\\evil.txt"), "C:\\\\evil.txt", "absolute"),
    "backslash-absolute": (z_file("\\evil.txt"), "\\\\evil.txt", "absolute"),
    "backslash-dotdot": (z_file("..\\evil.txt"), "..\\\\evil.txt", "'..'"),
    "symlink-outside": (z_file("link", b"../../etc/passwd", 0o120777), "link", "outside"),
    "symlink-absolute": (z_file("link", b"/etc/passwd", 0o120777), "link", "absolute"),
    "fifo": (z_file("pipe", b"", 0o010644), "pipe", "FIFO"),
    "char-device": (z_file("null", b"", 0o020644), "null", "character device"),
    "duplicate": (z_file("good.txt", b"again"), "good.txt", "replace"),
}


@pytest.mark.parametrize("case", HOSTILE_ZIPS)
def test_hostile_zip_is_refused(tmp_path: Path, case: str) -> None:
    entry, member, why = HOSTILE_ZIPS[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        archive = write_zip(tmp_path / "bad.zip", [z_file("good.txt"), entry])
    refused(archive, ArchiveKind.ZIP, tmp_path / "out", FailureClass.UNSAFE_ARCHIVE, member, why)


def patch_zip_size(path: Path, size: int) -> None:
    """Rewrites the one member's uncompressed size in both its local and central headers."""
    raw = bytearray(path.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = raw.index(signature) + offset
        raw[at : at + 4] = size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("declared", [10, 200_000], ids=["smaller", "larger"])
def test_zip_that_lies_about_its_size(tmp_path: Path, declared: int) -> None:
    archive = write_zip(tmp_path / "liar.zip", [z_file("liar.bin", bytes(100_000))])
    patch_zip_size(archive, declared)
    refused(archive, ArchiveKind.ZIP, tmp_path / "out", FailureClass.CORRUPT_ARCHIVE, "liar.bin")


ZEROS = bytes(2**20)  # compresses to about 1 KiB


@pytest.mark.parametrize(
    ("kind", "limits", "why"),
    [
        (ArchiveKind.ZIP, ExtractLimits(max_total_bytes=100_000), "max_total_bytes"),
        (ArchiveKind.TAR_GZ, ExtractLimits(max_total_bytes=100_000), "max_total_bytes"),
        (ArchiveKind.TAR_XZ, ExtractLimits(max_total_bytes=100_000), "max_total_bytes"),
        (ArchiveKind.GZIP, ExtractLimits(max_total_bytes=100_000), "max_total_bytes"),
        (ArchiveKind.ZIP, ExtractLimits(max_ratio=50, ratio_floor_bytes=0), "max_ratio=50"),
        (ArchiveKind.GZIP, ExtractLimits(max_ratio=50, ratio_floor_bytes=0), "max_ratio=50"),
    ],
    ids=str,
)
def test_decompression_bomb(
    tmp_path: Path, kind: ArchiveKind, limits: ExtractLimits, why: str
) -> None:
    path = tmp_path / f"bomb.{SUFFIXES[kind]}"
    if kind is ArchiveKind.ZIP:
        archive = write_zip(path, [z_file("small.txt"), z_file("bomb.bin", ZEROS)])
    elif kind is ArchiveKind.GZIP:
        archive = write_gzip(path, ZEROS)
    else:
        archive = write_tar(path, [GOOD, t_file("bomb.bin", ZEROS)], kind)
    reason = refused(
        archive, kind, tmp_path / "out", FailureClass.UNSAFE_ARCHIVE, "bomb", why, limits=limits
    )
    assert "decompression bomb" in reason and "limit" in reason


def test_ratio_floor_spares_small_archives(tmp_path: Path) -> None:
    archive = write_gzip(tmp_path / "zeros.gz", ZEROS)
    limits = ExtractLimits(max_ratio=50, ratio_floor_bytes=len(ZEROS))
    assert extract_archive(archive, ArchiveKind.GZIP, tmp_path / "out", limits=limits).files == 1


@pytest.mark.parametrize("kind", [ArchiveKind.ZIP, ArchiveKind.TAR, ArchiveKind.TAR_BZ2], ids=str)
def test_too_many_members(tmp_path: Path, kind: ArchiveKind) -> None:
    names = [f"f{i}.txt" for i in range(5)]
    path = tmp_path / f"many.{SUFFIXES[kind]}"
    if kind is ArchiveKind.ZIP:
        archive = write_zip(path, [z_file(name) for name in names])
    else:
        archive = write_tar(path, [t_file(name) for name in names], kind)
    refused(
        archive,
        kind,
        tmp_path / "out",
        FailureClass.UNSAFE_ARCHIVE,
        "too many members",
        "f3.txt",
        limits=ExtractLimits(max_members=3),
    )


# --- damaged archives ----------------------------------------------------------------------


def truncate(path: Path, keep: Callable[[int], int]) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: keep(len(data))])
    return path


def two_member_tar(folder: Path, kind: ArchiveKind = ArchiveKind.TAR) -> Path:
    return write_tar(
        folder / f"two.{SUFFIXES[kind]}", [t_file("first.bin", BIG), t_file("second.txt")], kind
    )


FIRST_END = 512 + (len(BIG) + 511) // 512 * 512  # where two_member_tar's second header starts


def flip_byte(path: Path, at: int) -> Path:
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


DAMAGED: dict[str, tuple[Callable[[Path], Path], ArchiveKind, str]] = {
    # id: (make it, extract as, the member or archive the message names)
    "tar-cut-in-data": (
        lambda d: truncate(two_member_tar(d), lambda n: 512 + len(BIG) // 2),
        ArchiveKind.TAR,
        "first.bin",
    ),
    "tar-cut-at-member-boundary": (
        lambda d: truncate(two_member_tar(d), lambda n: FIRST_END),
        ArchiveKind.TAR,
        "after member 'first.bin'",
    ),
    "tar-damaged-second-header": (
        lambda d: flip_byte(two_member_tar(d), FIRST_END + 100),
        ArchiveKind.TAR,
        "after member 'first.bin'",
    ),
    "tar-gz-truncated": (
        lambda d: truncate(two_member_tar(d, ArchiveKind.TAR_GZ), lambda n: n // 2),
        ArchiveKind.TAR_GZ,
        "first.bin",
    ),
    "tar-xz-truncated": (
        lambda d: truncate(two_member_tar(d, ArchiveKind.TAR_XZ), lambda n: n - 100),
        ArchiveKind.TAR_XZ,
        "two.tar.xz",
    ),
    "gz-truncated": (
        lambda d: truncate(write_gzip(d / "data.bin.gz", BIG), lambda n: n - 10),
        ArchiveKind.GZIP,
        "data.bin",
    ),
    "gz-bad-crc": (
        lambda d: flip_byte(write_gzip(d / "data.bin.gz", BIG), -6),
        ArchiveKind.GZIP,
        "data.bin",
    ),
    "zip-bad-crc": (
        lambda d: flip_byte(
            write_zip(d / "crc.zip", [(zipfile.ZipInfo("stored.bin"), BIG)]), 30 + 10 + 1000
        ),
        ArchiveKind.ZIP,
        "stored.bin",
    ),
    "zip-truncated": (
        lambda d: truncate(build(ArchiveKind.ZIP, d), lambda n: n - 30),
        ArchiveKind.ZIP,
        "data.zip",
    ),
    "tar-read-as-zip": (lambda d: two_member_tar(d), ArchiveKind.ZIP, "looks like a tar"),
    "gz-read-as-tar-bz2": (
        lambda d: write_gzip(d / "x.gz", b"text"),
        ArchiveKind.TAR_BZ2,
        "looks like a gz",
    ),
}


@pytest.mark.parametrize("case", DAMAGED)
def test_damaged_archive_is_corrupt(tmp_path: Path, case: str) -> None:
    make, kind, named = DAMAGED[case]
    archive = make(tmp_path)
    refused(archive, kind, tmp_path / "out", FailureClass.CORRUPT_ARCHIVE, named)


# --- the destination -----------------------------------------------------------------------


def test_non_empty_destination_is_left_alone(tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    (destination / "mine.txt").write_text("keep me")
    with pytest.raises(DestinationNotEmpty, match="not an empty folder"):
        extract_archive(build(ArchiveKind.ZIP, tmp_path), ArchiveKind.ZIP, destination)
    assert [p.name for p in destination.iterdir()] == ["mine.txt"]
    assert leftovers(destination) == []


def test_destination_that_is_a_file_is_refused(tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.write_text("a file")
    with pytest.raises(FileExistsError):
        extract_archive(build(ArchiveKind.TAR, tmp_path), ArchiveKind.TAR, destination)
    assert destination.read_text() == "a file"


def test_empty_destination_folder_is_replaced(tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    extract_archive(build(ArchiveKind.TAR_BZ2, tmp_path), ArchiveKind.TAR_BZ2, destination)
    assert (destination / "a.txt").read_bytes() == CONTENT["a.txt"]
    assert leftovers(destination) == []


def test_failure_after_writing_leaves_an_empty_destination_folder_as_it_was(tmp_path: Path) -> None:
    destination = tmp_path / "out"
    destination.mkdir()
    archive = write_tar(tmp_path / "x.tar.gz", [GOOD, t_file("../evil")], ArchiveKind.TAR_GZ)
    with pytest.raises(FetchFailure):
        extract_archive(archive, ArchiveKind.TAR_GZ, destination)
    assert destination.is_dir() and not any(destination.iterdir())
    assert leftovers(destination) == []


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="max_ratio"):
        ExtractLimits(max_ratio=0)
