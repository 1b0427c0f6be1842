"""Safe, atomic extraction of downloaded archives: zip, tar (plain, gz, bz2, xz) and gzip.

Everything is written into a hidden folder beside the destination (``.<name>.extract-*``) and
renamed onto the destination only once the whole archive has been read, checked and written,
so the destination either does not exist or holds the complete content.

What is refused, as ``UNSAFE_ARCHIVE`` naming the member and the reason:

* absolute paths (``/x``, ``C:x``; in zips a backslash counts as a separator, so ``\\x`` and
  ``..\\x`` are caught too), ``..`` components and NUL characters in names;
* symbolic links with an absolute target or one that leaves the destination; links that stay
  inside are kept, but no member may lie under a link, links are created after every other
  member, and each is resolved again once all exist, so a chain of links cannot escape either;
* hard links to anything but a regular file earlier in the archive (tar); they are written as
  independent copies, which count against the size limit;
* device files, FIFOs, sockets and member types we do not know;
* a member that would replace an earlier one or turn a folder into a file (repeated folder
  entries are fine), which also rules out archives that were appended to with ``tar -r``;
* more members or more expanded bytes than ``ExtractLimits`` allows, checked on the sizes the
  archive declares and again on the bytes actually written.

Zips and plain tars are checked in full before anything is written; compressed tars are read
once, as a stream, and each member is checked before any of its bytes are written.
Archives that cannot be read to the end are ``CORRUPT_ARCHIVE``.

Files are written 0o644, or 0o755 when the archive marks them executable, and folders 0o755,
whatever the archive says: no setuid, setgid or world-writable bits survive. File modification
times are kept; owners are not.
"""

from __future__ import annotations

import bz2
import errno
import gzip
import hashlib
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from vcat.catalog.schema import ArchiveKind
from vcat.failures import FailureClass, FetchFailure
from vcat.hashing import BLOCK_SIZE

Progress = Callable[[int], None]

MAX_LINK_TARGET = 4096  # bytes; longer symlink targets in a zip are refused unread
_TAR_BLOCK = tarfile.BLOCKSIZE
_ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")
_GZIP_MAGIC = b"\x1f\x8b"
_BZIP2_MAGIC = re.compile(rb"BZh[1-9]")
_XZ_MAGIC = b"\xfd7zXZ\x00"
_NAME_MAX = 255  # bytes in one name on ext4, XFS, btrfs, APFS
_PATH_MAX = 4000  # bytes in a member's path, leaving room for the destination's own
_DRIVE = re.compile(r"[A-Za-z]:")
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_SPECIAL = {
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
}
# What reading a damaged or mislabelled archive raises; only ever caught around reads.
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    EOFError,
    OSError,
    struct.error,
)


@dataclass(frozen=True)
class ExtractLimits:
    """Bounds on what one archive may expand to; going past one is ``UNSAFE_ARCHIVE``.

    ``max_ratio`` caps the expanded size at that many times the archive's size, but never
    below ``ratio_floor_bytes``, so a small archive of very compressible text is not refused;
    ``None`` turns it off. Images, video and annotations compress far less than 100:1, while
    bombs (long runs of one byte) go past 1000:1 with every codec.
    """

    max_total_bytes: int = 64 * 2**30
    max_members: int = 2_000_000
    max_ratio: float | None = 1000.0
    ratio_floor_bytes: int = 256 * 2**20

    def __post_init__(self) -> None:
        if self.max_total_bytes < 0 or self.max_members < 0 or self.ratio_floor_bytes < 0:
            raise ValueError("extract limits must not be negative")
        if self.max_ratio is not None and self.max_ratio <= 0:
            raise ValueError("max_ratio must be positive, or None to turn it off")


@dataclass(frozen=True)
class ExtractResult:
    """What one extraction placed at ``destination``."""

    destination: Path
    kind: ArchiveKind  # what was extracted; the detected kind when AUTO was asked for
    files: int  # regular files written, hard-link copies included
    bytes_written: int
    md5s: dict[str, str] = field(default_factory=dict)  # file path ('/'-joined) -> md5 hex


class DestinationNotEmpty(FileExistsError):
    """The destination already holds something; extraction never merges into it."""


