"""Names from data that no file system can hold are refused before anything is written."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from vcat.archive import extract_archive
from vcat.catalog.schema import ArchiveKind
from vcat.failures import FetchFailure


def tar_of(path: Path, names: list[str]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    return path


@pytest.mark.parametrize(
    "name",
    ["d/" + "a" * 256 + ".txt", "é" * 128 + ".txt", "/".join(["b" * 200] * 21) + "/x.txt"],
    ids=["256-byte name", "256 bytes of UTF-8", "4221-byte path"],
)
def test_archive_members_too_long_are_refused_whole(tmp_path: Path, name: str) -> None:
    archive = tar_of(tmp_path / "a.tar", ["ok.txt", name])
    with pytest.raises(FetchFailure, match="longer than file systems allow") as raised:
        extract_archive(archive, ArchiveKind.AUTO, tmp_path / "out")
    assert raised.value.failure == "unsafe_archive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar"]

    zipped = tmp_path / "a.zip"
    with zipfile.ZipFile(zipped, "w") as archive_file:
        archive_file.writestr(name, b"x")
    with pytest.raises(FetchFailure, match="longer than file systems allow"):
        extract_archive(zipped, ArchiveKind.AUTO, tmp_path / "out")


def test_names_at_the_limit_are_extracted(tmp_path: Path) -> None:
    name = "d/" + "a" * 251 + ".txt"  # 255 bytes
    archive = tar_of(tmp_path / "a.tar", [name])
    extract_archive(archive, ArchiveKind.AUTO, tmp_path / "out")
    assert (tmp_path / "out" / name).read_bytes() == b"x"
