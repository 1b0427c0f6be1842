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
- Lines starting with ``#`` after the header are comments.

Without vcat (for paths that need no escape)::

    tail -n +2 M | cut -f1,3 | sed 's/\\t/  /' | (cd ROOT && md5sum -c)

Hashing runs in worker processes: small files go many to a task so the cost of a task is
spread, large files one to a task, and the largest tasks are started first so no core idles
at the end. Each worker reads with one reused 1 MiB buffer, as ``vcat.hashing`` does.
"""

from __future__ import annotations

import gc
import gzip
import hashlib
import io
import multiprocessing
import os
import re
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

from vcat.failures import ADVICE, FailureClass, file_is_html
from vcat.hashing import ALGORITHMS, BLOCK_SIZE

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
#: Workers report bytes read this often, so a progress bar moves inside a large file.
REPORT_BYTES = 16 << 20

_HTML_NAMES = (".html", ".htm", ".xhtml")
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
    digest: str  # lowercase hex


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

    @property
    def ok(self) -> bool:
        return not self.failures


# --- paths --------------------------------------------------------------------------------

_TO_ESCAPE = re.compile("[\\\\\t\n\r\udc80-\udcff]")
_ESCAPED = re.compile(r"\\(x[0-9a-fA-F]{2}|.?)", re.DOTALL)
_SIMPLE_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}
_SIMPLE_UNESCAPES = {value[1]: key for key, value in _SIMPLE_ESCAPES.items()}


def escape_path(path: str) -> str:
    """``path`` as a manifest writes it (see the module docstring)."""

    def replace(match: re.Match[str]) -> str:
        char = match.group()
        return _SIMPLE_ESCAPES.get(char) or f"\\x{ord(char) - 0xDC00:02x}"

    return _TO_ESCAPE.sub(replace, path)


def unescape_path(text: str) -> str:
    """The path a manifest line names; ``ValueError`` for an unknown escape."""

    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _SIMPLE_UNESCAPES:
            return _SIMPLE_UNESCAPES[code]
        if len(code) == 3:
            byte = int(code[1:], 16)
            return chr(byte) if byte < 0x80 else chr(0xDC00 + byte)
        raise ValueError(f"unknown escape '\\{code}' (escapes are \\\\, \\t, \\n, \\r, \\xNN)")

    return _ESCAPED.sub(replace, text)


def walk_files(root: Path) -> list[tuple[str, int]]:
    """Every file under ``root`` as ``(relative path, size)``, sorted by path.

    Symbolic links are followed; ``TreeError`` when a folder cannot be read, a link is
    broken or leads back to an enclosing folder.
    """
    if not root.is_dir():
        raise TreeError(root, [f"{root} is not a folder" if root.exists() else "no such folder"])
    with _gc_paused():
        files, problems = _walk(root)
    if problems:
        raise TreeError(root, sorted(problems))
    files.sort()
    return files


def _walk(root: Path) -> tuple[list[tuple[str, int]], list[str]]:
    files: list[tuple[str, int]] = []
    problems: list[str] = []
    pending: list[tuple[str, str, tuple[str, ...]]] = [(str(root), "", (os.path.realpath(root),))]
    while pending:
        folder, prefix, ancestors = pending.pop()
        try:
            with os.scandir(folder) as iterator:
                children = list(iterator)
        except OSError as exc:
            problems.append(f"{prefix or '.'}: cannot read folder ({exc.strerror})")
            continue
        for child in children:
            relative = prefix + child.name
            try:
                if child.is_dir():
                    real = (
                        os.path.realpath(child.path)
                        if child.is_symlink()
                        else f"{ancestors[-1]}/{child.name}"
                    )
                    if real in ancestors:
                        problems.append(f"{relative}: symbolic link to an enclosing folder")
                    else:
                        pending.append((child.path, relative + "/", (*ancestors, real)))
                else:
                    files.append((relative, child.stat().st_size))
            except FileNotFoundError:
                problems.append(f"{relative}: broken symbolic link")
            except OSError as exc:
                problems.append(f"{relative}: cannot stat ({exc.strerror})")
    return files, problems


# --- hashing ------------------------------------------------------------------------------

_worker_bytes: Any = None  # the shared byte counter, in worker processes


def _init_worker(counter: Any) -> None:
    global _worker_bytes
    _worker_bytes = counter


def _add_to_shared(count: int) -> None:
    with _worker_bytes.get_lock():
        _worker_bytes.value += count


def _hash_paths(
    root: str, paths: Sequence[str], algorithm: str, report: Callable[[int], None]
) -> tuple[bytes, array]:
    """The digests of ``paths`` (concatenated) and the number of bytes read from each."""
    buffer = bytearray(BLOCK_SIZE)
    view = memoryview(buffer)
    digests: list[bytes] = []
    sizes = array("q")
    unreported = 0
    new = getattr(hashlib, algorithm)
    for relative in paths:
        hasher = new()
        size = 0
        with open(os.path.join(root, relative), "rb", buffering=0) as stream:
            while count := stream.readinto(buffer):
                hasher.update(view[:count])
                size += count
                unreported += count
                if unreported >= REPORT_BYTES:
                    report(unreported)
                    unreported = 0
        digests.append(hasher.digest())
        sizes.append(size)
    report(unreported)
    return b"".join(digests), sizes


def _hash_in_worker(root: str, paths: Sequence[str], algorithm: str) -> tuple[bytes, array]:
    return _hash_paths(root, paths, algorithm, _add_to_shared)


@dataclass(frozen=True)
class _Task:
    start: int  # index of the first file
    stop: int
    size: int  # bytes, as listed


def _tasks(sizes: Sequence[int]) -> list[_Task]:
    """Consecutive runs of files, each up to ``BATCH_BYTES`` or ``BATCH_FILES``."""
    tasks: list[_Task] = []
    start, total = 0, 0
    for index, size in enumerate(sizes):
        if index > start and (total + size > BATCH_BYTES or index - start >= BATCH_FILES):
            tasks.append(_Task(start, index, total))
            start, total = index, 0
        total += size
    if start < len(sizes):
        tasks.append(_Task(start, len(sizes), total))
    return tasks


class _Meter:
    """Calls ``progress`` at most ten times a second, and once at the end."""

    def __init__(self, progress: ProgressCallback | None, files: int, total: int) -> None:
        self.progress = progress
        self.files_total = files
        self.bytes_total = total
        self.files = 0
        self.bytes = 0
        self.last = 0.0

    def update(self, files: int | None = None, bytes_done: int | None = None) -> None:
        self.files = self.files if files is None else files
        self.bytes = self.bytes if bytes_done is None else bytes_done
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

    ``workers`` processes (default: every core) share the work; with one, everything runs
    in this process. Sizes only shape the tasks and the progress; the returned sizes are
    what was read. Raises ``OSError`` for a file that cannot be read.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unsupported algorithm {algorithm!r}; choose one of {ALGORITHMS}")
    workers = max(1, workers or os.cpu_count() or 1)
    paths = [path for path, _ in files]
    sizes = [size for _, size in files]
    meter = _Meter(progress, len(files), sum(sizes))
    meter.emit()
    tasks = _tasks(sizes)
    digest_size = DIGEST_SIZES[algorithm]
    digests = bytearray(len(files) * digest_size)
    read = [0] * len(files)

    def store(task: _Task, result: tuple[bytes, array]) -> None:
        digests[task.start * digest_size : task.stop * digest_size] = result[0]
        read[task.start : task.stop] = result[1]

    if workers == 1 or len(tasks) <= 1:
        done_bytes = 0

        def count(n: int) -> None:
            nonlocal done_bytes
            done_bytes += n
            meter.update(bytes_done=done_bytes)

        for task in tasks:
            store(task, _hash_paths(str(root), paths[task.start : task.stop], algorithm, count))
            meter.update(files=task.stop)
    else:
        _hash_in_pool(root, paths, tasks, algorithm, min(workers, len(tasks)), meter, store)
    meter.emit()
    return [bytes(digests[i : i + digest_size]) for i in range(0, len(digests), digest_size)], read


def _hash_in_pool(
    root: Path,
    paths: list[str],
    tasks: list[_Task],
    algorithm: str,
    workers: int,
    meter: _Meter,
    store: Callable[[_Task, tuple[bytes, array]], None],
) -> None:
    # forkserver, not fork: the caller may be running threads (a progress display).
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    counter = context.Value("q", 0)
    pool = ProcessPoolExecutor(workers, context, initializer=_init_worker, initargs=(counter,))
    finished = [0]  # files of finished tasks, counted by the pool's thread
    lock = threading.Lock()

    def count(files: int) -> Callable[[Future[Any]], None]:
        def done(_: Future[Any]) -> None:
            with lock:
                finished[0] += files

        return done

    try:
        futures: dict[Future[tuple[bytes, array]], _Task] = {}
        for task in sorted(tasks, key=lambda t: -t.size):  # largest first
            future = pool.submit(
                _hash_in_worker, str(root), paths[task.start : task.stop], algorithm
            )
            future.add_done_callback(count(task.stop - task.start))
            futures[future] = task
        # Tasks finish roughly in the order they were queued, so wait for them in that order,
        # waking at least ten times a second to report bytes read inside large files.
        for future, task in futures.items():
            while True:
                try:
                    result = future.result(timeout=0.1)
                except FutureTimeout:
                    result = None
                meter.update(files=finished[0], bytes_done=counter.value)
                if result is not None:
                    break
            store(task, result)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


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

    ``out`` must not lie inside ``root``. Raises ``TreeError`` when the tree cannot be
    listed, ``OSError`` when a file cannot be read, and ``ManifestError`` when a file
    changes size while it is hashed.
    """
    if _is_inside(out, root):
        raise ManifestError(out, None, f"the manifest must not be written inside {root}")
    files = walk_files(root)
    digests, read = hash_files(root, files, algorithm, workers, progress)
    records: list[ManifestRecord] = []
    for (path, size), digest, actual in zip(files, digests, read, strict=True):
        if actual != size:
            raise ManifestError(
                out,
                None,
                f"{path} changed while it was hashed ({size:,} bytes listed, {actual:,} read); "
                "build the manifest when nothing is writing to the tree",
            )
        records.append(ManifestRecord(path, size, digest.hex()))
    manifest = Manifest(algorithm, records)
    write_manifest(manifest, out)
    return manifest


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
        with path.open("rb") as raw:
            packed = raw.read(2) == b"\x1f\x8b"
            raw.seek(0)
            unpacked = gzip.GzipFile(fileobj=raw, mode="rb") if packed else nullcontext(raw)
            with unpacked as stream, _gc_paused():
                return _parse(path, _lines(path, stream))
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ManifestError(path, None, f"cannot read: {reason}") from None


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
        if match is None:
            if not line or line.startswith("#"):
                continue
            raise ManifestError(path, number, _diagnose(line, algorithm, hex_length))
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
        records.append(ManifestRecord(relative, int(size_text), digest.lower()))
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