def detect_archive_kind(path: Path) -> ArchiveKind:
    """The kind of archive ``path`` is, from its first bytes; ``NONE`` when it is none we read.

    A gzip, bzip2 or xz stream counts as a tar when its first decompressed block is a tar
    header; a gzip that holds anything else is ``GZIP``, while bzip2 and xz that hold no tar
    are ``NONE`` (there is no single-file kind for them). A compressed stream too damaged to
    look inside is reported as the kind it most likely is, so extracting it says it is corrupt.
    """
    with path.open("rb") as stream:
        head = stream.read(_TAR_BLOCK)
    if head.startswith(_ZIP_MAGICS):
        return ArchiveKind.ZIP
    if head.startswith(_GZIP_MAGIC):
        return _peek_tar(path, gzip.open, ArchiveKind.TAR_GZ, ArchiveKind.GZIP)
    if _BZIP2_MAGIC.match(head):
        return _peek_tar(path, bz2.open, ArchiveKind.TAR_BZ2, ArchiveKind.NONE)
    if head.startswith(_XZ_MAGIC):
        return _peek_tar(path, lzma.open, ArchiveKind.TAR_XZ, ArchiveKind.NONE)
    return ArchiveKind.TAR if _is_tar_header(head) else ArchiveKind.NONE


def extract_archive(
    archive: Path,
    kind: ArchiveKind,
    destination: Path,
    *,
    limits: ExtractLimits = ExtractLimits(),
    progress: Progress | None = None,
) -> ExtractResult:
    """Extract ``archive`` so that ``destination`` becomes a folder holding its members.

    ``kind`` ``AUTO`` detects the kind (a file that is no archive is ``CORRUPT_ARCHIVE``);
    ``NONE`` is a ``ValueError``. ``destination`` must not exist or be an empty folder, else
    ``DestinationNotEmpty``; its parent is created. A ``gz`` file expands to one file named by
    the gzip header's original name when that is a plain file name, else by the archive's name
    without ``.gz`` (``.tgz`` becomes ``.tar``; a name with neither is kept as it is).
    ``progress`` is called with each count of bytes written.

    Raises ``FetchFailure`` (``UNSAFE_ARCHIVE`` or ``CORRUPT_ARCHIVE``); on any failure the
    destination is left as it was and the temporary folder is removed. Errors writing the
    destination's file system (a full disk) propagate as ``OSError``.
    """
    kind = ArchiveKind(kind)
    if kind is ArchiveKind.NONE:
        raise ValueError(f"{archive.name}: archive kind 'none' has nothing to extract")
    _check_destination(destination)
    if kind is ArchiveKind.AUTO:
        kind = detect_archive_kind(archive)
        if kind is ArchiveKind.NONE:
            raise FetchFailure(
                FailureClass.CORRUPT_ARCHIVE,
                f"{archive.name} is not a zip, tar or gzip archive (detected from its first bytes)",
            )
    budget = _Budget(limits, archive.stat().st_size)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.extract-", dir=destination.parent))
    try:
        writer = _Writer(staging, budget, progress, archive.name)
        try:
            _EXTRACTORS[kind](archive, kind, _Plan(budget), writer)
            writer.finish()
        except FetchFailure as failure:
            if failure.failure is FailureClass.CORRUPT_ARCHIVE:
                hint = _kind_hint(archive, kind)
                raise FetchFailure(failure.failure, failure.reason + hint) from failure
            raise
        os.chmod(staging, 0o755)
        _rename(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExtractResult(destination, kind, writer.files, budget.written, writer.md5s)


# --- limits and member checks -------------------------------------------------------------

EntryType = Literal["file", "dir", "symlink", "hardlink"]


@dataclass(frozen=True)
class _Entry:
    name: str  # as the archive spells it, for messages
    path: tuple[str, ...]  # normalised, relative to the destination; () is the root itself
    type: EntryType
    size: int = 0  # declared size of a file
    executable: bool = False
    mtime: float | None = None
    target: str = ""  # a link's target as the archive stores it
    link_path: tuple[str, ...] = field(default=())  # a hard link's target, normalised


def _unsafe(reason: str) -> FetchFailure:
    return FetchFailure(FailureClass.UNSAFE_ARCHIVE, reason)


def _corrupt(reason: str) -> FetchFailure:
    return FetchFailure(FailureClass.CORRUPT_ARCHIVE, reason)


class _Budget:
    """Counts members, declared bytes and written bytes against the limits."""

    def __init__(self, limits: ExtractLimits, archive_size: int) -> None:
        self.limit = limits.max_total_bytes
        self.limit_text = f"the limit of {self.limit} bytes (max_total_bytes)"
        if limits.max_ratio is not None:
            by_ratio = max(limits.ratio_floor_bytes, int(limits.max_ratio * archive_size))
            if by_ratio < self.limit:
                self.limit = by_ratio
                self.limit_text = (
                    f"the limit of {by_ratio} bytes (max_ratio={limits.max_ratio:g} for a "
                    f"{archive_size}-byte archive)"
                )
        self.max_members = limits.max_members
        self.members = self.declared = self.written = 0

    def admit(self, name: str, declared: int) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise _unsafe(f"too many members: {name!r} is past the limit of {self.max_members}")
        self.declared += declared
        if self.declared > self.limit:
            raise self._bomb(name, "declares a size that takes")

    def expand(self, name: str, count: int) -> None:
        self.written += count
        if self.written > self.limit:
            raise self._bomb(name, "takes")

    def _bomb(self, name: str, what: str) -> FetchFailure:
        return _unsafe(
            f"decompression bomb: {name!r} {what} the expanded size past {self.limit_text}"
        )


def _member_path(name: str, *, backslash_separates: bool) -> tuple[str, ...]:
    """``name``'s components relative to the destination; refuses ones that leave it."""
    text = name.replace("\\", "/") if backslash_separates else name
    if "\x00" in text:
        raise _unsafe(f"member {name!r} has a NUL character in its name")
    if text.startswith("/") or _DRIVE.match(text):
        raise _unsafe(f"member {name!r} has an absolute path")
    parts = tuple(part for part in text.split("/") if part not in ("", "."))
    if ".." in parts:
        raise _unsafe(f"member {name!r} climbs out of the destination with '..'")
    sizes = [len(part.encode("utf-8", "surrogateescape")) for part in parts]
    if sizes and (max(sizes) > _NAME_MAX or sum(sizes) + len(sizes) > _PATH_MAX):
        shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}..."
        raise _unsafe(
            f"member {shown} has a name longer than file systems allow ({_NAME_MAX} bytes per "
            f"name, {_PATH_MAX} per path)"
        )
    return parts


