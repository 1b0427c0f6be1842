"""Checks that span fields, entries and files: what the schema alone cannot see.

Every check returns ``Problem``s located at the line the user has to change. Errors make
``vcat catalog lint`` fail; warnings describe upstream defects recorded on purpose.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath

from vcat.catalog.fields import (
    UNPUBLISHED,
    Reference,
    approximate_bytes,
    normalised_path,
    parse_checksum,
)
from vcat.catalog.loader import Catalog, Entry
from vcat.catalog.schema import DatasetEntry, EntryKind, Source
from vcat.catalog.yaml_source import Location
from vcat.localfiles import DEMO_WORLD, LocalPathError, decoded_path
from vcat.problems import Problem, Severity, display_path
from vcat.urls import download_identity

#: A stated size further than this from the exact one suggests the wrong file.
SIZE_TOLERANCE = 0.15


def lint_catalog(catalog: Catalog) -> list[Problem]:
    """Every problem in the catalog, load errors included, sorted by file and line."""
    problems = list(catalog.problems)
    problems += check_duplicate_names(catalog)
    names = catalog.by_name()
    stages = registered_stages()
    for entry in catalog.entries:
        problems += check_parts(entry)
        problems += check_references(entry, names)
        problems += check_stages(entry, stages)
    problems += check_shared_urls(catalog)
    return sorted(set(problems))


def entry_errors(catalog: Catalog, entry: Entry) -> list[Problem]:
    """The errors ``lint_catalog`` reports in ``entry``'s file: what keeps it from being used."""
    return [
        problem
        for problem in lint_catalog(catalog)
        if problem.path == entry.path and problem.severity == Severity.ERROR
    ]


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
        yield from check_provenance(entry, located)
    yield from check_targets(entry)
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


@dataclass(frozen=True)
class _Claim:
    """A path under the root (or in the work area) that one source writes or needs."""

    located: LocatedSource
    path: str  # as written, normalised
    field: str  # the key to point at: filename or unpack_to


def _same_path_key(path: str) -> str:
    # one file on macOS and Windows (case-insensitive) and wherever names are normalised
    return unicodedata.normalize("NFC", path).casefold()


def check_targets(entry: Entry) -> Iterator[Problem]:
    """No two sources write one path: not one file, not one archive in the work area, and no
    file where another source needs a folder (an archive's ``unpack_to``, a file's parent)."""
    files: dict[str, _Claim] = {}
    archives: dict[str, _Claim] = {}
    folders: dict[str, _Claim] = {}
    for located in sources_of(entry):
        source = located.source
        folder = normalised_path(source.unpack_to or ".")
        field = "unpack_to" if source.unpack_to else "filename"
        if source.archive != "none":  # "auto" may turn out to be either
            yield from _claim(entry, archives, _Claim(located, source.filename, "filename"),
                              "keeps its archive in the work area as")  # fmt: skip
            if folder:
                _need_folders(folders, _Claim(located, folder, field))
        if source.archive in ("none", "auto"):
            target = f"{folder}/{source.filename}" if folder else source.filename
            claim = _Claim(located, target, "filename")
            yield from _claim(entry, files, claim, "writes")
            _need_folders(folders, _Claim(located, folder, field))
    for key, claim in files.items():
        other = folders.get(key)
        if other is not None:
            yield entry.problem(
                (*claim.located.loc, claim.field),
                f"source {claim.located.source.name!r} writes a file at {claim.path!r}, where "
                f"source {other.located.source.name!r} (line "
                f"{entry.line(*other.located.loc, other.field)}) needs a folder; give one of "
                "them another 'filename' or 'unpack_to'",
            )


def _claim(entry: Entry, claims: dict[str, _Claim], claim: _Claim, verb: str) -> Iterator[Problem]:
    earlier = claims.setdefault(_same_path_key(claim.path), claim)
    if earlier is not claim:
        yield entry.problem(
            (*claim.located.loc, claim.field),
            f"source {claim.located.source.name!r} {verb} {claim.path!r}, as source "
            f"{earlier.located.source.name!r} (line {entry.line(*earlier.located.loc, 'name')}) "
            "does: one would overwrite the other; give one of them another 'filename' or "
            "'unpack_to'",
        )


