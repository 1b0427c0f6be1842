"""Which sources of an entry a fetch asks for: all, those of some subsets, or named ones."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from vcat.catalog.schema import DatasetEntry, EntryBase, Source


class SelectionError(ValueError):
    """A subset or source name the entry does not have, or one that has nothing to fetch."""


def _unknown(kind: str, name: str, entry_name: str, known: Sequence[str]) -> SelectionError:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    listing = ", ".join(known) if known else "none"
    return SelectionError(f"{entry_name} has no {kind} {name!r}{hint} ({kind}s: {listing})")


def select_sources(
    entry_name: str,
    spec: EntryBase,
    subsets: Sequence[str] = (),
    sources: Sequence[str] = (),
) -> list[Source]:
    """The sources to fetch, in catalog order; every source when nothing is named."""
    all_sources = spec.all_sources()
    by_name = {source.name: source for source in all_sources}
    if not all_sources:
        how = ""
        if isinstance(spec, DatasetEntry) and spec.access.instructions:
            how = f" It is obtained by hand: {' '.join(spec.access.instructions.split())}"
        raise SelectionError(
            f"{entry_name} lists no downloadable sources.{how} Then check the tree with "
            f"`vcat verify {entry_name} --root DIR`."
        )
    if not subsets and not sources:
        return all_sources
    wanted: set[str] = set()
    for name in sources:
        if name not in by_name:
            raise _unknown("source", name, entry_name, list(by_name))
        wanted.add(name)
    subset_specs = {s.name: s for s in spec.subsets} if isinstance(spec, DatasetEntry) else {}
    for name in subsets:
        subset = subset_specs.get(name)
        if subset is None:
            raise _unknown("subset", name, entry_name, list(subset_specs))
        if subset.list_file is None:
            raise SelectionError(
                f"subset {name!r} of {entry_name} is made of files under the root "
                f"({', '.join(subset.include)}), not of a source: fetch the entry's sources or "
                f"check the tree with `vcat verify {entry_name}`"
            )
        wanted.add(subset.list_file.source)
    return [source for source in all_sources if source.name in wanted]
