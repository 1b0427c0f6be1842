"""The work area of one dataset root, ``<parent>/.<root name>.vcat/``, beside the root so
renames into it are atomic, and outside it so DVC never tracks half-finished work.

    partial/<source>.part(.json)   downloads in progress (resumable)
    archives/<filename>            verified archives, kept after extraction
    extract/<source>/              extraction in progress
    quarantine/<source>/<stamp>/   files that failed, with reason.json
    manifests/<source>.md5.manifest.tsv   what an archive placed (digests taken while unpacking)
    manifests/<source>.stamps.tsv         each placed file's size, times and inode when proven
    <root name>.md5.manifest.tsv   every file the sources placed, for `vcat verify --manifest`
    records/<source>.json          what the last fetch of each source established
    lock                           held while a fetch runs
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ValidationError

from vcat.failures import FetchFailure
from vcat.fetch.download import PartialFile
from vcat.regular import NotRegularFile, open_regular

# "unpacking": an archive is verified and being moved into place; not finished
RecordState = Literal["verified", "fetched", "failed", "unpacking"]


class FileStamp(BaseModel):
    """Enough of a file's metadata to tell it was not touched since it was hashed (the
    change time, which no program can set back, is missing from records of older versions)."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int | None = None

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        """The stamp of ``path`` itself: a symbolic link there is not followed."""
        stat = os.lstat(path)
        return cls(
            size=stat.st_size,
            mtime_ns=stat.st_mtime_ns,
            inode=stat.st_ino,
            ctime_ns=stat.st_ctime_ns,
        )


class SourceRecord(BaseModel):
    """What the last fetch of one source established."""

    state: RecordState
    url: str
    checksum: str  # the catalog's checksum text at the time
    size: int | None = None
    digests: dict[str, str] = {}
    etag: str | None = None
    placed: list[str] = []  # paths under the root this version of the source put there
    owned: list[str] = []  # every path this source ever put there: it may replace them
    stamp: FileStamp | None = None  # of the placed file, for non-archives
    failure: str | None = None
    reason: str | None = None
    quarantined: str | None = None
    at: str = ""


class Busy(Exception):
    """Another process is fetching into the same root."""


class Workspace:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.area = root.parent / f".{root.name}.vcat"

    def partial(self, source: str) -> PartialFile:
        return PartialFile(self.area / "partial" / f"{source}.part")

    def archive_path(self, filename: str) -> Path:
        return self.area / "archives" / filename

    def extract_dir(self, source: str) -> Path:
        return self.area / "extract" / source

    def manifest_path(self, source: str) -> Path:
        """The manifest of the files an archive source placed under the root."""
        return self.area / "manifests" / f"{source}.md5.manifest.tsv"

    def stamps_path(self, source: str) -> Path:
        """The stamps of the files an archive source placed (``vcat.verify.stamps``)."""
        return self.area / "manifests" / f"{source}.stamps.tsv"

    def tree_manifest_path(self) -> Path:
        """The manifest of every file the entry's sources placed under the root."""
        return self.area / f"{self.root.name}.md5.manifest.tsv"

    def record_path(self, source: str) -> Path:
        return self.area / "records" / f"{source}.json"

    def read_record(self, source: str) -> SourceRecord | None:
        """The record of ``source``; None when there is none or it is not a readable record
        (a FIFO or device there is not opened)."""
        try:
            with open_regular(self.record_path(source)) as stream:
                return SourceRecord.model_validate_json(stream.read())
        except (FileNotFoundError, NotRegularFile, ValidationError):
            return None

    def write_record(self, source: str, record: SourceRecord) -> None:
        stamped = record.model_copy(update={"at": _now()})
        _write_atomic(self.record_path(source), stamped.model_dump_json(indent=2))

    def quarantine(
        self, source: str, path: Path | None, filename: str, failure: FetchFailure, url: str
    ) -> Path:
        """Move ``path`` aside as ``filename`` with a ``reason.json``; the page of an HTML
        answer is kept too. Returns the quarantine folder."""
        folder = self.area / "quarantine" / source / _now().replace(":", "")
        folder.mkdir(parents=True, exist_ok=True)
        if path is not None and path.exists():
            os.replace(path, folder / filename)
        page = getattr(failure, "page", None)
        if isinstance(page, bytes):
            (folder / "page.html").write_bytes(page)
        reason = {
            "failure": str(failure.failure),
            "reason": failure.reason,
            "advice": failure.advice,
            "url": url,
        }
        _write_atomic(folder / "reason.json", json.dumps(reason, indent=2))
        return folder

    def clear_extract(self, source: str) -> None:
        """Remove this source's extraction folders, including those of a killed run (only
        ever called under the lock, so no other extraction can be using them)."""
        folder = self.extract_dir(source)
        shutil.rmtree(folder, ignore_errors=True)
        for leftover in folder.parent.glob(f".{source}.extract-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the root's lock; raise ``Busy`` when another fetch holds it."""
        self.area.mkdir(parents=True, exist_ok=True)
        with (self.area / "lock").open("w") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Busy(f"another vcat fetch is writing to {self.root}") from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
