"""The finished batches of a features run that has not assembled its file yet.

Each batch that finishes is one ``.npz`` file in ``<output>.partial/``, written under a
temporary name and renamed, so a kill never leaves a half-written image where a resumed run
would take it for done: ``names`` (the images, in order), one stacked array per dataset of
their groups (row k belongs to ``names[k]``), ``failures`` (name, reason) of the images that
could not be read, and ``signature`` (what made it). A part of other settings, or one that
cannot be read, is deleted when the run starts again.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

PATTERN = "part-*.npz"
_RESERVED = ("names", "failures", "signature")


def partial_folder(output: Path) -> Path:
    return output.with_name(f"{output.name}.partial")


def remove_partial(output: Path) -> None:
    shutil.rmtree(partial_folder(output), ignore_errors=True)


def write_part(
    folder: Path,
    index: int,
    signature: str,
    groups: Sequence[tuple[str, Mapping[str, NDArray]]],
    failures: Sequence[tuple[str, str]],
) -> Path:
    """One batch's groups (all with the same datasets) and failures as
    ``folder/part-<index>.npz``, whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(groups[0][1]) if groups else []
    if any(sorted(datasets) != keys for _, datasets in groups):
        raise ValueError("the groups of one part must hold the same datasets")
    if any(key in _RESERVED for key in keys):
        raise ValueError(f"a dataset may not be called one of {', '.join(_RESERVED)}")
    arrays = {key: np.stack([np.asarray(d[key]) for _, d in groups]) for key in keys}
    target = folder / f"part-{index:08d}.npz"
    temporary = folder / f".part-{index:08d}.npz.tmp"
    with open(temporary, "wb") as stream:
        np.savez(
            stream,
            names=np.array([name for name, _ in groups], dtype=str),
            failures=np.array(list(failures), dtype=str).reshape(-1, 2),
            signature=np.array(signature),
            **arrays,
        )
    os.replace(temporary, target)
    return target


@dataclass
class Finished:
    """Where each finished image lies (part, row), and the recorded failures."""

    where: dict[str, tuple[Path, int]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)


def finished(folder: Path, signature: str) -> Finished:
    """The parts in ``folder`` made with ``signature``; others, unreadable ones and leftover
    temporary files are deleted."""
    result = Finished()
    if not folder.is_dir():
        return result
    for stray in folder.glob(".part-*.tmp"):
        stray.unlink()
    for part in sorted(folder.glob(PATTERN)):
        try:
            with np.load(part) as data:
                same = str(data["signature"]) == signature
                names = [str(name) for name in data["names"]] if same else []
                failures = data["failures"].tolist() if same else []
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
            same = False
        if not same:
            part.unlink()
            continue
        for row, name in enumerate(names):
            result.where.setdefault(name, (part, row))
        for name, reason in failures:
            result.failures.setdefault(name, reason)
    return result


def next_index(folder: Path) -> int:
    """A part number no part in ``folder`` uses."""
    numbers = [int(path.stem.split("-")[1]) for path in folder.glob(PATTERN)]
    return 1 + max(numbers, default=-1)


class PartReader:
    """Groups read back from parts, keeping the last part loaded (images are asked for in
    name order, which is the parts' order)."""

    def __init__(self) -> None:
        self._path: Path | None = None
        self._arrays: dict[str, NDArray] = {}

    def group(self, path: Path, row: int) -> dict[str, NDArray]:
        if path != self._path:
            with np.load(path) as data:
                self._arrays = {k: data[k] for k in data.files if k not in _RESERVED}
            self._path = path
        return {key: array[row] for key, array in self._arrays.items()}


def group_reader(where: Mapping[str, tuple[Path, int]]) -> Callable[[str], dict[str, NDArray]]:
    """``name -> its group's datasets`` over the parts ``where`` points into."""
    reader = PartReader()
    return lambda name: reader.group(*where[name])
