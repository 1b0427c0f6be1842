"""Many small files as a few large WebDataset tar shards with an index.

DVC handles a few large files far faster than hundreds of thousands of small ones, so stage
outputs that hold many images are written as shards. A shard folder holds:

``shard-000000.tar``, ``shard-000001.tar``, ...
    Plain tars in the WebDataset layout: a sample is a run of consecutive members
    ``<key>.<ext>`` (one per file of the sample, extensions sorted), so ``webdataset`` and
    timm's ``wds`` readers load them as they are. Members are owned by 0:0, mode 644, time 0:
    the bytes depend only on the keys, extensions, contents and the shard limits.
``index.json``
    Written last, so its presence means the folder is complete (layout ``vcat.shards/1``,
    described in :func:`ShardIndex.dumps`): where every sample and member lies, for random
    access by key with one read.

A shard receives samples in the order they are given until the next one would exceed
``max_count`` samples or ``max_bytes`` bytes (a sample larger than ``max_bytes`` gets a shard of
its own); it is written under a hidden temporary name and renamed when sealed. Each sealed
shard is appended to a progress journal, so a run that stops part-way (a crash, Ctrl-C) is
resumed by running it again with the same samples and limits: the sealed shards are kept,
the samples in them are skipped (a sample given as a callable is not even produced), the
unfinished shard is written again, and the result is byte-identical to an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from vcat.regular import kind_of, open_regular

INDEX_NAME = "index.json"
INDEX_FORMAT = "vcat.shards/1"
PROGRESS_NAME = ".shards-progress.jsonl"
PROGRESS_FORMAT = "vcat.shards.progress/1"
SHARD_PATTERN = re.compile(r"shard-(\d{6})\.tar")
DEFAULT_MAX_COUNT = 10_000
DEFAULT_MAX_BYTES = 1 << 30
NAME_MAX = 255  # bytes in one name (ext4, XFS, btrfs, NTFS, APFS)
PATH_MAX = 4000  # bytes in a member path, leaving room for the folder it is unpacked into
_BLOCK = tarfile.BLOCKSIZE
_RECORD = tarfile.RECORDSIZE
_END_OF_ARCHIVE = 2 * _BLOCK
_COPY_CHUNK = 1 << 20
# How webdataset splits a member name into key and extension (tariterators.base_plus_ext).
_WDS_NAME = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")

Payload = bytes | bytearray | memoryview | Path
Sample = Mapping[str, Payload]
SampleSource = Sample | Callable[[], Sample]


class ShardError(Exception):
    """A shard folder, its index or the samples given to it are unusable; says what to do."""


def shard_name(number: int) -> str:
    return f"shard-{number:06d}.tar"


@dataclass(frozen=True)
class ShardInfo:
    name: str
    samples: int
    bytes: int
    md5: str


@dataclass(frozen=True)
class SampleLocation:
    """Where one sample lies: its shard, the byte range of its tar records (headers and
    padded data of all its members) and each member's data range."""

    shard: int
    offset: int
    size: int
    members: dict[str, tuple[int, int]]

    def to_json(self) -> list[object]:
        members = {ext: [offset, size] for ext, (offset, size) in self.members.items()}
        return [self.shard, self.offset, self.size, members]

    @classmethod
    def from_json(cls, value: list[object]) -> SampleLocation:
        shard, offset, size, members = value
        assert isinstance(shard, int) and isinstance(offset, int) and isinstance(size, int)
        assert isinstance(members, dict)
        return cls(shard, offset, size, {ext: (o, s) for ext, (o, s) in members.items()})