def _check_symlink(entry: _Entry) -> None:
    """Refuses a symbolic link whose target, read as written, is absolute or leaves the root."""
    target = entry.target
    if not target or "\x00" in target:
        raise _unsafe(f"symbolic link {entry.name!r} has an empty or NUL-bearing target")
    if target.startswith("/") or _DRIVE.match(target):
        raise _unsafe(f"symbolic link {entry.name!r} points to {target!r}, an absolute path")
    depth = len(entry.path) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                raise _unsafe(
                    f"symbolic link {entry.name!r} points to {target!r}, outside the destination"
                )
        elif part not in ("", "."):
            depth += 1


_LABELS = {"file": "file", "symlink": "symbolic link", "dir": "folder"}


class _Plan:
    """Admits members in archive order, refusing any that is unsafe or clashes with another."""

    def __init__(self, budget: _Budget) -> None:
        self.budget = budget
        self._types: dict[tuple[str, ...], str] = {}  # path -> file | dir | symlink
        self._sizes: dict[tuple[str, ...], int] = {}

    def admit(self, entry: _Entry) -> _Entry | None:
        """``entry`` when it is to be written; ``None`` for an entry naming the root folder."""
        declared = entry.size
        if entry.type == "symlink":
            _check_symlink(entry)
        elif entry.type == "hardlink":
            if self._types.get(entry.link_path) != "file":
                raise _unsafe(
                    f"hard link {entry.name!r} points to {entry.target!r}, which is not a "
                    "regular file earlier in the archive"
                )
            declared = self._sizes[entry.link_path]
        self.budget.admit(entry.name, declared)
        if not entry.path:
            if entry.type == "dir":
                return None
            raise _unsafe(f"member {entry.name!r} has an empty name")
        for end in range(1, len(entry.path)):
            prefix = entry.path[:end]
            held = self._types.setdefault(prefix, "dir")
            if held != "dir":
                raise _unsafe(
                    f"member {entry.name!r} lies under {'/'.join(prefix)!r}, which is a "
                    f"{_LABELS[held]}"
                )
        kind = "file" if entry.type == "hardlink" else entry.type
        held = self._types.get(entry.path)
        if held is not None and not (held == "dir" == kind):
            raise _unsafe(
                f"member {entry.name!r} would replace an earlier {_LABELS[held]} of the same name"
            )
        self._types[entry.path] = kind
        if kind == "file":
            self._sizes[entry.path] = declared
        return entry


