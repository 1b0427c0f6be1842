"""Sharded runs of a stage: shard I of N does a fixed 1/N of the items; a merge combines.

A stage whose work is a list of items (pairs of a crop list, videos, source images, scenes)
takes ``--shard I/N``. Shard I of N takes the contiguous block of item positions
``[I*T//N, (I+1)*T//N)`` of the T items, by position in the stage's input (never by a hash of
a name, which can change), and writes its *part* to ``<output>.parts/<I>-of-<N>/`` beside
the final output. ``--merge N`` then combines the N parts into the output. Run without
either, the stage processes every item into the output directly.

A part is a shard folder (:mod:`vcat.shards`) holding the samples of its items in item
order, plus whatever per-item records the stage keeps (failures, counts) in files of its
own. The merge reads the parts in order and adds their samples to a ShardWriter with the
stage's limits; since a single run adds the same samples in the same order and shard bytes
depend only on the samples and the limits, the merged output is byte-identical to a single
run for any N. A part is resumable like any shard folder, and the merge of a complete part
copies bytes without decoding anything.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from vcat.shards import INDEX_NAME, ShardIndex, ShardReader, ShardWriter

_SPEC = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")
MAX_SHARDS = 100_000  # part folders are numbered with five digits


class PartsError(Exception):
    """Parts that cannot be merged (missing, unfinished, from another N); says what to run."""


@dataclass(frozen=True)
class ShardSpec:
    """Shard ``index`` (0-based) of ``count``; ``ShardSpec(0, 1)`` is the whole run."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(
                f"shard {self.index}/{self.count} does not exist: write I/N with "
                f"0 <= I < N <= {MAX_SHARDS}, e.g. 0/4 for the first of four"
            )

    @classmethod
    def parse(cls, text: str) -> ShardSpec:
        """``"I/N"`` as a spec; ValueError with a message saying how to write it."""
        match = _SPEC.fullmatch(text)
        if match is None:
            raise ValueError(f"{text!r} is not a shard: write I/N, e.g. 0/4 for the first of four")
        return cls(int(match.group(1)), int(match.group(2)))

    @property
    def whole(self) -> bool:
        return self.count == 1

    def block(self, total: int) -> range:
        """The item positions this shard takes out of ``total``: a contiguous block; the
        blocks of shards 0..N-1 cover ``range(total)`` in order, none overlapping."""
        return range(total * self.index // self.count, total * (self.index + 1) // self.count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


WHOLE = ShardSpec(0, 1)


def parts_root(output: Path) -> Path:
    """The folder beside ``output`` that holds its parts."""
    return output.with_name(f"{output.name}.parts")


def part_folder(output: Path, spec: ShardSpec) -> Path:
    """Where shard ``spec`` of ``output`` writes its part."""
    return parts_root(output) / f"{spec.index:05d}-of-{spec.count:05d}"


def finished_parts(output: Path, count: int) -> list[Path]:
    """The folders of parts 0..count-1 of ``output``, each complete (its ``index.json``
    written last); PartsError naming every part still to run otherwise."""
    folders = [part_folder(output, ShardSpec(index, count)) for index in range(count)]
    missing = [str(i) for i, folder in enumerate(folders) if not (folder / INDEX_NAME).is_file()]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if missing[10:] else "")
        others = sorted(
            path.name
            for path in (parts_root(output).iterdir() if parts_root(output).is_dir() else ())
            if not path.name.endswith(f"-of-{count:05d}")
        )
        hint = f" (parts of other splits are there: {', '.join(others[:4])})" if others else ""
        raise PartsError(
            f"{output}: part(s) {shown} of {count} are not finished{hint}; run the stage with "
            f"--shard I/{count} for each, then merge again"
        )
    return folders


def merge_samples(
    parts: Sequence[Path],
    output: Path,
    *,
    max_count: int,
    max_bytes: int,
    overwrite: bool = False,
) -> ShardIndex:
    """The samples of ``parts``, in order, into the shard folder ``output``.

    Samples are copied as bytes (read only when the output still needs them, so a stopped
    merge resumes like any shard folder). Returns the output's index.
    """
    with ShardWriter(
        output, max_count=max_count, max_bytes=max_bytes, overwrite=overwrite
    ) as writer:
        for part in parts:
            with ShardReader(part) as reader:
                for key in reader.index.samples:
                    writer.add(key, lambda key=key, reader=reader: reader.read(key))
    return writer.index


def concatenate(parts: Iterable[Path], name: str, target: Path) -> None:
    """The files ``<part>/<name>`` (each may be absent: nothing to add), in order, as
    ``target``, written under a temporary name and renamed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as out:
            for part in parts:
                piece = part / name
                if piece.is_file():
                    with piece.open("rb") as stream:
                        shutil.copyfileobj(stream, out)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def remove_parts(output: Path) -> None:
    """Delete the parts of ``output`` (after a merge, or before a single run replaces it)."""
    shutil.rmtree(parts_root(output), ignore_errors=True)


def shard_spec(text: str | None) -> ShardSpec:
    """The ``--shard`` option's value as a spec (WHOLE when not given); typer.BadParameter
    with the way to write it otherwise."""
    if text is None:
        return WHOLE
    try:
        return ShardSpec.parse(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


ShardOption = Annotated[
    str | None,
    typer.Option(
        "--shard",
        metavar="I/N",
        help="Do only shard I of N (0-based) of the items and write it as a part beside the "
        "output; `--merge N` combines the parts.",
    ),
]
MergeOption = Annotated[
    int | None,
    typer.Option(
        "--merge",
        metavar="N",
        min=1,
        max=MAX_SHARDS,
        help="Combine the N finished parts of `--shard I/N` runs into the output.",
    ),
]