@dataclass
class ShardIndex:
    """The contents of ``index.json``: shards in order, and every sample by key."""

    max_count: int
    max_bytes: int
    shards: list[ShardInfo] = field(default_factory=list)
    samples: dict[str, SampleLocation] = field(default_factory=dict)

    @property
    def member_count(self) -> int:
        return sum(len(location.members) for location in self.samples.values())

    def dumps(self) -> str:
        """The ``vcat.shards/1`` JSON, one sample per line::

            {"format": "vcat.shards/1", "max_count": 10000, "max_bytes": 1073741824,
             "counts": {"shards": 1, "samples": 2, "members": 3, "bytes": 10240},
             "shards": [{"name": "shard-000000.tar", "samples": 2, "bytes": 10240,
                         "md5": "..."}],
             "samples": {
              "a/0001": [0, 0, 2048, {"jpg": [512, 1000], "json": [2048, 80]}],
              ...}}

        A sample is ``[shard number, offset, size, {ext: [data offset, data size]}]``: its
        tar records span ``size`` bytes from ``offset`` in shard number ``shard`` (an index
        into ``shards``), and member ``<key>.<ext>`` holds the ``data size`` bytes at
        ``data offset``. ``bytes`` count whole shard files (including tar padding).
        """
        head = {
            "format": INDEX_FORMAT,
            "max_count": self.max_count,
            "max_bytes": self.max_bytes,
            "counts": {
                "shards": len(self.shards),
                "samples": len(self.samples),
                "members": self.member_count,
                "bytes": sum(shard.bytes for shard in self.shards),
            },
            "shards": [shard.__dict__ for shard in self.shards],
        }
        lines = [json.dumps(head)[:-1] + ', "samples": {']
        items = [
            f" {json.dumps(key)}: {json.dumps(location.to_json(), separators=(',', ':'))}"
            for key, location in self.samples.items()
        ]
        lines.append(",\n".join(items))
        lines.append("}}\n")
        return "\n".join(lines)

    @classmethod
    def load(cls, path: Path) -> ShardIndex:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            if document.get("format") != INDEX_FORMAT:
                raise ValueError(f"format is {document.get('format')!r}, not {INDEX_FORMAT!r}")
            index = cls(int(document["max_count"]), int(document["max_bytes"]))
            index.shards = [ShardInfo(**shard) for shard in document["shards"]]
            index.samples = {
                key: SampleLocation.from_json(value) for key, value in document["samples"].items()
            }
        except (OSError, ValueError, KeyError, TypeError, AssertionError) as exc:
            raise ShardError(
                f"{path}: not a readable shard index ({exc}); rebuild the shard folder"
            ) from None
        return index


def check_member_name(key: str, ext: str) -> str:
    """``<key>.<ext>`` after checking that it is a safe relative path that webdataset splits
    back into this key and extension; raises ShardError naming the problem."""
    if not isinstance(key, str) or not isinstance(ext, str):
        raise ShardError(f"sample key and extension must be strings: {key!r}, {ext!r}")
    name = f"{key}.{ext}"
    parts = key.split("/")
    if not key or key.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ShardError(f"sample key {key!r} is not a relative path without '.', '..' or '//'")
    if "\\" in name or any(ord(character) < 32 for character in name):
        raise ShardError(f"member {name!r}: control characters and '\\' are not allowed")
    encoded = [len(part.encode("utf-8", "surrogateescape")) for part in name.split("/")]
    if max(encoded) > NAME_MAX or sum(encoded) + len(encoded) > PATH_MAX:
        shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}..."
        raise ShardError(
            f"member {shown}: longer than a file system allows ({NAME_MAX} bytes per "
            f"name, {PATH_MAX} per path), so it could not be unpacked; shorten it"
        )
    if "." in parts[-1]:
        raise ShardError(
            f"sample key {key!r}: its last part has a '.', which webdataset would read as the "
            "start of the extension"
        )
    split = _WDS_NAME.match(name)
    if not ext or split is None or split.groups() != (key, ext):
        raise ShardError(f"member {name!r} does not split into key {key!r} and extension {ext!r}")
    return name