# --- writing ------------------------------------------------------------------------------


@contextmanager
def _reading(
    archive: str, member: str | None = None, *, after: str | None = None
) -> Iterator[None]:
    """Turns an error reading the archive (in ``member``, or ``after`` one) into
    ``CORRUPT_ARCHIVE``."""
    try:
        yield
    except _READ_ERRORS as exc:
        if member is not None:
            where = f"member {member!r} of {archive}"
        elif after is not None:
            where = f"{archive} after member {after!r}"
        else:
            where = archive
        detail = str(exc) or type(exc).__name__
        raise _corrupt(f"cannot read {where}: {detail}") from exc


class _Writer:
    """Writes admitted members under ``root``; links come last, so nothing is written via one."""

    def __init__(
        self, root: Path, budget: _Budget, progress: Progress | None, archive: str
    ) -> None:
        self.root = root
        self.files = 0
        self.md5s: dict[str, str] = {}  # computed while writing, so no one reads them again
        self._budget = budget
        self._progress = progress
        self._archive = archive
        self._dirs: set[tuple[str, ...]] = {()}
        self._links: list[_Entry] = []

    def add(self, entry: _Entry, source: IO[bytes] | None = None) -> int:
        """Writes ``entry`` (a file's content read from ``source``); returns the bytes written."""
        if entry.type == "dir":
            self._directory(entry.path)
            return 0
        if entry.type == "symlink":
            self._links.append(entry)
            return 0
        self._directory(entry.path[:-1])
        if entry.type == "hardlink":
            with open(self._path(entry.link_path), "rb") as copied:
                return self._copy(entry, copied, from_archive=False)
        assert source is not None
        return self._copy(entry, source, from_archive=True)

    def finish(self) -> None:
        """Creates the symbolic links, then checks that none resolves outside the root."""
        for entry in self._links:
            self._directory(entry.path[:-1])
            try:
                os.symlink(entry.target, self._path(entry.path))
            except FileExistsError:
                raise self._collision(entry) from None
        root = os.path.realpath(self.root)
        for entry in self._links:
            resolved = os.path.realpath(self._path(entry.path))
            if os.path.commonpath([root, resolved]) != root:
                raise _unsafe(
                    f"symbolic link {entry.name!r} points to {entry.target!r}, which leads "
                    "outside the destination through other links"
                )

    def _path(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self.root, *parts)

    def _directory(self, parts: tuple[str, ...]) -> None:
        for end in range(1, len(parts) + 1):
            prefix = parts[:end]
            if prefix in self._dirs:
                continue
            path = self._path(prefix)
            try:
                os.mkdir(path, 0o755)
            except FileExistsError:
                if not os.path.isdir(path):  # only on a case-insensitive file system
                    raise _unsafe(
                        f"folder {'/'.join(prefix)!r} collides with an earlier member on this "
                        "file system (names that differ only in case?)"
                    ) from None
            os.chmod(path, 0o755)
            self._dirs.add(prefix)

    def _collision(self, entry: _Entry) -> FetchFailure:
        return _unsafe(
            f"member {entry.name!r} collides with an earlier member on this file system "
            "(names that differ only in case?)"
        )

    def _copy(self, entry: _Entry, source: IO[bytes], *, from_archive: bool) -> int:
        path = self._path(entry.path)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            descriptor = os.open(path, flags, 0o600)
        except FileExistsError:
            raise self._collision(entry) from None
        written = 0
        digest = hashlib.md5()
        with open(descriptor, "wb") as out:
            while True:
                with _reading(self._archive, entry.name) if from_archive else nullcontext():
                    block = source.read(BLOCK_SIZE)
                if not block:
                    break
                self._budget.expand(entry.name, len(block))  # before the bytes land
                out.write(block)
                digest.update(block)
                written += len(block)
                if self._progress is not None:
                    self._progress(len(block))
            os.fchmod(out.fileno(), 0o755 if entry.executable else 0o644)
        if entry.mtime is not None:
            # a time the file system cannot hold is not worth failing for
            with suppress(OverflowError, ValueError, OSError):
                os.utime(path, (entry.mtime, entry.mtime))
        self.files += 1
        self.md5s["/".join(entry.path)] = digest.hexdigest()
        return written


