"""Map-style access to a shard folder (:mod:`vcat.shards`) by position.

The folder's ``index.json`` is read once per process into three numpy arrays (shard number,
byte offset and size of every sample's tar records); keys and member names are read back
from the records' tar headers, so no per-sample Python object outlives the reading of the
index. Item ``i`` is ``{"__key__": key, ext: bytes, ...}`` as webdataset gives it (a CroCo
pair's halves are ``1.jpg`` and ``2.jpg``), read with one ``pread`` of its records from a
shard file that the reading process opens on first use.

A folder with a ``provenance.tsv`` (croco-crops) gives each pair's two source images as its
sources for splits; any other folder gives the sample key.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vcat.croco.provenance import PROVENANCE_NAME, ProvenanceError, read_provenance
from vcat.data.base import ArtifactDataset, Item
from vcat.data.errors import DataError
from vcat.shards import INDEX_NAME, ShardError, ShardIndex


@dataclass(frozen=True)
class CompactIndex:
    """Where every sample's records lie, as arrays in shard order."""

    shard_names: tuple[str, ...]
    shard_bytes: tuple[int, ...]
    shard: NDArray[np.int32]
    offset: NDArray[np.int64]
    size: NDArray[np.int64]

    @classmethod
    def of(cls, index: ShardIndex) -> CompactIndex:
        locations = index.samples.values()
        count = len(index.samples)
        return cls(
            tuple(shard.name for shard in index.shards),
            tuple(shard.bytes for shard in index.shards),
            np.fromiter((loc.shard for loc in locations), np.int32, count),
            np.fromiter((loc.offset for loc in locations), np.int64, count),
            np.fromiter((loc.size for loc in locations), np.int64, count),
        )


def load_index(folder: Path) -> ShardIndex:
    """The shard index of ``folder``; DataError when it is not a complete shard folder."""
    path = folder / INDEX_NAME
    if not path.is_file():
        raise DataError(
            f"{folder} has no {INDEX_NAME}: not a complete shard folder (run the stage that "
            "writes it again, or dvc pull it)"
        )
    try:
        return ShardIndex.load(path)
    except ShardError as exc:
        raise DataError(str(exc)) from None


def split_member(name: str) -> tuple[str, str]:
    """``(key, ext)`` of member ``<key>.<ext>``: the extension starts at the first dot of the
    last path component, as webdataset splits it."""
    folder, _, last = name.rpartition("/")
    stem, dot, ext = last.partition(".")
    if not dot or not stem:
        raise DataError(f"shard member {name!r} has no <key>.<ext> name")
    return (f"{folder}/{stem}" if folder else stem), ext


def parse_records(records: bytes) -> Item:
    """The members of one sample's tar records as ``{"__key__": key, ext: bytes}``."""
    item: Item = {}
    with tarfile.open(fileobj=io.BytesIO(records), mode="r:") as archive:
        for member in archive:
            key, ext = split_member(member.name)
            if item.setdefault("__key__", key) != key:
                raise DataError(f"sample records hold two keys: {item['__key__']!r}, {key!r}")
            item[ext] = records[member.offset_data : member.offset_data + member.size]
    return item


class ShardDataset(ArtifactDataset):
    """The samples of a shard folder; see the module docstring."""

    _LAZY = ("_descriptors",)
    _DERIVED = ("_compact",)

    def __init__(self, folder: Path, **options: Any) -> None:
        self._compact: CompactIndex | None = None
        self._descriptors: dict[int, int] | None = None
        super().__init__(folder, **options)

    @property
    def compact(self) -> CompactIndex:
        if self._compact is None:
            self._compact = CompactIndex.of(load_index(self.folder))
        return self._compact

    def _count(self) -> int:
        return len(self.compact.offset)

    def _split_positions(self) -> NDArray[np.int64]:
        # one reading of index.json gives both the arrays and the keys the split needs
        index = load_index(self.folder)
        self._compact = CompactIndex.of(index)
        if self.split is None:
            return np.arange(len(self._compact.offset), dtype=np.int64)
        return self.split.positions(self._sources(list(index.samples)))

    def _sources(self, keys: list[str] | None = None) -> Iterator[Sequence[str]]:
        keys = list(load_index(self.folder).samples) if keys is None else keys
        provenance = self.folder / PROVENANCE_NAME
        if not provenance.is_file():
            yield from ((key,) for key in keys)
            return
        try:
            pairs = {
                record.stem: (record.source_1, record.source_2)
                for record in read_provenance(provenance)
            }
        except ProvenanceError as exc:
            raise DataError(str(exc)) from None
        for key in keys:
            if key not in pairs:
                raise DataError(
                    f"{provenance} does not name the sources of pair {key!r}: the folder is "
                    "damaged or mixed with another build; make it again"
                )
            yield pairs[key]

    def _descriptor(self, number: int) -> int:
        if self._descriptors is None:
            self._descriptors = {}
        if number not in self._descriptors:
            compact = self.compact
            path = self.folder / compact.shard_names[number]
            descriptor = os.open(path, os.O_RDONLY)
            size = os.fstat(descriptor).st_size
            if size != compact.shard_bytes[number]:
                os.close(descriptor)
                raise DataError(
                    f"{path} is {size} bytes, the index says {compact.shard_bytes[number]}: the "
                    "folder is damaged or mixed with another build; restore it (dvc checkout)"
                )
            self._descriptors[number] = descriptor
        return self._descriptors[number]

    def _read(self, position: int) -> Item:
        compact = self.compact
        number = int(compact.shard[position])
        offset, size = int(compact.offset[position]), int(compact.size[position])
        records = os.pread(self._descriptor(number), size, offset)
        if len(records) != size:
            raise DataError(f"{self.folder / compact.shard_names[number]} is cut short")
        return parse_records(records)

    def close(self) -> None:
        """Close the shard files this process opened."""
        if self._descriptors and self._opened_by == os.getpid():
            for descriptor in self._descriptors.values():
                os.close(descriptor)
        self._descriptors = None
