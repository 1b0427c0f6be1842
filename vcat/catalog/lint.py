"""Checks that span fields, entries and files: what the schema alone cannot see.

Every check returns ``Problem``s located at the line the user has to change. Errors make
``vcat catalog lint`` fail; warnings describe upstream defects recorded on purpose.
"""

from __future__ import annotations

import difflib
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from vcat.catalog.fields import Reference, approximate_bytes, parse_checksum
from vcat.catalog.loader import Catalog, Entry
from vcat.catalog.schema import DatasetEntry, EntryKind, Source
from vcat.catalog.yaml_source import Location
from vcat.problems import Problem, Severity, display_path
from vcat.urls import download_identity

#: A stated size further than this from the exact one suggests the wrong file.
SIZE_TOLERANCE = 0.15


def lint_catalog(catalog: Catalog) -> list[Problem]:
    """Every problem in the catalog, load errors included, sorted by file and line."""
    problems = list(catalog.problems)
    problems += check_duplicate_names(catalog)
    names = catalog.by_name()
    for entry in catalog.entries:
        problems += check_parts(entry)
        problems += check_references(entry, names)
    problems += check_shared_urls(catalog)
    return sorted(set(problems))


@dataclass(frozen=True)
class LocatedSource:
    entry: Entry
    loc: Location
    source: Source


def sources_of(entry: Entry) -> Iterator[LocatedSource]:
    """Every downloadable file an entry records, with its location in the entry."""
    for loc, source in entry.spec.located_sources():
        yield LocatedSource(entry, loc, source)


def part_names(entry: Entry) -> set[str]:
    """Names an ``entry:part`` reference may use: sources, weights and subsets."""
    names = {located.source.name for located in sources_of(entry)}
    if isinstance(entry.spec, DatasetEntry):
        names |= {subset.name for subset in entry.spec.subsets}
    return names


def check_duplicate_names(catalog: Catalog) -> Iterator[Problem]:
    first: dict[str, Entry] = {}
    for entry in catalog.entries:
        earlier = first.setdefault(entry.name, entry)
        if earlier is not entry:
            yield entry.problem(
                (),
                f"duplicate entry name {entry.name!r}: also defined in "
                f"{display_path(earlier.path)}; names are unique across datasets and models",
            )


def check_parts(entry: Entry) -> Iterator[Problem]:
    """Names unique within the entry, and internal links (subset -> source) resolvable."""
    spec = entry.spec
    groups: dict[str, list[tuple[Location, str]]] = defaultdict(list)
    for located in sources_of(entry):
        groups["part"].append(((*located.loc, "name"), located.source.name))
    if isinstance(spec, DatasetEntry):
        groups["part"] += [(("subsets", i, "name"), s.name) for i, s in enumerate(spec.subsets)]
        groups["split"] = [(("splits", i, "name"), s.name) for i, s in enumerate(spec.splits)]
        groups["prepare"] = [(("prepare", i, "name"), s.name) for i, s in enumerate(spec.prepare)]
    for what, named in groups.items():
        seen: dict[str, Location] = {}
        why = "; sources and subsets share one namespace" if what == "part" else ""
        for loc, name in named:
            if name in seen:
                yield entry.problem(
                    loc,
                    f"{what} name {name!r} is used twice in this entry (first on line "
                    f"{entry.line(*seen[name])}){why}",
                )
            seen.setdefault(name, loc)
    for located in sources_of(entry):
        yield from check_size(entry, located)
    if isinstance(spec, DatasetEntry):
        yield from check_dataset_links(entry, spec)


def check_size(entry: Entry, located: LocatedSource) -> Iterator[Problem]:
    source = located.source
    if source.size is None or source.size_published is None:
        return
    stated = approximate_bytes(source.size_published)
    if abs(stated - source.size) > SIZE_TOLERANCE * source.size:
        yield entry.problem(
            (*located.loc, "size_published"),
            f"published size {source.size_published!r} is far from the exact size "
            f"{source.size:,} bytes: is one of them for another file?",
            Severity.WARNING,
        )


