"""Manifests: the size and digest of every file under a root, and checking a tree against one.

Format (UTF-8 text, one line per file, sorted by path; gzip-compressed when the name ends in
``.gz``, with a zero timestamp so the same tree always gives the same bytes)::

    # vcat-manifest 1 algorithm=md5 files=2 bytes=1048586
    0f343b0931126a20f133d67c2b018a3b<TAB>1048576<TAB>images/0001.jpg
    e1c06d85ae7b8b032bef47e42e4c08f9<TAB>10<TAB>readme.txt

- The header names the format version, the digest algorithm (``md5`` or ``sha256``), and
  the number of files and bytes listed; a reader rejects a manifest whose line count
  disagrees (a truncated copy). Other ``key=value`` words may be added to the header later.
- Each line is ``<lowercase hex digest> TAB <size in bytes> TAB <path>``; the path is
  relative to the root, uses ``/``, and escapes ``\\`` as ``\\\\``, TAB as ``\\t``, LF as
  ``\\n``, CR as ``\\r`` and a byte that is not UTF-8 as ``\\xNN``. Any other name is written
  as it is.
- A symbolic link is a line ``symlink TAB <target> TAB <path>``, the target escaped like a
  path and written as the link holds it; it counts in ``files`` and adds nothing to
  ``bytes``. A link is recorded, never followed: its target, in or out of the tree, is not
  read. FIFOs, sockets and devices cannot be listed: building a manifest of a tree that
  holds one fails, naming it.
- Lines starting with ``#`` after the header are comments.

Without vcat (for paths that need no escape)::

    tail -n +2 M | grep -v ^symlink | cut -f1,3 | sed 's/\\t/  /' | (cd ROOT && md5sum -c)

Hashing runs in threads of this process (hashlib and reads release the GIL on 1 MiB blocks,
so no worker process has to start and import anything): small files go many to a task so the
cost of a task is spread, large files one to a task, and the largest tasks are started first
so no core idles at the end. Each task reads with one reused 1 MiB buffer.
"""

from __future__ import annotations

import gc
import gzip
import io
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, NamedTuple

from vcat.failures import ADVICE, FailureClass, looks_like_html
from vcat.hashing import ALGORITHMS, NOT_READ, hash_paths, kind_of, open_regular
from vcat.regular import open_regular as open_file
from vcat.verify.paths import escape_path, unescape_path
from vcat.verify.stamps import Stamp

MAGIC = "vcat-manifest"
VERSION = 1
DIGEST_SIZES = {"md5": 16, "sha256": 32}
#: Classes ``check_manifest`` reports, in the order they are summarised.
STATUSES: tuple[str, ...] = (
    "ok",
    FailureClass.MISSING,
    FailureClass.UNEXPECTED,
    FailureClass.TRUNCATED,
    FailureClass.OVERSIZED,
    FailureClass.CHECKSUM_MISMATCH,
    FailureClass.HTML_INSTEAD_OF_FILE,
    FailureClass.NOT_A_FILE,
)
#: What to do about a file that differs from its manifest. ``failures.ADVICE`` speaks of
#: downloads ("run the same command again to resume"); a tree is checked after the fact.
CHECK_ADVICE: dict[FailureClass, str] = {
    **ADVICE,
    FailureClass.TRUNCATED: (
        "the file is shorter than when the manifest was made (an interrupted download or "
        "copy): copy or fetch it again"
    ),
    FailureClass.OVERSIZED: (
        "the file is longer than when the manifest was made (another file saved under this "
        "name, or data appended): copy or fetch it again"
    ),
    FailureClass.CHECKSUM_MISMATCH: (
        "the size is right but the content differs (corruption or another version): copy or "
        "fetch it again; if a fresh copy differs the same way, the manifest is out of date"
    ),
    FailureClass.HTML_INSTEAD_OF_FILE: (
        "the file is a saved web page (a login, quota or error page), not the data: open its "
        "URL in a browser to see what it asks for, then download the file again"
    ),
}
#: A task holds files up to this many bytes in all, or this many files; larger files go alone.
BATCH_BYTES = 16 << 20
BATCH_FILES = 256
#: With several workers, tasks are also cut to at most 1/TASKS_PER_WORKER of a worker's share
#: of the bytes, so that on a small tree no worker is left alone with a long last task.
TASKS_PER_WORKER = 8
#: Workers report bytes read this often, so a progress bar moves inside a large file.
REPORT_BYTES = 16 << 20

