"""Check a tree on disk against the layout a catalog entry expects.

Globs are relative to the root and matched one path component at a time: ``*``, ``?`` and
``[...]`` never cross ``/`` and do match names starting with ``.``; a ``**`` component matches
zero or more components. Matching is case-sensitive. A rule with no ``count``/``min``/``max``
expects at least one match.

The tree is walked once with ``os.scandir``; a folder is entered only while some rule can
still match beneath it, so unrelated trees cost nothing. Symbolic links that stay inside the
root are followed (a tree may link one part to another); a link back to an enclosing folder,
and a link that leads out of the root, are reported as problems and not followed, so no
check wanders through the rest of the disk. A FIFO, socket or device is a problem too, named
and never opened.

*Extras* are paths no rule accounts for. A path is accounted for when a rule matches it, when
it is a folder on the way to a match, or when it lies inside a folder a ``type: dir`` rule
matched (that rule claims the folder's contents). Only the topmost unaccounted path is
reported: an unexpected folder is one extra, whatever it holds.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Literal

from vcat.catalog.schema import ArchiveKind, DatasetEntry, LayoutRule, Source
from vcat.hashing import kind_of

#: How many extras a report lists; all of them are counted.
EXTRAS_LISTED = 50
#: Deeper than this is a link loop the real-path check missed, not a dataset.
MAX_DEPTH = 256

PathType = Literal["file", "dir"]
Origin = Literal["layout", "source"]


class NoLayout(Exception):
    """The entry declares neither a layout nor sources, so there is nothing to check."""


class RuleStatus(StrEnum):
    OK = "ok"
    MISSING = "missing"  # nothing matched, at least one expected
    TOO_FEW = "too_few"
    TOO_MANY = "too_many"


@dataclass(frozen=True)
class RuleSpec:
    """One expectation: paths matching ``glob`` of ``type``, between ``min`` and ``max``."""

    glob: str
    type: PathType
    min: int
    max: int | None
    origin: Origin = "layout"
    description: str | None = None

    @classmethod
    def of(cls, rule: LayoutRule, origin: Origin = "layout") -> RuleSpec:
        if rule.count is not None:
            low, high = rule.count, rule.count
        elif rule.min is None and rule.max is None:
            low, high = 1, None
        else:
            low, high = rule.min or 0, rule.max
        return cls(rule.glob, rule.type, low, high, origin, rule.description)

    def expected(self) -> str:
        """The bounds in words: ``exactly 90``, ``at least 1``, ``2 to 5``, ``optional``."""
        if self.max is None:
            return f"at least {self.min:,}" if self.min else "optional"
        if self.min == self.max:
            return f"exactly {self.min:,}"
        return f"{self.min:,} to {self.max:,}" if self.min else f"at most {self.max:,}"


@dataclass(frozen=True)
class RuleResult:
    spec: RuleSpec
    found: int

    @property
    def status(self) -> RuleStatus:
        if self.found < self.spec.min:
            return RuleStatus.MISSING if self.found == 0 else RuleStatus.TOO_FEW
        if self.spec.max is not None and self.found > self.spec.max:
            return RuleStatus.TOO_MANY
        return RuleStatus.OK

    @property
    def ok(self) -> bool:
        return self.status == RuleStatus.OK


@dataclass(frozen=True)
class ExtraPath:
    path: str  # relative to the root, with '/'
    type: PathType


@dataclass
class LayoutReport:
    """What a walk found; ``ok`` when every rule's count is in bounds and nothing was
    unreadable. Extras do not make a tree fail (callers decide how strict to be)."""

    root: Path
    derived_from: Literal["layout", "sources"]
    rules: list[RuleResult]
    extras: list[ExtraPath] = field(default_factory=list)
    extra_count: int = 0
    errors: list[str] = field(default_factory=list)
    files: int = 0
    dirs: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors and all(result.ok for result in self.rules)

    @property
    def missing(self) -> list[RuleResult]:
        return [r for r in self.rules if r.status == RuleStatus.MISSING]


def expected_rules(entry: DatasetEntry) -> tuple[list[RuleSpec], Literal["layout", "sources"]]:
    """The rules a tree of ``entry`` must satisfy, and what they come from.

    With a ``layout``, its rules; each source's destination is added as an optional rule, so
    files ``vcat fetch`` places beside a manual tree are accounted for, not extras. Without
    one, the sources' destinations are required: a plain file at ``<unpack_to>/<filename>``,
    an archive as at least one file under ``<unpack_to>`` (the catalog does not list archive
    members; a manifest checks them). Raises ``NoLayout`` when there is neither.
    """
    source_rules = [_source_rule(source) for source in entry.sources]
    if entry.layout is not None:
        optional = [
            RuleSpec(r.glob, r.type, 0, r.max, r.origin, f"{r.description} (optional here)")
            for r in source_rules
        ]
        return [RuleSpec.of(rule) for rule in entry.layout.rules] + optional, "layout"
    if source_rules:
        return source_rules, "sources"
    raise NoLayout("the entry declares no layout and no sources, so there is no tree to check")


def _source_rule(source: Source) -> RuleSpec:
    folder = PurePosixPath(source.unpack_to or ".")
    prefix = "" if str(folder) == "." else glob.escape(str(folder)) + "/"
    if source.archive == ArchiveKind.NONE:
        return RuleSpec(
            prefix + glob.escape(source.filename),
            "file",
            1,
            1,
            "source",
            f"source {source.name!r}",
        )
    return RuleSpec(
        prefix + "**",
        "file",
        1,
        None,
        "source",
        f"files unpacked from source {source.name!r} ({source.filename})",
    )


def check_layout(
    root: Path, entry: DatasetEntry, extras_listed: int = EXTRAS_LISTED
) -> LayoutReport:
    """Walk ``root`` once and check it against ``entry``'s expected rules.

    Raises ``NoLayout`` (see ``expected_rules``), ``FileNotFoundError`` when ``root`` does not
    exist and ``NotADirectoryError`` when it is not a folder.
    """
    specs, derived_from = expected_rules(entry)
    return check_rules(root, specs, derived_from, extras_listed)


def check_rules(
    root: Path,
    specs: Sequence[RuleSpec],
    derived_from: Literal["layout", "sources"] = "layout",
    extras_listed: int = EXTRAS_LISTED,
) -> LayoutReport:
    """Walk ``root`` once and count the matches of each of ``specs``; see ``check_layout``."""
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder")
    walker = _Walker(
        [_compile(spec.glob) for spec in specs], [s.type for s in specs], extras_listed
    )
    real_root = os.path.realpath(root)
    walker.root = real_root
    start = walker.closure(frozenset((index, 0) for index in range(len(specs))))
    _, extras = walker.visit(str(root), "", start, claimed=False, ancestors=(real_root,))
    return LayoutReport(
        root=root,
        derived_from=derived_from,
        rules=[RuleResult(spec, found) for spec, found in zip(specs, walker.found, strict=True)],
        extras=extras.first(),
        extra_count=extras.count,
        errors=sorted(walker.errors),
        files=walker.files,
        dirs=walker.dirs,
    )


_DOUBLE_STAR = "**"
Part = str | Callable[[str], object]  # "**", or a predicate on one name


def _compile(pattern: str) -> list[Part]:
    """One matcher per component of ``pattern``; literal components compare as strings."""
    parts: list[Part] = []
    for component in pattern.split("/"):
        if component in ("", "."):
            continue
        if component == _DOUBLE_STAR:
            if not parts or parts[-1] != _DOUBLE_STAR:
                parts.append(_DOUBLE_STAR)
        elif glob.has_magic(component):
            parts.append(re.compile(fnmatch.translate(component)).match)
        else:
            parts.append(component.__eq__)
    return parts


State = tuple[int, int]  # (rule index, components matched so far)
States = frozenset[State]
_NONE: States = frozenset()


@dataclass
class _Extras:
    """A count of extras and the ``limit`` first by path (whatever order they came in)."""

    limit: int
    count: int = 0
    listed: list[ExtraPath] = field(default_factory=list)

    def add(self, extra: ExtraPath) -> None:
        self.count += 1
        self.listed.append(extra)
        if len(self.listed) > 2 * self.limit:
            self._trim()

    def merge(self, other: _Extras) -> None:
        self.count += other.count
        self.listed.extend(other.listed)
        if len(self.listed) > 2 * self.limit:
            self._trim()

    def first(self) -> list[ExtraPath]:
        self._trim()
        return self.listed

    def _trim(self) -> None:
        self.listed = sorted(self.listed, key=lambda extra: extra.path)[: self.limit]


@dataclass(frozen=True)
class _Plan:
    """What a folder's states do to each child's name, worked out once per state set."""

    tests: tuple[tuple[Callable[[str], object], State], ...]  # advance to State if test(name)
    stay: frozenset[State]  # states at a '**', which match any name
    live: bool  # some state can still match deeper
    outcomes: dict[tuple[State, ...], _Outcome] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class _Outcome:
    """A child's states and the rules they complete for a file and for a folder."""

    states: States
    file_rules: tuple[int, ...]
    dir_rules: tuple[int, ...]


