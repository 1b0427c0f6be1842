"""``provenance.tsv``: which source images each pair of a croco-crops output was cut from.

One line per pair written, in index order (the order of ``listing.txt``), after a header::

    stem<TAB>source_1<TAB>source_2
    0<TAB>demo01/images/a.jpg<TAB>demo01/images/b.jpg

The sources are the paths of the pair header exactly as the crop list names them (relative to
the dataset root the stage read; the list format forbids tabs and line breaks in them). The
text depends only on the list, the stem layout and which pairs were written, so a single run
and any ``--shard``/``--merge`` split of it write the same bytes. The leakage audit
(``vcat audit leakage``) reads it to find pairs cut from held-out scenes or images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

from vcat.croco.crops_file import read_headers
from vcat.croco.layout import StemLayout

PROVENANCE_NAME = "provenance.tsv"
PROVENANCE_HEADER = "stem\tsource_1\tsource_2"


class Provenance(NamedTuple):
    """A pair and the two source images it was cut from."""

    stem: str
    source_1: str
    source_2: str


class ProvenanceError(ValueError):
    """A provenance file that cannot be read; the message names the file and line."""


def provenance_lines(crops: Path, layout: StemLayout, stems: Iterable[str]) -> Iterator[str]:
    """The lines (without line endings) for the pairs ``stems`` (in index order) of the
    crop list ``crops``: one pass over the list, walking the stems alongside."""
    yield PROVENANCE_HEADER
    pending = iter(stems)
    wanted = next(pending, None)
    if wanted is None:
        return
    for header in read_headers(crops):
        for crop in header.crops:
            if layout.stem(crop.index) != wanted:
                continue
            yield f"{wanted}\t{header.image1}\t{header.image2}"
            wanted = next(pending, None)
            if wanted is None:
                return
    raise ValueError(f"{crops}: pair {wanted!r} was written but the list has no such crop")


def provenance_text(crops: Path, layout: StemLayout, stems: Iterable[str]) -> str:
    """The whole ``provenance.tsv`` for these stems."""
    return "".join(f"{line}\n" for line in provenance_lines(crops, layout, stems))


def read_provenance(path: Path) -> Iterator[Provenance]:
    """The records of a ``provenance.tsv``, in file order; ProvenanceError naming the file
    and line for a header or line of the wrong shape."""
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="\n") as stream:
        first = stream.readline().rstrip("\n")
        if first != PROVENANCE_HEADER:
            raise ProvenanceError(
                f"{path}:1: expected the header {PROVENANCE_HEADER!r}; is this a croco-crops "
                "provenance.tsv?"
            )
        for number, line in enumerate(stream, start=2):
            fields = line.rstrip("\n").split("\t")
            if len(fields) != 3 or not all(fields):
                raise ProvenanceError(
                    f"{path}:{number}: expected 'stem<TAB>source_1<TAB>source_2', got "
                    f"{len(fields)} field(s); the file is damaged: make the output again"
                )
            yield Provenance(*fields)