_HTML_NAMES = (".html", ".htm", ".xhtml")
LINK = "symlink"  # the first field of a symbolic link's line
_LINK_LINE = re.compile(rf"{LINK}\t([^\t]+)\t([^\t]+)\Z")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
#: An empty path, a leading '/', or an empty, '.' or '..' component.
_BAD_PATH = re.compile(r"(?:^|/)\.{0,2}(?:/|\Z)")


class ManifestError(Exception):
    """A manifest that cannot be read or written, with the file and line to look at."""

    def __init__(self, path: Path, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: {message}")


class TreeError(Exception):
    """The tree cannot be listed completely (unreadable folders, broken links, link loops)."""

    def __init__(self, root: Path, problems: list[str]) -> None:
        self.root = root
        self.problems = problems
        shown = "; ".join(problems[:5]) + (
            f"; and {len(problems) - 5} more" if problems[5:] else ""
        )
        super().__init__(f"cannot list every file under {root}: {shown}")


@dataclass(frozen=True)
class HashProgress:
    """How far hashing has come; passed to a ``progress`` callback a few times a second."""

    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int


ProgressCallback = Callable[[HashProgress], None]


class ManifestRecord(NamedTuple):
    """One line of a manifest (a tuple: a million of them must be cheap to make)."""

    path: str  # relative to the root, '/'-separated, unescaped
    size: int
    digest: str  # lowercase hex; empty for a link
    link: str | None = None  # a symbolic link's target, as written; None for a file


@dataclass(frozen=True)
class Manifest:
    algorithm: str
    records: list[ManifestRecord]


@dataclass(frozen=True)
class FileResult:
    """One file that is not as the manifest says."""

    path: str
    failure: FailureClass
    expected_size: int | None = None
    actual_size: int | None = None
    expected_digest: str | None = None
    actual_digest: str | None = None
    detail: str | None = None  # what stands there instead: "a FIFO", "symbolic link to ..."

    @property
    def advice(self) -> str:
        return CHECK_ADVICE[self.failure]


@dataclass
class ManifestReport:
    """Every failure found, and how many files fell in each class (``ok`` included)."""

    root: Path
    manifest: Path
    algorithm: str
    failures: list[FileResult] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    bytes_hashed: int = 0
    hashed: int = 0  # files read; the others were proven by their stamps
    changed: list[str] = field(default_factory=list)  # stamp differs, content not checked
    proven: dict[str, Stamp] = field(default_factory=dict)  # stamps of the files found ok

    @property
    def ok(self) -> bool:
        return not self.failures and not self.changed


# --- listing ------------------------------------------------------------------------------


@dataclass
class Listing:
    """What is under a root, read without following any symbolic link or opening anything.

    ``files``: regular files as ``(relative path, size)``, sorted; ``links``: symbolic links,
    path -> target as written; ``others``: FIFOs, sockets and devices, path -> what it is;
    ``stamps``: the stamp of each file, when asked for.
    """

    files: list[tuple[str, int]] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    others: dict[str, str] = field(default_factory=dict)
    stamps: dict[str, Stamp] = field(default_factory=dict)


def list_tree(root: Path, only: Sequence[str] | None = None, with_stamps: bool = False) -> Listing:
    """Everything under ``root`` (or under the relative paths ``only``, each a file, link or
    folder; those that do not exist are left out, and one reached through a link on the way
    is replaced by that link). Nothing is followed: a link is listed as a link, whatever it
    points to, so no walk leaves the tree. Raises ``TreeError`` when ``root`` or a folder in
    it cannot be read."""
    if not root.is_dir():
        raise TreeError(root, [f"{root} is not a folder" if root.exists() else "no such folder"])
    listing = Listing()
    with _gc_paused():
        problems = _walk(root, listing, only, with_stamps)
    if problems:
        raise TreeError(root, sorted(problems))
    listing.files.sort()
    return listing


def walk_files(root: Path) -> list[tuple[str, int]]:
    """Every regular file under ``root`` as ``(relative path, size)``, sorted by path.

    ``TreeError`` when a folder cannot be read or the tree holds a link, FIFO, socket or
    device (see ``list_tree`` to have those listed instead).
    """
    listing = list_tree(root)
    strays = [f"{path}: a symbolic link" for path in listing.links]
    strays += [f"{path}: a {kind}, not a file" for path, kind in listing.others.items()]
    if strays:
        raise TreeError(root, sorted(strays))
    return listing.files


def _walk(root: Path, listing: Listing, only: Sequence[str] | None, with_stamps: bool) -> list[str]:
    problems: list[str] = []
    pending: list[tuple[str, str]] = []
    if only is None:
        pending.append((str(root), ""))
    else:
        for relative in only:
            path = os.path.join(root, relative)
            try:
                if _through_link(root, relative, listing):
                    continue  # never list what lies behind a link
                result = os.lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                problems.append(f"{relative}: cannot stat ({exc.strerror})")
                continue
            if stat.S_ISDIR(result.st_mode):
                pending.append((path, relative + "/"))
            else:
                _add(listing, relative, path, result, with_stamps)
    while pending:
        folder, prefix = pending.pop()
        try:
            with os.scandir(folder) as iterator:
                children = list(iterator)
        except OSError as exc:
            problems.append(f"{prefix.rstrip('/') or '.'}: cannot read folder ({exc.strerror})")
            continue
        for child in children:
            relative = prefix + child.name
            try:
                if child.is_dir(follow_symlinks=False):
                    pending.append((child.path, relative + "/"))
                else:
                    _add(
                        listing,
                        relative,
                        child.path,
                        child.stat(follow_symlinks=False),
                        with_stamps,
                    )
            except FileNotFoundError:
                pass  # removed while listed: it is not there
            except OSError as exc:
                problems.append(f"{relative}: cannot stat ({exc.strerror})")
    return problems


def _through_link(root: Path, relative: str, listing: Listing) -> bool:
    """Whether a folder on the way to ``relative`` is a symbolic link (then it is listed as
    one, so it shows, and nothing behind it is)."""
    parts = relative.split("/")
    for end in range(1, len(parts)):
        parent = "/".join(parts[:end])
        path = os.path.join(root, parent)
        if os.path.islink(path):
            listing.links[parent] = os.readlink(path)
            return True
    return False


def _add(listing: Listing, relative: str, path: str, result: os.stat_result, stamps: bool) -> None:
    mode = result.st_mode
    if stat.S_ISREG(mode):
        listing.files.append((relative, result.st_size))
        if stamps:
            listing.stamps[relative] = Stamp.of(result)
    elif stat.S_ISLNK(mode):
        listing.links[relative] = os.readlink(path)
    else:
        listing.others[relative] = kind_of(mode)


# --- hashing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Task:
    start: int  # index of the first file
    stop: int
    size: int  # bytes, as listed


def _tasks(sizes: Sequence[int], workers: int) -> list[_Task]:
    """Consecutive runs of files, each up to ``BATCH_BYTES`` (less on a small tree shared by
    several ``workers``) or ``BATCH_FILES``."""
    batch_bytes = BATCH_BYTES
    if workers > 1:
        batch_bytes = min(BATCH_BYTES, sum(sizes) // (workers * TASKS_PER_WORKER) + 1)
    tasks: list[_Task] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (total + size > batch_bytes or index - start >= BATCH_FILES):
            tasks.append(_Task(start, index, total))
            start, total = index, 0
        total += size
    if start < len(sizes):
        tasks.append(_Task(start, len(sizes), total))
    return tasks


class _Stopped(Exception):
    """Ends a hashing task early because another failed or the user interrupted."""


class _Meter:
    """Counts files and bytes from any thread; calls ``progress`` at most ten times a
    second, from the thread that calls ``poll``, and once at the end."""

    def __init__(self, progress: ProgressCallback | None, files: int, total: int) -> None:
        self.progress = progress
        self.files_total = files
        self.bytes_total = total
        self.files = 0
        self.bytes = 0
        self.last = 0.0
        self.lock = threading.Lock()

    def add(self, files: int = 0, bytes_done: int = 0) -> None:
        with self.lock:
            self.files += files
            self.bytes += bytes_done

    def poll(self) -> None:
        now = time.monotonic()
        if self.progress is not None and now - self.last >= 0.1:
            self.last = now
            self.emit()

    def emit(self) -> None:
        if self.progress is not None:
            self.progress(HashProgress(self.files, self.files_total, self.bytes, self.bytes_total))


def hash_files(
    root: Path,
    files: Sequence[tuple[str, int]],
    algorithm: str = "md5",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[list[bytes], list[int]]:
    """Digest and bytes read of each of ``files`` (``(relative path, expected size)``), in order.

    ``workers`` threads (default: one per core) share the work; hashlib and file reads
    release the GIL on 1 MiB blocks, so threads scale like processes without a process's
    start-up cost. Sizes only shape the tasks and the progress; the returned sizes are what
    was read, ``NOT_READ`` for a path that is gone or is no longer a regular file (it is not
    opened). Raises ``OSError`` for a file that cannot be read.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    workers = max(1, workers or os.cpu_count() or 1)
    paths = [path for path, _ in files]
    sizes = [size for _, size in files]
    meter = _Meter(progress, len(files), sum(sizes))
    meter.emit()
    tasks = sorted(
        _tasks(sizes, workers), key=lambda t: -t.size
    )  # largest first: no idle core at the end
    digests: list[bytes] = [b""] * len(files)
    read = [0] * len(files)
    base = str(root)

    def run(task: _Task, report: Callable[[int], None]) -> None:
        chunk = paths[task.start : task.stop]
        done, got = hash_paths(base, chunk, algorithm, report, REPORT_BYTES)
        digests[task.start : task.stop] = done
        read[task.start : task.stop] = got
        meter.add(files=task.stop - task.start)

    stop = threading.Event()  # set when one task fails or on Ctrl-C: the others end soon

    def count(n: int) -> None:
        if stop.is_set():
            raise _Stopped
        meter.add(bytes_done=n)

    def count_and_show(n: int) -> None:
        meter.add(bytes_done=n)
        meter.poll()

    if workers == 1 or len(tasks) <= 1:
        for task in tasks:
            run(task, count_and_show)
    else:
        with ThreadPoolExecutor(min(workers, len(tasks)), thread_name_prefix="hash") as pool:
            futures = [pool.submit(run, task, count) for task in tasks]
            try:
                pending = set(futures)
                while pending:
                    done, pending = wait(pending, timeout=0.1, return_when=FIRST_EXCEPTION)
                    meter.poll()
                    for future in done:
                        future.result()  # raises the task's error here
            except BaseException:
                stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    meter.emit()
    return digests, read


# --- writing and reading ------------------------------------------------------------------


def default_manifest_name(entry_name: str, algorithm: str = "md5") -> str:
    """``<entry>.<algorithm>.manifest.tsv``."""
    return f"{entry_name}.{algorithm}.manifest.tsv"


def build_manifest(
    root: Path,
    out: Path,
    algorithm: str = "md5",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """Hash every file under ``root`` and write the manifest to ``out`` atomically.

    ``out`` must not lie inside ``root`` (``check_destination``); the rest is
    ``manifest_of``'s, whose errors this raises too.
    """
    check_destination(out, root)
    manifest = manifest_of(root, out, algorithm, workers, progress)
    write_manifest(manifest, out)
    return manifest


def check_destination(out: Path, root: Path) -> None:
    """Raise ``ManifestError`` when a manifest at ``out`` would lie inside ``root``."""
    if _is_inside(out, root):
        raise ManifestError(out, None, f"the manifest must not be written inside {root}")


def manifest_of(
    root: Path,
    out: Path,
    algorithm: str = "md5",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> Manifest:
    """The manifest of every file under ``root``, to be written to ``out`` (named in errors).

    Symbolic links are recorded as links. Raises ``TreeError`` when the tree cannot be listed
    or holds a FIFO, socket or device (named; none is opened), ``OSError`` when a file cannot
    be read, and ``ManifestError`` when a file changes while it is hashed.
    """
    listing = list_tree(root)
    if listing.others:
        raise TreeError(
            root,
            [
                f"{path}: a {kind}, not a file; a manifest lists files and links only"
                for path, kind in sorted(listing.others.items())
            ],
        )
    files = listing.files
    digests, read = hash_files(root, files, algorithm, workers, progress)
    records = [ManifestRecord(path, 0, "", target) for path, target in listing.links.items()]
    for (path, size), digest, actual in zip(files, digests, read, strict=True):
        if actual == NOT_READ:
            raise ManifestError(
                out,
                None,
                f"{path} was removed or replaced while the tree was hashed; build the manifest "
                "when nothing is writing to the tree",
            )
        if actual != size:
            raise ManifestError(
                out,
                None,
                f"{path} changed while it was hashed ({size:,} bytes listed, {actual:,} read); "
                "build the manifest when nothing is writing to the tree",
            )
        records.append(ManifestRecord(path, size, digest.hex()))
    return Manifest(algorithm, sorted(records))


def write_manifest(manifest: Manifest, out: Path) -> None:
    """Write ``manifest`` to ``out`` (gzip when it ends in ``.gz``) via a temporary file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(handle, "wb") as raw:
            if out.name.endswith(".gz"):
                with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
                    _write_text(manifest, packed)
            else:
                _write_text(manifest, raw)
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_text(manifest: Manifest, stream: IO[bytes]) -> None:
    total = sum(record.size for record in manifest.records)
    text = io.TextIOWrapper(stream, encoding="utf-8", newline="\n")
    text.write(
        f"# {MAGIC} {VERSION} algorithm={manifest.algorithm} "
        f"files={len(manifest.records)} bytes={total}\n"
    )
    text.writelines(
        f"{record.digest}\t{record.size}\t{escape_path(record.path)}\n"
        if record.link is None
        else f"{LINK}\t{escape_path(record.link)}\t{escape_path(record.path)}\n"
        for record in manifest.records
    )
    text.flush()
    text.detach()  # the caller closes the byte stream


def read_manifest(path: Path) -> Manifest:
    """Parse a manifest (plain or gzip, told by its first bytes).

    Raises ``ManifestError`` naming ``path`` and the line for anything malformed: a missing
    or unknown header, a bad field, a path that escapes the root, a duplicate path, or a
    line count that disagrees with the header.
    """
    try:
        with open_file(path) as raw:  # a FIFO given as the manifest is refused, not waited on
            packed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            unpacked = gzip.GzipFile(fileobj=raw, mode="rb") if packed else nullcontext(raw)
            with unpacked as stream, _gc_paused():
                data = stream.read()
                return _parse_bulk(path, data) or _parse(path, _lines(path, io.BytesIO(data)))
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ManifestError(path, None, f"cannot read: {reason}") from None


#: Where a path in a manifest's body has an empty, '.' or '..' component or starts with '/'
#: (only paths hold a '/', and a path follows the line's second TAB).
_BAD_PATH_IN_BODY = re.compile(r"[\t/]\.{0,2}[/\n]")


def _parse_bulk(path: Path, data: bytes) -> Manifest | None:
    """The usual manifest, parsed by whole-text regular expressions (a few times faster than
    line by line): UTF-8 with LF endings, lowercase digests, no comment, link, escape,
    duplicate or bad path, and the count the header promises. None for anything else, which
    ``_parse`` reads line by line and reports with its line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    header, _, body = text.partition("\n")
    if not body.endswith("\n") or "\r" in text or "\\" in text or "\x00" in text:
        return None
    parsed = _parse_header(path, header)
    algorithm = parsed["algorithm"]
    hex_length = 2 * DIGEST_SIZES[algorithm]
    # anchored at line starts and ending at a line's end, each match is a whole line
    found = re.findall(rf"^([0-9a-f]{{{hex_length}}})\t([0-9]+)\t([^\t\n]+)\n", body, re.M)
    if len(found) != body.count("\n") or _has_bad_path(body):
        return None
    digests, sizes, paths = zip(*found, strict=True)
    if len(set(paths)) != len(paths) or parsed.get("files", len(paths)) != len(paths):
        return None
    return Manifest(algorithm, list(map(ManifestRecord, paths, map(int, sizes), digests)))


def _has_bad_path(body: str) -> bool:
    # substring tests are quick; the expression runs only when one of them finds a candidate
    candidates = ("/.", "\t.", "//", "\t/", "/\n")
    return any(c in body for c in candidates) and _BAD_PATH_IN_BODY.search(body) is not None


def _lines(path: Path, stream: IO[bytes]) -> Iterator[tuple[int, str]]:
    """Numbered lines without their line ending; each decoded alone, so errors have a line."""
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(
                path, number, f"not valid UTF-8 (byte {exc.start + 1} of the line)"
            ) from None
        yield number, line.removesuffix("\n").removesuffix("\r")


def _parse(path: Path, lines: Iterator[tuple[int, str]]) -> Manifest:
    first = next(lines, None)
    if first is None:
        raise ManifestError(path, 1, f"empty file; a manifest starts with '# {MAGIC} {VERSION}'")
    header = _parse_header(path, first[1])
    algorithm = header["algorithm"]
    hex_length = 2 * DIGEST_SIZES[algorithm]
    # Lines that match this need no further check but the path's; others are diagnosed.
    well_formed = re.compile(rf"([0-9a-fA-F]{{{hex_length}}})\t([0-9]+)\t([^\t]+)\Z")
    records: list[ManifestRecord] = []
    seen: dict[str, int] = {}
    last = 1
    for number, line in lines:
        last = number
        match = well_formed.match(line)
        target = None
        if match is None:
            if not line or line.startswith("#"):
                continue
            match = _LINK_LINE.match(line)
            if match is None:
                raise ManifestError(path, number, _diagnose(line, algorithm, hex_length))
            try:
                target = unescape_path(match.group(1))
            except ValueError as exc:
                raise ManifestError(path, number, str(exc)) from None
            digest, size_text, escaped = "", "0", match.group(2)
        else:
            digest, size_text, escaped = match.groups()
        try:
            relative = unescape_path(escaped) if "\\" in escaped else escaped
        except ValueError as exc:
            raise ManifestError(path, number, str(exc)) from None
        if _BAD_PATH.search(relative) or "\x00" in relative:
            raise ManifestError(
                path,
                number,
                f"path {escaped[:200]!r} must be relative to the root, without empty, '.' "
                "or '..' components",
            )
        if relative in seen:
            raise ManifestError(
                path, number, f"{escaped[:200]!r} is listed twice (first on line {seen[relative]})"
            )
        seen[relative] = number
        records.append(ManifestRecord(relative, int(size_text), digest.lower(), target))
    expected = header.get("files")
    if expected is not None and expected != len(records):
        raise ManifestError(
            path,
            last,
            f"the header promises {expected:,} files but {len(records):,} are listed; "
            "the manifest is incomplete (a partial copy?) — copy or build it again",
        )
    return Manifest(algorithm, records)


def _parse_header(path: Path, line: str) -> dict[str, Any]:
    words = line.split()
    if words[:2] != ["#", MAGIC] or len(words) < 3:
        raise ManifestError(
            path, 1, f"not a vcat manifest: the first line must start with '# {MAGIC} {VERSION}'"
        )
    if words[2] != str(VERSION):
        raise ManifestError(
            path, 1, f"manifest version {words[2]!r} is not supported (this vcat reads {VERSION})"
        )
    values = dict(word.partition("=")[::2] for word in words[3:])
    algorithm = values.get("algorithm")
    if algorithm not in DIGEST_SIZES:
        raise ManifestError(
            path, 1, f"header names algorithm {algorithm!r}; expected one of md5, sha256"
        )
    header: dict[str, Any] = {"algorithm": algorithm}
    for key in ("files", "bytes"):
        if key in values:
            if not values[key].isascii() or not values[key].isdigit():
                raise ManifestError(path, 1, f"header {key}={values[key]!r} is not a number")
            header[key] = int(values[key])
    return header


def _diagnose(line: str, algorithm: str, hex_length: int) -> str:
    """What is wrong with a line that is not ``digest TAB size TAB path``."""
    fields = line.split("\t")
    if fields[0] == LINK:
        return f"a link is '{LINK} TAB <target> TAB <path>', with a target and a path"
    if len(fields) != 3:
        return f"expected 3 tab-separated fields (digest, size, path), found {len(fields)}"
    digest, size_text, _ = fields
    if len(digest) != hex_length or not _HEX.match(digest):
        return f"{digest[:80]!r} is not a {algorithm} digest ({hex_length} hex digits)"
    if not size_text.isascii() or not size_text.isdigit():
        return f"size {size_text[:40]!r} is not a whole number"
    return "the path is empty"


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cycle collector while building millions of small objects that form no
    cycles; it would otherwise rescan them over and over (about 40% of a large parse)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _is_inside(path: Path, folder: Path) -> bool:
    return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))


# --- checking -----------------------------------------------------------------------------

#: How hard ``compare`` looks: ``full`` hashes every file of the right size; ``changed``
#: hashes only those whose stamp differs from the one given (or that have none); ``stamps``
#: hashes nothing and lists stamp-changed files in ``ManifestReport.changed``.
CheckMode = Literal["full", "changed", "stamps"]


def check_manifest(
    root: Path,
    manifest: Path,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ManifestReport:
    """Compare the files under ``root`` with ``manifest``, hashing every file of the right size.

    Each listed file is ``ok``, ``missing``, ``truncated`` (smaller), ``oversized`` (larger),
    ``checksum_mismatch`` (same size, other content) or ``not_a_file`` (a link, FIFO, socket
    or device stands there; it is not opened); a wrong file that starts like an HTML page
    (and is not named ``.html``) is ``html_instead_of_file``. Paths on disk the manifest
    does not list are ``unexpected``. Links are compared by target, never followed.
    Raises ``ManifestError`` for a malformed manifest and ``TreeError`` when the tree cannot
    be listed.
    """
    parsed = read_manifest(manifest)
    listing = list_tree(root)
    return compare(root, manifest, parsed, listing, workers=workers, progress=progress)


def compare(
    root: Path,
    manifest: Path,
    expected: Manifest,
    listing: Listing,
    *,
    stamps: Mapping[str, Stamp] | None = None,
    mode: CheckMode = "full",
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ManifestReport:
    """Check ``listing`` (of ``root``) against ``expected`` (read from ``manifest``), as
    ``check_manifest`` does; with ``stamps`` (listing made ``with_stamps``) and a ``mode``
    other than ``full``, a file whose stamp is unchanged is ok without being read.
    ``ManifestReport.proven`` holds the stamps of the files found ok, to record for next time.
    """
    report = ManifestReport(root, manifest, expected.algorithm)
    on_disk = dict(listing.files)
    links = dict(listing.links)
    others = dict(listing.others)
    known = stamps or {}
    to_hash: list[ManifestRecord] = []
    for record in expected.records:
        if record.link is not None:
            _compare_link(report, record, on_disk, links, others)
            continue
        actual = on_disk.pop(record.path, None)
        if actual is None:
            report.failures.append(_absent(record, links, others))
        elif actual != record.size:
            kind = FailureClass.TRUNCATED if actual < record.size else FailureClass.OVERSIZED
            report.failures.append(_classify(root, record, kind, actual, None))
        elif (
            mode != "full"
            and record.path in known
            and listing.stamps.get(record.path) == known[record.path]
        ):
            report.counts["ok"] += 1
            report.proven[record.path] = known[record.path]
        elif mode == "stamps":
            report.changed.append(record.path)
        else:
            to_hash.append(record)
    for path, size in on_disk.items():
        report.failures.append(FileResult(path, FailureClass.UNEXPECTED, None, size))
    for path, target in links.items():
        report.failures.append(
            FileResult(path, FailureClass.UNEXPECTED, detail=f"symbolic link to {target}")
        )
    for path, kind in others.items():
        report.failures.append(FileResult(path, FailureClass.NOT_A_FILE, detail=f"a {kind}"))
    digests, read = hash_files(
        root, [(r.path, r.size) for r in to_hash], expected.algorithm, workers, progress
    )
    report.hashed = len(to_hash)
    report.bytes_hashed = sum(size for size in read if size > 0)
    for record, digest, size in zip(to_hash, digests, read, strict=True):
        hexdigest = digest.hex()
        if size == NOT_READ:  # replaced or removed since it was listed
            report.failures.append(_absent(record, *_kinds_now(root, record.path)))
        elif size != record.size:  # changed since it was listed
            kind = FailureClass.TRUNCATED if size < record.size else FailureClass.OVERSIZED
            report.failures.append(_classify(root, record, kind, size, hexdigest))
        elif hexdigest != record.digest:
            kind = FailureClass.CHECKSUM_MISMATCH
            report.failures.append(_classify(root, record, kind, size, hexdigest))
        else:
            report.counts["ok"] += 1
            stamp = listing.stamps.get(record.path)
            if stamp is not None:
                report.proven[record.path] = stamp
    report.failures.sort(key=lambda result: result.path)
    for failure in report.failures:
        report.counts[failure.failure] += 1
    report.changed.sort()
    return report


def _compare_link(
    report: ManifestReport,
    record: ManifestRecord,
    on_disk: dict[str, int],
    links: dict[str, str],
    others: dict[str, str],
) -> None:
    expected = f"symbolic link to {record.link}"
    target = links.pop(record.path, None)
    if target is None:
        if record.path in on_disk:
            size = on_disk.pop(record.path)
            report.failures.append(
                FileResult(
                    record.path, FailureClass.NOT_A_FILE, None, size, expected, detail="a file"
                )
            )
        elif record.path in others:
            kind = others.pop(record.path)
            report.failures.append(
                FileResult(
                    record.path, FailureClass.NOT_A_FILE, None, None, expected, detail=f"a {kind}"
                )
            )
        else:
            report.failures.append(
                FileResult(
                    record.path,
                    FailureClass.MISSING,
                    expected_digest=expected,
                    detail=f"{expected} expected",
                )
            )
    elif target != record.link:
        report.failures.append(
            FileResult(
                record.path,
                FailureClass.CHECKSUM_MISMATCH,
                expected_digest=expected,
                actual_digest=f"symbolic link to {target}",
            )
        )
    else:
        report.counts["ok"] += 1


def _absent(record: ManifestRecord, links: dict[str, str], others: dict[str, str]) -> FileResult:
    """A listed file that is not a regular file on disk: a link or special file, or nothing."""
    if record.path in links:
        detail = f"symbolic link to {links.pop(record.path)}"
    elif record.path in others:
        detail = f"a {others.pop(record.path)}"
    else:
        return FileResult(record.path, FailureClass.MISSING, record.size, None, record.digest)
    return FileResult(
        record.path, FailureClass.NOT_A_FILE, record.size, None, record.digest, detail=detail
    )


def _kinds_now(root: Path, relative: str) -> tuple[dict[str, str], dict[str, str]]:
    """``(links, others)`` holding ``relative`` as it is now, for ``_absent``."""
    path = root / relative
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return {}, {}
    if stat.S_ISLNK(mode):
        return {relative: os.readlink(path)}, {}
    return {}, {relative: kind_of(mode)}


def _classify(
    root: Path, record: ManifestRecord, kind: FailureClass, size: int, digest: str | None
) -> FileResult:
    """``kind``, or ``html_instead_of_file`` when the wrong file is a saved web page."""
    if not record.path.lower().endswith(_HTML_NAMES):
        try:
            with open(open_regular(root / record.path), "rb") as stream:
                if looks_like_html(stream.read(1024)):
                    kind = FailureClass.HTML_INSTEAD_OF_FILE
        except OSError:
            pass  # the size or digest already says it is wrong
    return FileResult(record.path, kind, record.size, size, record.digest, digest)