def _need_folders(folders: dict[str, _Claim], claim: _Claim) -> None:
    """Record ``claim.path`` and every folder above it as folders that must exist."""
    parts = [part for part in claim.path.split("/") if part]
    for end in range(1, len(parts) + 1):
        folders.setdefault(_same_path_key("/".join(parts[:end])), claim)


def in_demo_world(url: str) -> bool:
    """Whether ``url`` names a file of the demo world, which vcat builds and publishes itself
    (``vcat demo build --record`` records those checksums: their provenance is the build)."""
    if not url.lower().startswith("file:"):
        return False
    try:
        path = PurePosixPath(decoded_path(url))
    except LocalPathError:
        return False
    return not path.is_absolute() and path.parts[: len(DEMO_WORLD.parts)] == DEMO_WORLD.parts


def check_provenance(entry: Entry, located: LocatedSource) -> Iterator[Problem]:
    """A checksum says where it comes from: published upstream, or recorded from a download.

    A warning, not an error: the checksum still verifies the file, so fetching stays allowed.
    """
    source = located.source
    if source.checksum == UNPUBLISHED:
        if source.checksum_source is not None:
            yield entry.problem(
                (*located.loc, "checksum_source"),
                "'checksum_source' describes a checksum, but this one is unpublished; remove it",
                Severity.WARNING,
            )
        return
    if source.checksum_source is None and not in_demo_world(source.url):
        yield entry.problem(
            (*located.loc, "checksum"),
            f"checksum of source {source.name!r} does not say where it comes from: add "
            "'checksum_source' with kind 'published' and 'where', or kind 'recorded' with "
            f"'date' and 'recorded_from' (`vcat catalog record {entry.name}` writes it for a "
            "file you fetched)",
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


#: The entry-point group of pipeline stages (``vcat.stage.ENTRY_POINT_GROUP``, read here
#: without importing ``vcat.stage`` and its OmegaConf).
STAGE_GROUP = "vcat.stages"


def registered_stages() -> frozenset[str]:
    """The names of the pipeline stages this installation provides."""
    return frozenset(ep.name for ep in importlib.metadata.entry_points(group=STAGE_GROUP))


def check_stages(entry: Entry, stages: frozenset[str]) -> Iterator[Problem]:
    """Every stage an entry names (``prepare`` steps, a model's ``produced_by``) exists: an
    entry promises only what ``dvc repro`` can do."""
    spec = entry.spec
    named: list[tuple[Location, str]] = []
    if isinstance(spec, DatasetEntry):
        named = [(("prepare", i, "stage"), step.stage) for i, step in enumerate(spec.prepare)]
    elif spec.produced_by is not None:
        named = [(("produced_by", "stage"), spec.produced_by.stage)]
    known = ", ".join(sorted(stages)) or "none"
    for loc, stage in named:
        if stage not in stages:
            yield entry.problem(
                loc,
                f"stage {stage!r} is not a registered stage (registered: {known})"
                f"{_suggest(stage, stages)}; describe work that no stage does yet in 'notes'",
            )


def check_shared_urls(catalog: Catalog) -> Iterator[Problem]:
    """One link, several records: conflicting checksums are errors, any sharing a warning.

    A conflict that every record involved acknowledges with ``known_issue`` (an upstream
    guide that really links different files to one URL) is reported as a warning.

    Each shared link is described once, at its first record (in path order), which names
    every other record; each other record gets a short problem that names the first. The
    output grows with the number of records, not with the number of pairs of them.
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
        first = group[0]
        everyone_else = ", ".join(_describe_source(other) for other in group[1:])
        pointer = _describe_source(first)
        if len(group) > 2:
            pointer += f" and {len(group) - 2} more record(s), all named there"
        for located in group:
            others = everyone_else if located is first else pointer
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