class _Walker:
    """One walk: the glob automaton of every rule run over the tree at once.

    A state ``(rule, done)`` means the path so far matched ``done`` components of ``rule``;
    state sets are cached with what they do, since a folder's files all share one.
    """

    def __init__(self, rules: list[list[Part]], types: list[PathType], extras_listed: int) -> None:
        self.rules = rules
        self.types = types
        self.limit = extras_listed
        self.found = [0] * len(rules)
        self.errors: list[str] = []
        self.files = 0
        self.dirs = 0
        self.root = ""  # the root's real path, set by the walk
        self._plans: dict[States, _Plan] = {}
        self._closures: dict[frozenset[State], States] = {}

    def closure(self, states: frozenset[State]) -> States:
        """``states`` plus those reached by letting each ``**`` match zero components."""
        cached = self._closures.get(states)
        if cached is not None:
            return cached
        pending = list(states)
        result = set(states)
        while pending:
            rule, done = pending.pop()
            parts = self.rules[rule]
            if done < len(parts) and parts[done] == _DOUBLE_STAR and (rule, done + 1) not in result:
                result.add((rule, done + 1))
                pending.append((rule, done + 1))
        self._closures[states] = frozenset(result)
        return self._closures[states]

    def plan(self, states: States) -> _Plan:
        cached = self._plans.get(states)
        if cached is not None:
            return cached
        tests: list[tuple[Callable[[str], object], State]] = []
        stay: set[State] = set()
        for rule, done in sorted(states):
            parts = self.rules[rule]
            if done == len(parts):
                continue
            if parts[done] == _DOUBLE_STAR:
                stay.add((rule, done))
            else:
                tests.append((parts[done], (rule, done + 1)))  # type: ignore[arg-type]
        plan = _Plan(tuple(tests), frozenset(stay), bool(stay or tests))
        self._plans[states] = plan
        return plan

    def outcome(self, plan: _Plan, hits: tuple[State, ...]) -> _Outcome:
        """The outcome of a child whose name passed the tests that lead to ``hits``."""
        cached = plan.outcomes.get(hits)
        if cached is not None:
            return cached
        states = self.closure(plan.stay.union(hits)) if plan.stay or hits else _NONE
        complete = [rule for rule, done in sorted(states) if done == len(self.rules[rule])]
        outcome = _Outcome(
            states,
            tuple(rule for rule in complete if self.types[rule] == "file"),
            tuple(rule for rule in complete if self.types[rule] == "dir"),
        )
        plan.outcomes[hits] = outcome
        return outcome

    def visit(
        self,
        path: str,
        relative: str,
        states: States,
        claimed: bool,
        ancestors: tuple[str, ...],
    ) -> tuple[bool, _Extras]:
        """Walk the folder ``path``; returns whether anything in it is accounted for, and the
        topmost unaccounted paths beneath it."""
        extras = _Extras(self.limit)
        if len(ancestors) > MAX_DEPTH:
            self.errors.append(f"{relative}: deeper than {MAX_DEPTH} levels; not checked")
            return True, extras
        self.dirs += 1
        try:
            with os.scandir(path) as iterator:
                children = list(iterator)
        except OSError as exc:
            self.errors.append(f"{relative or '.'}: cannot read folder: {exc.strerror}")
            return True, extras
        plan = self.plan(states)
        tests, outcomes, found = plan.tests, plan.outcomes, self.found
        dead = self.outcome(plan, ()) if plan.live else _DEAD
        prefix = f"{relative}/" if relative else ""
        covered = False
        for child in children:
            if tests:
                name = child.name
                hits = tuple([target for test, target in tests if test(name)])
                result = outcomes.get(hits) or self.outcome(plan, hits)
            else:
                result = dead  # the same for every name
            try:
                is_dir = child.is_dir()
                is_file = not is_dir and child.is_file()
                link = child.is_symlink()
                outside = (is_dir or is_file) and link and not self._inside(child.path)
                target = os.readlink(child.path) if outside else ""
                special = not (is_dir or is_file or link)
                kind = kind_of(child.stat(follow_symlinks=False).st_mode) if special else ""
            except OSError as exc:
                self.errors.append(f"{prefix}{child.name}: cannot stat: {exc.strerror}")
                continue
            if outside:
                self.errors.append(
                    f"{prefix}{child.name}: symbolic link to {target}, outside the tree; not "
                    "followed (copy the data in, or give its real folder as --root)"
                )
                child_covered = True
            elif is_dir:
                child_covered = self._visit_dir(
                    child, prefix + child.name, result, claimed, ancestors, extras
                )
            elif special:
                self.errors.append(f"{prefix}{child.name}: a {kind}, not a file; not opened")
                child_covered = True
            elif is_file:
                self.files += 1
                for rule in result.file_rules:
                    found[rule] += 1
                child_covered = claimed or bool(result.file_rules)
                if not child_covered:
                    extras.add(ExtraPath(prefix + child.name, "file"))
            elif os.path.exists(child.path):
                self.errors.append(
                    f"{prefix}{child.name}: symbolic link to {os.readlink(child.path)}, not a "
                    "file or folder; not followed"
                )
                child_covered = True
            else:
                self.errors.append(f"{prefix}{child.name}: broken symbolic link")
                child_covered = True
            covered = covered or child_covered
        return covered, extras

    def _inside(self, path: str) -> bool:
        """Whether the link ``path`` resolves inside the root."""
        real = os.path.realpath(path)
        return real == self.root or real.startswith(self.root + os.sep)

    def _visit_dir(
        self,
        child: os.DirEntry[str],
        relative: str,
        result: _Outcome,
        claimed: bool,
        ancestors: tuple[str, ...],
        extras: _Extras,
    ) -> bool:
        for rule in result.dir_rules:
            self.found[rule] += 1
        matched = bool(result.dir_rules)
        inside_claimed = claimed or matched
        real = (
            os.path.realpath(child.path) if child.is_symlink() else f"{ancestors[-1]}/{child.name}"
        )
        if real in ancestors:
            self.errors.append(f"{relative}: symbolic link to an enclosing folder; not followed")
            return True
        if result.states and self.plan(result.states).live:
            below, beneath = self.visit(
                child.path, relative, result.states, inside_claimed, (*ancestors, real)
            )
        else:
            self.dirs += 1  # seen, not entered: no rule can match inside it
            below, beneath = False, _Extras(self.limit)
        if matched or below or inside_claimed:
            extras.merge(beneath)
            return True
        extras.add(ExtraPath(relative, "dir"))
        return False


_DEAD = _Outcome(_NONE, (), ())