# --- the formats --------------------------------------------------------------------------


def _extract_zip(archive: Path, kind: ArchiveKind, plan: _Plan, writer: _Writer) -> None:
    with _reading(archive.name):
        opened = zipfile.ZipFile(archive)
    with opened as zipped:
        admitted = [
            (info, plan.admit(_zip_entry(zipped, info, archive.name))) for info in zipped.infolist()
        ]
        for info, entry in admitted:
            if entry is None:
                continue
            if entry.type != "file":
                writer.add(entry)
                continue
            with _reading(archive.name, entry.name):
                source = zipped.open(info)
            with source:
                written = writer.add(entry, source)
            if written != info.file_size:
                raise _corrupt(
                    f"member {entry.name!r} of {archive.name} holds {written} bytes but its "
                    f"header says {info.file_size}"
                )


def _zip_entry(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str) -> _Entry:
    name = info.filename
    if info.flag_bits & 0x1:
        raise _corrupt(f"member {name!r} of {archive} is encrypted, which vcat cannot read")
    if info.compress_type not in _ZIP_METHODS:
        raise _corrupt(
            f"member {name!r} of {archive} uses compression method {info.compress_type}, "
            "which Python's zipfile cannot read"
        )
    path = _member_path(name, backslash_separates=True)
    mode = info.external_attr >> 16  # Unix st_mode, when the zip was made on Unix
    file_type = stat.S_IFMT(mode)
    if file_type == stat.S_IFLNK:
        if info.file_size > MAX_LINK_TARGET:
            raise _unsafe(f"symbolic link {name!r} has a target over {MAX_LINK_TARGET} bytes")
        with _reading(archive, name), zipped.open(info) as stream:
            target = stream.read(MAX_LINK_TARGET + 1).decode("utf-8", "surrogateescape")
        return _Entry(name, path, "symlink", target=target)
    if file_type in _SPECIAL:
        raise _unsafe(f"member {name!r} is {_SPECIAL[file_type]}")
    if file_type == stat.S_IFDIR or name.endswith(("/", "\\")):
        return _Entry(name, path, "dir")
    if file_type not in (0, stat.S_IFREG):
        raise _unsafe(f"member {name!r} has an unknown file type {file_type:#o}")
    return _Entry(
        name,
        path,
        "file",
        size=info.file_size,
        executable=bool(mode & 0o111),
        mtime=_zip_mtime(info.date_time),
    )


def _zip_mtime(date_time: tuple[int, int, int, int, int, int]) -> float | None:
    try:
        return time.mktime((*date_time, 0, 0, -1))  # zips store local time without a zone
    except (OverflowError, ValueError):
        return None


def _extract_tar(archive: Path, kind: ArchiveKind, plan: _Plan, writer: _Writer) -> None:
    if kind is ArchiveKind.TAR:
        _extract_plain_tar(archive, plan, writer)
    else:
        _extract_compressed_tar(archive, kind, plan, writer)


def _extract_plain_tar(archive: Path, plan: _Plan, writer: _Writer) -> None:
    """Reads every header first (cheap: data is seeked over), then writes."""

    def block_at(offset: int) -> bytes:
        with archive.open("rb") as raw:
            raw.seek(offset)
            return raw.read(_TAR_BLOCK)

    with _open_tar(archive.name, name=archive, mode="r:") as tar:
        members = list(_tar_members(tar, archive.name, block_at))
        admitted = [(member, plan.admit(_tar_entry(member))) for member in members]
        for member, entry in admitted:
            if entry is not None:
                _write_tar_member(tar, member, entry, writer, archive.name)