def _tar_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _finished_size(size: int) -> int:
    """A shard's file size once the end-of-archive blocks and record padding are added."""
    return -(-(size + _END_OF_ARCHIVE) // _RECORD) * _RECORD


@dataclass
class _Member:
    ext: str
    header: bytes
    payload: Payload
    size: int

    @property
    def record_size(self) -> int:
        return len(self.header) + _padded(self.size)


class _OpenShard:
    """The shard being written: a hidden partial file that becomes the shard when sealed."""

    def __init__(self, folder: Path, number: int) -> None:
        self.number = number
        self.final = folder / shard_name(number)
        self.partial = folder / f".{self.final.name}.partial"
        self.stream: BinaryIO = self.partial.open("wb")
        self.md5 = hashlib.md5()
        self.offset = 0
        self.samples: dict[str, SampleLocation] = {}

    def _write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")  # counts bytes whatever the buffer's item size
        self.stream.write(view)
        self.md5.update(view)
        self.offset += view.nbytes

    def add(self, key: str, members: list[_Member]) -> None:
        start = self.offset
        locations: dict[str, tuple[int, int]] = {}
        for member in members:
            self._write(member.header)
            locations[member.ext] = (self.offset, member.size)
            if isinstance(member.payload, Path):
                self._copy(member.payload, member.size)
            else:
                self._write(member.payload)
            self._write(bytes(_padded(member.size) - member.size))
        self.samples[key] = SampleLocation(self.number, start, self.offset - start, locations)

    def _copy(self, path: Path, size: int) -> None:
        copied = 0
        with open_regular(path) as source:  # never waits on a FIFO swapped in since
            while chunk := source.read(_COPY_CHUNK):
                self._write(chunk)
                copied += len(chunk)
        if copied != size:
            raise ShardError(f"{path} changed while it was packed ({size} bytes, then {copied})")

    def seal(self) -> ShardInfo:
        self._write(bytes(_finished_size(self.offset) - self.offset))
        self.stream.flush()
        os.fsync(self.stream.fileno())
        self.stream.close()
        os.replace(self.partial, self.final)
        return ShardInfo(self.final.name, len(self.samples), self.offset, self.md5.hexdigest())

    def discard(self) -> None:
        try:
            self.stream.close()  # on a full disk its last flush fails too
        finally:
            self.partial.unlink(missing_ok=True)


class ShardWriter:
    """Packs samples (``{ext: bytes or Path}``, by key) into WebDataset shards in ``out_dir``.

    Use as a context manager, or call :meth:`close` to write ``index.json``. Samples are
    stored in the order given; keys must be unique. With ``overwrite`` the folder's shards
    and index are removed first; otherwise an interrupted run is resumed (see the module
    docstring) and a complete folder is only checked against the samples given. Samples that
    differ from those of the run being resumed (another key at the same position, other
    extensions or sizes, more or fewer samples) or other limits are a ShardError.
    """

    def __init__(
        self,
        out_dir: Path,
        *,
        max_count: int = DEFAULT_MAX_COUNT,
        max_bytes: int = DEFAULT_MAX_BYTES,
        overwrite: bool = False,
    ) -> None:
        if max_count < 1 or max_bytes < 1:
            raise ValueError(f"max_count and max_bytes must be positive: {max_count}, {max_bytes}")
        self.out_dir = out_dir
        self.index = ShardIndex(max_count, max_bytes)
        out_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            self._clear()
        self._complete = False  # index.json is there and matches its shards
        self._ended = False  # the last kept shard was sealed because the samples ended
        self._replay = self._resume()
        self._replayed = 0
        self._shard: _OpenShard | None = None
        self._closed = False

    @property
    def progress_path(self) -> Path:
        return self.out_dir / PROGRESS_NAME

    @property
    def resumed_samples(self) -> int:
        """Samples kept from an earlier run (they are skipped when given again)."""
        return len(self._replay)

    def _clear(self) -> None:
        """Remove what a writer puts in the folder; other files stay."""
        for path in self.out_dir.iterdir():
            name = path.name
            partial = name.startswith(".shard-") and name.endswith(".partial")
            if partial or SHARD_PATTERN.fullmatch(name) or name in (INDEX_NAME, PROGRESS_NAME):
                path.unlink()

    def _resume(self) -> list[str]:
        """Keys of the samples an earlier run already sealed into shards, in order."""
        index_path = self.out_dir / INDEX_NAME
        if index_path.exists():
            done = ShardIndex.load(index_path)
            self._check_limits(done.max_count, done.max_bytes, index_path)
            self._complete = True
        elif self.progress_path.exists():
            done = self._read_progress()
        else:
            return []
        for number, shard in enumerate(done.shards):
            path = self.out_dir / shard.name
            if shard.name != shard_name(number) or not path.is_file():
                break
            if path.stat().st_size != shard.bytes:
                break
            self.index.shards.append(shard)
        kept = len(self.index.shards)
        if kept < len(done.shards):
            # a shard is gone or cut: rebuild from there
            self._complete = self._ended = False
        self.index.samples = {
            key: location for key, location in done.samples.items() if location.shard < kept
        }
        if not self._complete:
            self._start_progress()  # a clean journal: no record cut short stays in it
        return list(self.index.samples)

    def _read_progress(self) -> ShardIndex:
        path = self.progress_path
        done = ShardIndex(self.index.max_count, self.index.max_bytes)
        with path.open(encoding="utf-8") as lines:
            try:
                head = json.loads(next(lines))
            except (StopIteration, ValueError):
                return done  # cut while its first line was written: nothing was sealed
            if head.get("format") != PROGRESS_FORMAT:
                raise ShardError(f"{path}: not a shard progress journal; remove it")
            self._check_limits(head["max_count"], head["max_bytes"], path)
            for line in lines:
                try:
                    record = json.loads(line)
                    shard = ShardInfo(**record["shard"])
                    samples = {
                        key: SampleLocation.from_json(value) for key, value in record["samples"]
                    }
                except (ValueError, KeyError, TypeError, AssertionError):
                    break  # a record cut short by the interruption: that shard is rewritten
                done.shards.append(shard)
                done.samples.update(samples)
                self._ended = bool(record.get("last"))
        return done

    def _check_limits(self, max_count: int, max_bytes: int, path: Path) -> None:
        if (max_count, max_bytes) != (self.index.max_count, self.index.max_bytes):
            raise ShardError(
                f"{path} was written with max_count={max_count}, max_bytes={max_bytes}, not "
                f"{self.index.max_count}, {self.index.max_bytes}: use the same limits, or "
                "overwrite to rebuild the folder"
            )

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self.close()
        elif self._shard is not None:
            self._shard.discard()  # sealed shards and the journal stay, for the next run
            self._shard = None

    def add(self, key: str, sample: SampleSource) -> None:
        """Add one sample; a callable is called only if the sample still has to be written."""
        if self._closed:
            raise ShardError(f"{self.out_dir}: add after close")
        if self._replayed < len(self._replay):
            self._skip(key, sample)
            return
        if key in self.index.samples or (self._shard is not None and key in self._shard.samples):
            raise ShardError(f"sample key {key!r} given twice")
        if self._complete or self._ended:
            raise ShardError(
                f"{self.out_dir} holds {len(self.index.samples)} samples that ended a run, and "
                f"more are given (next {key!r}): the samples changed: overwrite to rebuild"
            )
        members = self._members(key, sample() if callable(sample) else sample)
        size = sum(member.record_size for member in members)
        shard = self._shard
        if shard is not None and (
            len(shard.samples) >= self.index.max_count
            or _finished_size(shard.offset + size) > self.index.max_bytes
        ):
            self._seal(last=False)
            shard = None
        if shard is None:
            if not self.progress_path.exists():
                self._start_progress()
            shard = self._shard = _OpenShard(self.out_dir, len(self.index.shards))
        shard.add(key, members)

    def _skip(self, key: str, sample: SampleSource) -> None:
        expected = self._replay[self._replayed]
        if key != expected:
            raise ShardError(
                f"{self.out_dir}: sample {self._replayed} is {key!r} here but was {expected!r} "
                "in the run being resumed; the samples changed: overwrite to rebuild"
            )
        if not callable(sample):
            kept = self.index.samples[key].members
            given = {ext: _payload_size(payload) for ext, payload in sample.items()}
            if given != {ext: size for ext, (_, size) in kept.items()}:
                raise ShardError(
                    f"{self.out_dir}: sample {key!r} has other files or sizes than in the run "
                    "being resumed; the samples changed: overwrite to rebuild"
                )
        self._replayed += 1

    def _members(self, key: str, sample: Sample) -> list[_Member]:
        if not sample:
            raise ShardError(f"sample {key!r} has no files")
        members = []
        for ext in sorted(sample):
            name = check_member_name(key, ext)
            size = _payload_size(sample[ext])
            members.append(_Member(ext, _tar_header(name, size), sample[ext], size))
        return members

    def _start_progress(self) -> None:
        """A new journal listing the shards kept so far; the folder stops being complete."""
        (self.out_dir / INDEX_NAME).unlink(missing_ok=True)
        head = {
            "format": PROGRESS_FORMAT,
            "max_count": self.index.max_count,
            "max_bytes": self.index.max_bytes,
        }
        _write_atomic(self.progress_path, json.dumps(head) + "\n")
        by_shard: dict[int, dict[str, SampleLocation]] = {}
        for key, location in self.index.samples.items():
            by_shard.setdefault(location.shard, {})[key] = location
        for number, shard in enumerate(self.index.shards):
            last = self._ended and number == len(self.index.shards) - 1
            self._journal(shard, by_shard.get(number, {}), last=last)

    def _journal(
        self, shard: ShardInfo, samples: Mapping[str, SampleLocation], *, last: bool
    ) -> None:
        record = {
            "shard": shard.__dict__,
            "last": last,
            "samples": [[key, location.to_json()] for key, location in samples.items()],
        }
        with self.progress_path.open("a", encoding="utf-8") as journal:
            journal.write(json.dumps(record, separators=(",", ":")) + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def _seal(self, *, last: bool) -> None:
        """Seal the open shard; ``last``: because the samples ended, not because it is full."""
        assert self._shard is not None
        shard, self._shard = self._shard, None
        try:
            info = shard.seal()
        except BaseException:
            shard.discard()
            raise
        self.index.shards.append(info)
        self.index.samples.update(shard.samples)
        self._journal(info, shard.samples, last=last)

    def close(self) -> ShardIndex:
        """Seal the last shard, remove shards of earlier runs beyond it, write ``index.json``
        and drop the journal; returns the index."""
        if self._closed:
            return self.index
        if self._replayed < len(self._replay):
            missing = self._replay[self._replayed]
            raise ShardError(
                f"{self.out_dir}: the run being resumed had {len(self._replay)} samples in "
                f"sealed shards, this one gives {self._replayed} (next would be {missing!r}): "
                "the samples changed: overwrite to rebuild"
            )
        if self._shard is not None:
            self._seal(last=True)
        names = {shard.name for shard in self.index.shards}
        for path in self.out_dir.iterdir():
            if SHARD_PATTERN.fullmatch(path.name) and path.name not in names:
                path.unlink()
        index_path = self.out_dir / INDEX_NAME
        if not self._complete:
            _write_atomic(index_path, self.index.dumps())
        self.progress_path.unlink(missing_ok=True)
        self._closed = True
        return self.index


def _payload_size(payload: Payload) -> int:
    if isinstance(payload, Path):
        return payload.stat().st_size
    if isinstance(payload, bytes | bytearray | memoryview):
        return memoryview(payload).nbytes
    raise ShardError(f"a sample's file must be bytes or a Path, not {type(payload).__name__}")


def _write_atomic(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def _tree_files(tree: Path) -> list[Path]:
    """Every file under ``tree``, sorted; a ShardError names the first entry that is not a
    regular file or folder (a link, a FIFO, a device: never opened) or a folder that cannot
    be listed, since packing around it would lose it silently."""

    def unlisted(error: OSError) -> None:
        raise ShardError(f"{error.filename}: cannot list the folder ({error.strerror})")

    files = []
    for folder, dirs, names in os.walk(tree, onerror=unlisted):
        for name in [*dirs, *names]:
            path = Path(folder) / name
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                raise ShardError(
                    f"{path}: a symbolic link; only regular files can be packed: put the file "
                    "itself there"
                )
            kind = kind_of(mode)
            if name in names and kind is not None:
                raise ShardError(
                    f"{path}: {kind}; only regular files can be packed: remove it from the tree"
                )
            if name in names:
                files.append(path)
    return sorted(files)


def pack_tree(
    tree: Path,
    out_dir: Path,
    *,
    max_count: int = DEFAULT_MAX_COUNT,
    max_bytes: int = DEFAULT_MAX_BYTES,
    overwrite: bool = False,
) -> ShardIndex:
    """Every file under ``tree`` into shards in ``out_dir``: ``a/b.jpg`` and ``a/b.json`` are
    the files of sample ``a/b``, samples in key order. A file whose name has no extension
    (webdataset could not read it) is a ShardError naming it."""
    if not tree.is_dir():
        raise ShardError(f"{tree} is not a folder")
    samples: dict[str, dict[str, Path]] = {}
    for path in _tree_files(tree):
        relative = path.relative_to(tree).as_posix()
        split = _WDS_NAME.match(relative)
        if split is None:
            raise ShardError(
                f"{path}: a file in a shard needs a name of the form <key>.<ext>; rename it"
            )
        key, ext = split.groups()
        samples.setdefault(key, {})[ext] = path
    with ShardWriter(
        out_dir, max_count=max_count, max_bytes=max_bytes, overwrite=overwrite
    ) as writer:
        for key in sorted(samples):
            writer.add(key, samples[key])
    return writer.index


class ShardReader:
    """Random access to a complete shard folder by key, through its ``index.json``."""

    def __init__(self, folder: Path) -> None:
        index_path = folder / INDEX_NAME
        if not index_path.is_file():
            raise ShardError(
                f"{folder} has no {INDEX_NAME}: it is not a complete shard folder (the run "
                "that writes it did not finish; run it again)"
            )
        self.folder = folder
        self.index = ShardIndex.load(index_path)
        self._descriptors: dict[int, int] = {}

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for descriptor in self._descriptors.values():
            os.close(descriptor)
        self._descriptors.clear()

    def __len__(self) -> int:
        return len(self.index.samples)

    def __contains__(self, key: object) -> bool:
        return key in self.index.samples

    def keys(self) -> list[str]:
        """Every sample key, in shard order."""
        return list(self.index.samples)

    @property
    def shard_paths(self) -> list[Path]:
        return [self.folder / shard.name for shard in self.index.shards]

    def _descriptor(self, number: int) -> int:
        if number not in self._descriptors:
            shard = self.index.shards[number]
            path = self.folder / shard.name
            descriptor = os.open(path, os.O_RDONLY)
            size = os.fstat(descriptor).st_size
            if size != shard.bytes:
                os.close(descriptor)
                raise ShardError(
                    f"{path} is {size} bytes, the index says {shard.bytes}: the folder is "
                    "damaged or mixed with another build; restore it (dvc checkout) or rebuild"
                )
            self._descriptors[number] = descriptor
        return self._descriptors[number]

    def _location(self, key: str) -> SampleLocation:
        try:
            return self.index.samples[key]
        except KeyError:
            raise KeyError(f"no sample {key!r} in {self.folder}") from None

    def read(self, key: str) -> dict[str, bytes]:
        """The files of sample ``key`` as ``{ext: bytes}``, with one read of its records."""
        location = self._location(key)
        records = os.pread(self._descriptor(location.shard), location.size, location.offset)
        if len(records) != location.size:
            raise ShardError(f"{self.folder / self.index.shards[location.shard].name} is short")
        view = memoryview(records)
        return {
            ext: bytes(view[offset - location.offset : offset - location.offset + size])
            for ext, (offset, size) in location.members.items()
        }

    def read_member(self, key: str, ext: str) -> bytes:
        """The file ``<key>.<ext>``."""
        location = self._location(key)
        try:
            offset, size = location.members[ext]
        except KeyError:
            raise KeyError(
                f"sample {key!r} has no {ext!r} (it has {sorted(location.members)})"
            ) from None
        data = os.pread(self._descriptor(location.shard), size, offset)
        if len(data) != size:
            raise ShardError(f"{self.folder / self.index.shards[location.shard].name} is short")
        return data

    def __iter__(self) -> Iterator[tuple[str, dict[str, bytes]]]:
        """Every sample as ``(key, {ext: bytes})``, in shard order."""
        for key in self.index.samples:
            yield key, self.read(key)


def list_keys(folder: Path) -> list[str]:
    """Every sample key of the shard folder, in shard order."""
    return ShardReader(folder).keys()


def read_sample(folder: Path, key: str) -> dict[str, bytes]:
    """The files of one sample as ``{ext: bytes}``."""
    with ShardReader(folder) as reader:
        return reader.read(key)


def unpack_shards(folder: Path, dest: Path, *, overwrite: bool = False) -> int:
    """Every member of the shards as a plain file tree at ``dest`` (``<key>.<ext>``), for
    loaders that want files; returns the number of files.

    The tree is built in a hidden folder beside ``dest`` and renamed onto it when complete;
    an interrupted unpack is resumed there (each file is renamed into place once written,
    so files present are complete). An existing ``dest`` is replaced only with ``overwrite``.
    """
    if dest.exists() and not overwrite:
        raise ShardError(f"{dest} exists; remove it or pass overwrite to replace it")
    staging = dest.with_name(f".{dest.name}.unpacking")
    count = 0
    with ShardReader(folder) as reader:
        for key, location in reader.index.samples.items():
            files = None
            for ext, (_, size) in location.members.items():
                target = staging / check_member_name(key, ext)
                count += 1
                if target.is_file() and target.stat().st_size == size:
                    continue
                files = files or reader.read(key)
                target.parent.mkdir(parents=True, exist_ok=True)
                partial = target.with_name(f".{target.name}.partial")
                try:
                    partial.write_bytes(files[ext])
                    os.replace(partial, target)
                finally:
                    partial.unlink(missing_ok=True)  # a full disk leaves no half file
    staging.mkdir(parents=True, exist_ok=True)  # an empty index gives an empty tree
    if dest.exists():
        old = dest.with_name(f".{dest.name}.replaced")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dest, old)
        os.replace(staging, dest)
        shutil.rmtree(old)
    else:
        os.replace(staging, dest)
    return count