def check_dataset_links(entry: Entry, spec: DatasetEntry) -> Iterator[Problem]:
    sources = {s.name: s for s in spec.sources}
    for i, subset in enumerate(spec.subsets):
        if subset.list_file is None:
            continue
        source = sources.get(subset.list_file.source)
        if source is None:
            yield entry.problem(
                ("subsets", i, "list_file", "source"),
                f"subset {subset.name!r} lists its files in source {subset.list_file.source!r}, "
                f"which this entry does not define{_suggest(subset.list_file.source, sources)}",
            )
        elif subset.list_file.member is not None and source.archive == "none":
            yield entry.problem(
                ("subsets", i, "list_file", "member"),
                f"'member' names a file inside an archive, but source {source.name!r} is "
                "not an archive",
            )
    subsets = {s.name for s in spec.subsets}
    for i, split in enumerate(spec.splits):
        if split.subset is not None and split.subset not in subsets:
            yield entry.problem(
                ("splits", i, "subset"),
                f"split {split.name!r} refers to subset {split.subset!r}, which this entry "
                f"does not define{_suggest(split.subset, subsets)}",
            )
    if not spec.sources and spec.layout is None:
        yield entry.problem(
            ("access",),
            "this dataset has neither 'sources' to download nor a 'layout' to verify a manual "
            "download against; add one of them",
        )
    if spec.access.kind == "public" and not spec.sources:
        yield entry.problem(
            ("access", "kind"),
            "a public dataset must list its 'sources'; use 'manual' when a person or "
            "another tool obtains it",
        )


def references_of(entry: Entry) -> Iterator[tuple[Location, str, EntryKind | None]]:
    """Every reference in an entry, with the kind of entry it must point at (None: any)."""
    spec = entry.spec
    if isinstance(spec, DatasetEntry):
        for i, step in enumerate(spec.prepare):
            for j, ref in enumerate(step.inputs):
                yield ("prepare", i, "inputs", j), ref, None
        return
    if spec.architecture.backbone is not None:
        yield ("architecture", "backbone"), spec.architecture.backbone, "model"
    for i, ref in enumerate(spec.trained_on):
        yield ("trained_on", i), ref, "dataset"
    if spec.produced_by is not None:
        for i, ref in enumerate(spec.produced_by.inputs):
            yield ("produced_by", "inputs", i), ref, None
    for i, result in enumerate(spec.published_results):
        yield ("published_results", i, "dataset"), result.dataset, "dataset"


def check_references(entry: Entry, names: dict[str, Entry]) -> Iterator[Problem]:
    for loc, text, expected_kind in references_of(entry):
        ref = Reference.parse(text)
        target = names.get(ref.entry)
        if target is None:
            yield entry.problem(
                loc,
                f"reference {text!r}: no catalog entry named {ref.entry!r}"
                f"{_suggest(ref.entry, names)}",
            )
            continue
        if expected_kind is not None and target.kind != expected_kind:
            yield entry.problem(
                loc,
                f"reference {text!r} must name a {expected_kind}, but "
                f"{ref.entry!r} is a {target.kind}",
            )
        parts = part_names(target)
        if ref.part is not None and ref.part not in parts:
            yield entry.problem(
                loc,
                f"reference {text!r}: entry {ref.entry!r} has no source or subset named "
                f"{ref.part!r}{_suggest(ref.part, parts)}",
            )


def check_shared_urls(catalog: Catalog) -> Iterator[Problem]:
    """One link, several records: conflicting checksums are errors, any sharing a warning.

    A conflict that every record involved acknowledges with ``known_issue`` (an upstream
    guide that really links different files to one URL) is reported as a warning.
    """
    groups: dict[str, list[LocatedSource]] = defaultdict(list)
    for entry in catalog.entries:
        for located in sources_of(entry):
            groups[download_identity(located.source.url)].append(located)
    for group in groups.values():
        if len(group) < 2:
            continue
        digests = {
            str(c) for c in (parse_checksum(x.source.checksum) for x in group) if c is not None
        }
        acknowledged = all(x.source.known_issue for x in group)
        for located in group:
            others = ", ".join(_describe_source(other) for other in group if other is not located)
            if len(digests) > 1:
                severity = Severity.WARNING if acknowledged else Severity.ERROR
                message = (
                    f"URL is registered with {len(digests)} different checksums (also used by "
                    f"{others}): at most one of them can be right"
                )
                if not acknowledged:
                    message += "; fix the URL, or record the upstream defect in 'known_issue'"
            else:
                severity = Severity.WARNING
                message = f"download link shared with {others}: one link should give one file"
            yield located.entry.problem((*located.loc, "url"), message, severity)


def _describe_source(located: LocatedSource) -> str:
    where = f"{located.entry.path.name}:{located.entry.line(*located.loc, 'url')}"
    return f"{located.entry.name}:{located.source.name} ({where})"


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""
