"""Perceptual hashes of many images, in chunks on a pool of processes.

Images come from files under a root or from members of a shard folder; a worker reads its
chunk itself (a path, or a shard folder and member names), so only hashes travel back. An
image that is not usable is a failure with its class (:class:`vcat.images.ImageFailure`), never
a silent gap: the caller decides what a failure means.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vcat.images import ImageFailure, ImageLimits, ImageProblem
from vcat.phash import HASH_BYTES, hash_bytes
from vcat.processes import ordered_map
from vcat.regular import NotRegularFile, out_of_resources, read_regular
from vcat.shards import ShardReader

CHUNK = 64  # images per task: large enough to keep the pool busy, small for the progress bar


@dataclass(frozen=True)
class HashFailure:
    item: str  # the file or member, as the caller names it
    failure: str
    message: str


@dataclass
class Hashed:
    """The hashes of the items that hashed, in the order given, and the items that did not."""

    items: list[str] = field(default_factory=list)
    codes: np.ndarray = field(default_factory=lambda: np.zeros((0, HASH_BYTES), np.uint8))
    failures: list[HashFailure] = field(default_factory=list)


_Chunk = tuple[list[int], bytes, list[tuple[int, str, str]]]


def _file_chunk(root: Path, names: Sequence[str], start: int, limits: ImageLimits) -> _Chunk:
    done: list[int] = []
    codes: list[np.ndarray] = []
    failed: list[tuple[int, str, str]] = []
    for offset, name in enumerate(names):
        path = root / name
        try:
            data = read_regular(path, limits.max_bytes)
            codes.append(hash_bytes(data, path.suffix, limits))
            done.append(start + offset)
        except NotRegularFile as exc:
            failed.append((start + offset, ImageFailure.NOT_A_FILE, f"{exc.kind}"))
        except ImageProblem as exc:
            failed.append((start + offset, exc.failure, exc.reason))
        except OSError as exc:
            if out_of_resources(exc):
                raise
            failed.append((start + offset, ImageFailure.UNREADABLE, exc.strerror or str(exc)))
    return done, b"".join(code.tobytes() for code in codes), failed


def _member_chunk(
    folder: Path, members: Sequence[tuple[str, str]], start: int, limits: ImageLimits
) -> _Chunk:
    done: list[int] = []
    codes: list[np.ndarray] = []
    failed: list[tuple[int, str, str]] = []
    with ShardReader(folder) as reader:
        for offset, (key, ext) in enumerate(members):
            try:
                codes.append(hash_bytes(reader.read_member(key, ext), ext, limits))
                done.append(start + offset)
            except ImageProblem as exc:
                failed.append((start + offset, exc.failure, exc.reason))
    return done, b"".join(code.tobytes() for code in codes), failed


def _chunk_of(
    work: Callable[..., _Chunk],
    source: object,
    limits: ImageLimits,
    chunk: tuple[int, Sequence[object]],
) -> _Chunk:
    start, items = chunk
    return work(source, items, start, limits)


def _run(
    work: Callable[..., _Chunk],
    source: object,
    items: Sequence[object],
    names: Sequence[str],
    jobs: int,
    advance: Callable[[int], None],
    limits: ImageLimits,
) -> Hashed:
    chunks = [(start, items[start : start + CHUNK]) for start in range(0, len(items), CHUNK)]
    results: list[_Chunk] = []
    if jobs <= 1 or len(chunks) <= 1:
        for start, chunk in chunks:
            results.append(work(source, chunk, start, limits))
            advance(len(chunk))
    else:
        one_chunk = functools.partial(_chunk_of, work, source, limits)
        hashed_chunks = ordered_map(one_chunk, chunks, min(jobs, len(chunks)))
        for result, (_, chunk) in zip(hashed_chunks, chunks, strict=True):
            results.append(result)
            advance(len(chunk))
    hashed = Hashed()
    buffers: list[bytes] = []
    for done, codes, failed in results:
        hashed.items += [names[index] for index in done]
        buffers.append(codes)
        hashed.failures += [HashFailure(names[i], str(kind), text) for i, kind, text in failed]
    data = b"".join(buffers)
    hashed.codes = np.frombuffer(data, np.uint8).reshape(-1, HASH_BYTES).copy()
    return hashed


def hash_files(
    root: Path,
    names: Sequence[str],
    *,
    jobs: int = 1,
    advance: Callable[[int], None] = lambda steps: None,
    limits: ImageLimits | None = None,
) -> Hashed:
    """The hashes of the image files ``root/<name>``; items are the names."""
    return _run(_file_chunk, root, names, names, jobs, advance, limits or ImageLimits())


def hash_members(
    folder: Path,
    members: Sequence[tuple[str, str]],
    *,
    jobs: int = 1,
    advance: Callable[[int], None] = lambda steps: None,
    limits: ImageLimits | None = None,
) -> Hashed:
    """The hashes of the members ``(key, ext)`` of the shard folder ``folder``; items are
    ``<key>.<ext>``."""
    names = [f"{key}.{ext}" for key, ext in members]
    return _run(_member_chunk, folder, members, names, jobs, advance, limits or ImageLimits())