def _extract_compressed_tar(archive: Path, kind: ArchiveKind, plan: _Plan, writer: _Writer) -> None:
    """One pass over the decompressed stream; each member is checked before it is written."""
    opener = {ArchiveKind.TAR_GZ: gzip.open, ArchiveKind.TAR_BZ2: bz2.open}.get(kind, lzma.open)
    with opener(archive, "rb") as decompressed:
        stream = _KeepTail(decompressed)
        with _open_tar(archive.name, fileobj=stream, mode="r|") as tar:
            for member in _tar_members(tar, archive.name, stream.block_at):
                entry = plan.admit(_tar_entry(member))
                if entry is not None:
                    _write_tar_member(tar, member, entry, writer, archive.name)
        # Read to the end of the compressed stream so that its checksum is verified too.
        while True:
            with _reading(archive.name):
                block = decompressed.read(BLOCK_SIZE)
            if not block:
                break
            plan.budget.expand("(data after the end of the tar)", len(block))


def _tar_members(
    tar: tarfile.TarFile, archive: str, block_at: Callable[[int], bytes]
) -> Iterator[tarfile.TarInfo]:
    """The members in order, each header read when it is asked for.

    Refuses a tar that stops without its end marker: ``tarfile`` takes a missing or damaged
    header after the first one for the end of the archive, silently.
    """
    previous: str | None = None
    while True:
        with _reading(archive, after=previous):
            member = tar.next()
        if member is None:
            break
        tar.members.clear()  # tarfile keeps every header otherwise; callers keep what they need
        previous = member.name
        yield member
    with _reading(archive, after=previous):
        block = block_at(tar.offset)
    after = f" after member {previous!r}" if previous is not None else ""
    if len(block) < _TAR_BLOCK:
        raise _corrupt(f"{archive} ends at byte {tar.offset}{after}, without the tar end marker")
    if block.count(0) != _TAR_BLOCK:
        raise _corrupt(f"{archive} holds a damaged tar header at byte {tar.offset}{after}")


def _open_tar(archive: str, **how: Any) -> tarfile.TarFile:
    """``tarfile.open(**how)``, with a failure to read the first header as corrupt."""
    with _reading(archive):
        return tarfile.open(**how)


def _tar_entry(member: tarfile.TarInfo) -> _Entry:
    name = member.name
    path = _member_path(name, backslash_separates=False)
    if member.isreg():
        return _Entry(
            name,
            path,
            "file",
            size=member.size,
            executable=bool(member.mode & 0o111),
            mtime=member.mtime,
        )
    if member.isdir():
        return _Entry(name, path, "dir")
    if member.issym():
        return _Entry(name, path, "symlink", target=member.linkname)
    if member.islnk():
        target = member.linkname
        try:
            link_path = _member_path(target, backslash_separates=False)
        except FetchFailure:
            raise _unsafe(
                f"hard link {name!r} points to {target!r}, outside the destination"
            ) from None
        return _Entry(name, path, "hardlink", target=target, link_path=link_path)
    if member.ischr():
        raise _unsafe(f"member {name!r} is {_SPECIAL[stat.S_IFCHR]}")
    if member.isblk():
        raise _unsafe(f"member {name!r} is {_SPECIAL[stat.S_IFBLK]}")
    if member.isfifo():
        raise _unsafe(f"member {name!r} is {_SPECIAL[stat.S_IFIFO]}")
    raise _unsafe(f"member {name!r} has tar type {member.type!r}, which vcat does not extract")


def _write_tar_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, entry: _Entry, writer: _Writer, archive: str
) -> None:
    if entry.type != "file":
        writer.add(entry)
        return
    with _reading(archive, entry.name):
        source = tar.extractfile(member)
    assert source is not None  # a regular member always has content
    with source:
        writer.add(entry, source)


class _KeepTail:
    """A read-only stream that keeps its last bytes, so the block where ``tarfile`` stopped
    can be looked at after it has been read."""

    _KEEP = 1 << 18  # far more than tarfile reads ahead (one 10 KiB record)

    def __init__(self, raw: IO[bytes]) -> None:
        self._raw = raw
        self._kept = bytearray()
        self._start = 0  # stream offset of self._kept[0]

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self._kept += data
        if len(self._kept) > 2 * self._KEEP:
            drop = len(self._kept) - self._KEEP
            del self._kept[:drop]
            self._start += drop
        return data

    def block_at(self, offset: int) -> bytes:
        """The tar block at ``offset``, shorter where the stream ends; it must not be dropped."""
        if offset < self._start:
            raise ValueError("tar offset is behind the kept tail")
        while self._start + len(self._kept) < offset + _TAR_BLOCK and self.read(_TAR_BLOCK):
            pass
        begin = offset - self._start
        return bytes(self._kept[begin : begin + _TAR_BLOCK])


