"""A converted path list on disk: the fixed-width paths and the arrays beside them.

A list folder holds

``paths.memmap``
    N entries of ``width`` bytes, headerless, NUL-padded: ``numpy.memmap(dtype='S<width>')``,
    the format the source project's ``MemMapImageListDataset`` reads (width 120);
``n_frames.npy``
    Kinetics lists only: int64 ``(N,)``, the number of frames in each frame folder;
``labels.npy`` and ``classes.txt``
    Lists labelled by parent folder only: int64 ``(N,)``, each path's class index, and the
    class names, one per line in UTF-8, line ``i`` (from 0) naming class ``i``;
``list.json``
    Written last, so its presence means the folder is complete: the format, count and width,
    which of the files above exist, and what the list was made from.

A folder is built under a hidden temporary name beside its final place and renamed into it
when complete. The part that ``--shard I/N`` writes (:mod:`vcat.parts`: ``<output>.parts/
<I>-of-<N>/``) is a list folder of its own lines, labelled against its own classes;
:func:`merge_parts` concatenates the parts' paths and frame counts and maps their labels
onto the classes of the whole list, giving the bytes a single run gives.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from vcat.lists.labels import Labelled, block_labels, combine
from vcat.lists.layout import (
    CLASSES_NAME,
    LABELS_NAME,
    LAYOUT,
    META_NAME,
    N_FRAMES_NAME,
    PATHS_NAME,
    read_meta,
)
from vcat.lists.parsing import Rows
from vcat.parts import PartsError, ShardSpec, part_folder


def _save_int64(path: Path, values: NDArray[np.int64]) -> None:
    np.save(path, np.ascontiguousarray(values, dtype="<i8"), allow_pickle=False)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class ListBuilder:
    """Builds the list folder ``target`` from parsed blocks or finished parts, in order.

    Used as a context manager: the temporary folder is removed when the block raises.
    ``labels`` keeps each path's parent folder as its class.
    """

    def __init__(self, target: Path, width: int, *, frames: bool, labels: bool) -> None:
        self.target = target
        self.width = width
        self.partial = target.with_name(f".{target.name}.partial")
        shutil.rmtree(self.partial, ignore_errors=True)
        self.partial.mkdir(parents=True)
        self.count = 0
        self._paths = (self.partial / PATHS_NAME).open("wb")
        self._frames: list[NDArray[np.int64]] | None = [] if frames else None
        self._labels: list[Labelled] | None = [] if labels else None

    def __enter__(self) -> ListBuilder:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._paths.close()
        if kind is not None:
            shutil.rmtree(self.partial, ignore_errors=True)

    def add(self, rows: Rows, where: Callable[[int], str]) -> None:
        """The paths of ``rows`` (and their frame counts, and labels); ``where(i)`` names row
        ``i`` in errors."""
        self._paths.write(np.ascontiguousarray(rows.rows).data)
        self.count += len(rows)
        if self._frames is not None:
            self._frames.append(
                rows.n_frames if rows.n_frames is not None else np.zeros(len(rows), np.int64)
            )
        if self._labels is not None:
            self._labels.append(block_labels(rows.rows, rows.lengths, where))

    def add_part(self, folder: Path, meta: Mapping[str, Any]) -> None:
        """Everything in the finished part ``folder`` (whose ``list.json`` is ``meta``)."""
        with (folder / PATHS_NAME).open("rb") as stream:
            shutil.copyfileobj(stream, self._paths, 1 << 20)
        self.count += int(meta["count"])
        if self._frames is not None:
            self._frames.append(np.load(folder / N_FRAMES_NAME, allow_pickle=False))
        if self._labels is not None:
            names = (folder / CLASSES_NAME).read_text(encoding="utf-8").splitlines()
            self._labels.append((names, np.load(folder / LABELS_NAME, allow_pickle=False)))

    def finish(
        self, list_format: str, made_from: Mapping[str, Any], **extra: Any
    ) -> dict[str, Any]:
        """Write the arrays and ``list.json`` (with ``extra`` keys), then rename the folder
        into place, replacing what was there; returns the ``list.json`` values."""
        self._paths.close()
        files = {"paths": PATHS_NAME, "n_frames": None, "labels": None, "classes": None}
        meta: dict[str, Any] = {
            "layout": LAYOUT,
            "format": list_format,
            "count": self.count,
            "width": self.width,
            "dtype": f"S{self.width}",
            "made_from": dict(made_from),
            **extra,
        }
        if self._frames is not None:
            frames = np.concatenate(self._frames) if self._frames else np.zeros(0, np.int64)
            _save_int64(self.partial / N_FRAMES_NAME, frames)
            files["n_frames"] = N_FRAMES_NAME
            meta["frames"] = int(frames.sum())
        if self._labels is not None:
            classes, labels = combine(self._labels)
            _save_int64(self.partial / LABELS_NAME, labels)
            text = "".join(f"{name}\n" for name in classes)
            (self.partial / CLASSES_NAME).write_text(text, encoding="utf-8")
            files["labels"], files["classes"] = LABELS_NAME, CLASSES_NAME
            meta["classes"] = len(classes)
        meta["files"] = files
        text = json.dumps(meta, indent=2, sort_keys=True) + "\n"
        (self.partial / META_NAME).write_text(text, encoding="utf-8")
        if self.target.exists() or self.target.is_symlink():
            _remove(self.target)
        os.rename(self.partial, self.target)
        return meta


def finished_parts(output: Path, count: int, made_from: Mapping[str, Any]) -> list[Path]:
    """The folders of parts 0..count-1 of ``output``, each finished from the same list and
    settings; PartsError naming every part still to run otherwise."""
    folders = [part_folder(output, ShardSpec(index, count)) for index in range(count)]
    todo = []
    for index, folder in enumerate(folders):
        meta = read_meta(folder)
        if meta is None or meta.get("made_from") != dict(made_from):
            todo.append(str(index))
    if todo:
        shown = ", ".join(todo[:10]) + (f" and {len(todo) - 10} more" if todo[10:] else "")
        raise PartsError(
            f"{output}: part(s) {shown} of {count} are not finished from this list and these "
            f"settings; run the stage with --shard I/{count} for each, then merge again"
        )
    return folders


def merge_parts(
    output: Path,
    count: int,
    list_format: str,
    width: int,
    made_from: Mapping[str, Any],
    *,
    frames: bool,
    labels: bool,
) -> dict[str, Any]:
    """The finished parts 0..count-1 of ``output`` combined into the list folder ``output``;
    returns its ``list.json`` values."""
    folders = finished_parts(output, count, made_from)
    with ListBuilder(output, width, frames=frames, labels=labels) as builder:
        expected_first = 0
        for folder in folders:
            meta = read_meta(folder) or {}
            first, stop = meta.get("lines", [None, None])
            if first != expected_first:
                raise PartsError(
                    f"{folder}: holds lines from {first}, where {expected_first} was expected; "
                    f"run every --shard I/{count} again"
                )
            builder.add_part(folder, meta)
            expected_first = stop
        return builder.finish(list_format, made_from)