def check_manifest(
    root: Path,
    manifest: Path,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ManifestReport:
    """Compare the files under ``root`` with ``manifest``.

    Each listed file is ``ok``, ``missing``, ``truncated`` (smaller), ``oversized`` (larger)
    or ``checksum_mismatch`` (same size, other content); a wrong file that starts like an
    HTML page (and is not named ``.html``) is ``html_instead_of_file``. Files on disk the
    manifest does not list are ``unexpected``. Only files of the right size are hashed.
    Raises ``ManifestError`` for a malformed manifest and ``TreeError`` when the tree cannot
    be listed.
    """
    parsed = read_manifest(manifest)
    on_disk = dict(walk_files(root))
    report = ManifestReport(root, manifest, parsed.algorithm)
    to_hash: list[ManifestRecord] = []
    for record in parsed.records:
        actual = on_disk.pop(record.path, None)
        if actual is None:
            report.failures.append(
                FileResult(record.path, FailureClass.MISSING, record.size, None, record.digest)
            )
        elif actual == record.size:
            to_hash.append(record)
        else:
            kind = FailureClass.TRUNCATED if actual < record.size else FailureClass.OVERSIZED
            report.failures.append(_classify(root, record, kind, actual, None))
    for path, size in on_disk.items():
        report.failures.append(FileResult(path, FailureClass.UNEXPECTED, None, size))
    digests, read = hash_files(
        root, [(r.path, r.size) for r in to_hash], parsed.algorithm, workers, progress
    )
    report.bytes_hashed = sum(read)
    for record, digest, size in zip(to_hash, digests, read, strict=True):
        hexdigest = digest.hex()
        if size != record.size:  # changed since it was listed
            kind = FailureClass.TRUNCATED if size < record.size else FailureClass.OVERSIZED
            report.failures.append(_classify(root, record, kind, size, hexdigest))
        elif hexdigest != record.digest:
            kind = FailureClass.CHECKSUM_MISMATCH
            report.failures.append(_classify(root, record, kind, size, hexdigest))
        else:
            report.counts["ok"] += 1
    report.failures.sort(key=lambda result: result.path)
    for failure in report.failures:
        report.counts[failure.failure] += 1
    return report


def _classify(
    root: Path, record: ManifestRecord, kind: FailureClass, size: int, digest: str | None
) -> FileResult:
    """``kind``, or ``html_instead_of_file`` when the wrong file is a saved web page."""
    if not record.path.lower().endswith(_HTML_NAMES):
        try:
            if file_is_html(root / record.path):
                kind = FailureClass.HTML_INSTEAD_OF_FILE
        except OSError:
            pass  # the size or digest already says it is wrong
    return FileResult(record.path, kind, record.size, size, record.digest, digest)