def _extract_gzip(archive: Path, kind: ArchiveKind, plan: _Plan, writer: _Writer) -> None:
    name = _gzip_output_name(archive)
    entry = plan.admit(_Entry(name, (name,), "file"))
    assert entry is not None
    with gzip.open(archive, "rb") as stream:
        writer.add(entry, stream)


def _gzip_output_name(archive: Path) -> str:
    """The gzip header's original name when it is a plain file name, else from the archive's."""
    stored = _gzip_stored_name(archive)
    if stored is not None:
        return stored
    name = archive.name
    lowered = name.lower()
    if lowered.endswith(".tgz") and len(name) > 4:
        return name[:-4] + ".tar"
    if lowered.endswith(".gz") and len(name) > 3:
        return name[:-3]
    return name


def _gzip_stored_name(archive: Path) -> str | None:
    """FNAME from the gzip header (RFC 1952), or ``None`` when absent or not a plain name."""
    with archive.open("rb") as stream:
        header = stream.read(10)
        if len(header) < 10 or not header.startswith(_GZIP_MAGIC):
            return None
        flags = header[3]
        if flags & 0x04:  # FEXTRA comes before the name
            stream.seek(int.from_bytes(stream.read(2), "little"), os.SEEK_CUR)
        if not flags & 0x08:
            return None
        raw = stream.read(256)
    if b"\x00" not in raw:
        return None
    name = raw[: raw.index(b"\x00")].decode("latin-1")
    plain = name not in ("", ".", "..") and "/" not in name and "\\" not in name
    return name if plain and name.isprintable() and not _DRIVE.match(name) else None


_EXTRACTORS: dict[ArchiveKind, Callable[[Path, ArchiveKind, _Plan, _Writer], None]] = {
    ArchiveKind.ZIP: _extract_zip,
    ArchiveKind.TAR: _extract_tar,
    ArchiveKind.TAR_GZ: _extract_tar,
    ArchiveKind.TAR_BZ2: _extract_tar,
    ArchiveKind.TAR_XZ: _extract_tar,
    ArchiveKind.GZIP: _extract_gzip,
}


# --- detection and the destination -------------------------------------------------------


def _is_tar_header(block: bytes) -> bool:
    try:
        tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _peek_tar(
    path: Path, opener: Callable[..., IO[bytes]], tar_kind: ArchiveKind, plain: ArchiveKind
) -> ArchiveKind:
    """``tar_kind`` when the decompressed stream starts with a tar header, else ``plain``."""
    try:
        with opener(path, "rb") as stream:
            block = stream.read(_TAR_BLOCK)
    except _READ_ERRORS:
        return plain if plain is not ArchiveKind.NONE else tar_kind
    return tar_kind if _is_tar_header(block) else plain


def _check_destination(destination: Path) -> None:
    if destination.is_symlink() or (
        destination.exists() and (not destination.is_dir() or any(destination.iterdir()))
    ):
        raise DestinationNotEmpty(
            f"{destination} already exists and is not an empty folder; extraction never merges "
            "into existing content: remove it or extract somewhere else"
        )


def _rename(staging: Path, destination: Path) -> None:
    """Moves the finished tree into place; an empty folder there is replaced in the same step."""
    try:
        os.replace(staging, destination)
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR):
            raise DestinationNotEmpty(
                f"{destination} was filled while extracting; nothing was placed there"
            ) from exc
        raise


def _kind_hint(archive: Path, kind: ArchiveKind) -> str:
    """A note for when the file is not the kind it was extracted as, else ''."""
    try:
        found = detect_archive_kind(archive)
    except OSError:
        return ""
    if found is kind:
        return ""
    if found is ArchiveKind.NONE:
        return f" (the file is not a zip, tar or gzip archive at all, though read as {kind})"
    return f" (the file looks like a {found} archive, not {kind}: check the entry's 'archive')"
