"""Metrics and params of several git revisions side by side, read through DVC.

:func:`compare` asks DVC's Python API (``Repo.metrics.show`` / ``Repo.params.show``) for every
metrics file DVC knows (``metrics:`` in ``dvc.yaml``) and every params file (``params.yaml``
and the params files stages name) at each revision, and flattens nested values into dotted
keys. ``workspace`` stands for the uncommitted working tree. A revision git cannot resolve is
a :class:`RevisionNotFound`; a file that cannot be read at some revision is a :class:`Notice`
and its values are absent there. :func:`plot_metrics` draws one small panel per numeric
metric that changed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

COMPARE_FORMAT = "vcat.compare/1"
WORKSPACE = "workspace"
SHORT_SHA = 7
ELLIPSIS = "…"

Kind = Literal["metric", "param"]


class _Missing:
    """The value of a key that a revision does not have."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class CompareError(Exception):
    """The comparison cannot be made (no DVC project, no git, an unknown revision)."""


class RevisionNotFound(CompareError):
    """A revision that git cannot resolve."""


class NothingChanged(CompareError):
    """No numeric metric changed between the revisions: there is nothing to plot."""


@dataclass(frozen=True)
class Revision:
    """One column: the revision as given, its commit (None for the workspace) and ref names."""

    spec: str
    sha: str | None
    names: tuple[str, ...] = ()

    @property
    def short(self) -> str:
        return WORKSPACE if self.sha is None else self.sha[:SHORT_SHA]

    @property
    def label(self) -> str:
        """Short sha plus the tags and branches at that commit, e.g. ``1a2b3c4 v1.0, main``."""
        return " ".join([self.short, ", ".join(self.names)]) if self.names else self.short


@dataclass(frozen=True)
class Row:
    """One dotted key of one file, with its value at every revision (``MISSING`` if absent)."""

    kind: Kind
    file: str
    key: str
    values: tuple[Any, ...]

    @property
    def changed(self) -> bool:
        """True when some revision's value differs from another's (absence counts)."""
        return any(not _same(self.values[0], value) for value in self.values[1:])

    def differs(self, column: int) -> bool:
        """True when the value at ``column`` differs from the first revision's."""
        return not _same(self.values[0], self.values[column])

    @property
    def deltas(self) -> tuple[int | float | None, ...]:
        """``value - first value`` per revision where both are numbers, else None."""
        first = self.values[0]
        return tuple(
            _delta(first, value) if _is_number(first) and _is_number(value) else None
            for value in self.values
        )

    @property
    def numeric(self) -> bool:
        return any(_is_number(value) for value in self.values)


@dataclass(frozen=True)
class Notice:
    """A file (or a whole revision, when ``file`` is None) that could not be read."""

    revision: Revision
    file: str | None
    message: str

    def format(self) -> str:
        where = self.revision.spec
        if self.revision.sha is not None and self.revision.spec != self.revision.short:
            where += f" ({self.revision.short})"
        return f"{where}: {self.file}: {self.message}" if self.file else f"{where}: {self.message}"


@dataclass
class Comparison:
    revisions: list[Revision]
    metrics: list[Row] = field(default_factory=list)
    params: list[Row] = field(default_factory=list)
    notices: list[Notice] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The ``vcat.compare/1`` document described in docs/cli-json.md."""
        return {
            "format": COMPARE_FORMAT,
            "revisions": [
                {"rev": r.spec, "sha": r.sha, "short": r.short, "names": list(r.names)}
                for r in self.revisions
            ],
            "metrics": [_row_json(row) for row in self.metrics],
            "params": [_row_json(row) for row in self.params],
            "notices": [
                {"rev": n.revision.spec, "file": n.file, "message": n.message} for n in self.notices
            ],
        }


def compare(
    revs: Sequence[str],
    *,
    root: Path | None = None,
    metrics: bool = True,
    params: bool = True,
) -> Comparison:
    """Metrics and params of ``revs`` (git revisions or ``workspace``) in the DVC repo at
    ``root`` (default: the one enclosing the working directory)."""
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    if not revs:
        raise CompareError("name at least one revision")
    try:
        repo = Repo(str(root) if root is not None else None)
    except NotDvcRepoError as exc:
        raise CompareError(f"{exc}; run vcat compare inside a DVC project") from None
    with repo:
        revisions = _resolve(repo, revs)
        comparison = Comparison(revisions)
        if metrics:
            shown = repo.metrics.show(revs=_commits(revisions), hide_workspace=False)
            comparison.metrics = _rows("metric", revisions, shown, comparison.notices)
        if params:
            shown = repo.params.show(revs=_commits(revisions), hide_workspace=False)
            comparison.params = _rows("param", revisions, shown, comparison.notices)
    return comparison


def _resolve(repo: Any, revs: Sequence[str]) -> list[Revision]:
    from dvc.scm import NoSCM, RevError, resolve_rev
    from scmrepo.exceptions import SCMError

    commits = [rev for rev in revs if rev != WORKSPACE]
    if commits and isinstance(repo.scm, NoSCM):
        raise CompareError(f"{repo.root_dir} is not in a git repository; only workspace exists")
    revisions = []
    for rev in revs:
        if rev == WORKSPACE:
            revisions.append(Revision(rev, None))
            continue
        try:
            sha = resolve_rev(repo.scm, rev)
        except RevError:
            raise RevisionNotFound(
                f"unknown revision {rev!r}: git knows no commit, tag or branch of that name "
                "(`git log --oneline` lists commits)"
            ) from None
        except SCMError as exc:  # the repository went away or git cannot read it
            raise CompareError(f"git cannot read {repo.root_dir}: {exc}") from None
        revisions.append(Revision(rev, sha, _ref_names(Path(repo.scm.root_dir), sha)))
    return revisions


def _ref_names(git_root: Path, sha: str) -> tuple[str, ...]:
    """Tags, then branches, that point at commit ``sha``."""
    names: list[str] = []
    for refs in ("refs/tags", "refs/heads"):
        listed = subprocess.run(
            ["git", "for-each-ref", f"--points-at={sha}", "--format=%(refname:short)", refs],
            cwd=git_root,
            capture_output=True,
            text=True,
            check=True,
        )
        names.extend(sorted(listed.stdout.split()))
    return tuple(names)


def _commits(revisions: list[Revision]) -> list[str]:
    return list(dict.fromkeys(r.sha for r in revisions if r.sha is not None))


def _result_for(shown: Mapping[str, Any], revision: Revision) -> Mapping[str, Any] | None:
    """DVC's result for one revision: keys are commits as asked (joined by ``,`` when several
    asked revisions are one commit), ``workspace``, or ``""`` when no commit was asked."""
    if revision.sha is None:
        return shown.get(WORKSPACE, shown.get(""))
    for key, result in shown.items():
        if revision.sha in key.split(","):
            return result
    return None


def _rows(
    kind: Kind,
    revisions: list[Revision],
    shown: Mapping[str, Any],
    notices: list[Notice],
) -> list[Row]:
    per_revision: list[dict[str, dict[str, Any]]] = []
    for revision in revisions:
        result = _result_for(shown, revision)
        files: dict[str, dict[str, Any]] = {}
        if result is None:
            notices.append(Notice(revision, None, "holds no DVC project (no .dvc/ at the root)"))
        elif "error" in result:
            notices.append(Notice(revision, None, f"cannot read {kind}s: {result['error']}"))
        else:
            for path, content in sorted(result.get("data", {}).items()):
                name = Path(path).as_posix()
                if "error" in content:
                    notices.append(Notice(revision, name, _explain(content["error"])))
                else:
                    files[name] = dict(_flatten(content.get("data", {})))
        per_revision.append(files)
    rows = []
    for name in sorted({name for files in per_revision for name in files}):
        keys = dict.fromkeys(key for files in per_revision for key in files.get(name, {}))
        for key in keys:
            values = tuple(files.get(name, {}).get(key, MISSING) for files in per_revision)
            rows.append(Row(kind, name, key, values))
    return rows


def _explain(error: BaseException) -> str:
    """One line for a file DVC could not read at some revision."""
    if isinstance(error, FileNotFoundError):
        return "missing (not committed, or not produced yet at this revision)"
    cause = error.__cause__
    if cause is not None:
        return f"cannot be parsed: {cause}"
    return f"cannot be read: {error}"


def _flatten(data: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(data, Mapping) and (data or not prefix):
        for key, value in data.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, data


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    if _is_number(a) and _is_number(b):
        return a == b or (a != a and b != b)  # NaN equals NaN here
    return type(a) is type(b) and a == b


def _delta(first: int | float, value: int | float) -> int | float:
    difference = value - first
    if isinstance(difference, float) and math.isfinite(difference):
        # 0.3 - 0.1 is 0.19999999999999998; twelve significant digits drop the noise
        return float(f"{difference:.12g}")
    return difference


def _json_value(value: Any) -> Any:
    if value is MISSING:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf, -inf: JSON has no literal for them
    return value


def _row_json(row: Row) -> dict[str, Any]:
    return {
        "file": row.file,
        "key": row.key,
        "values": [_json_value(value) for value in row.values],
        "absent": [index for index, value in enumerate(row.values) if value is MISSING],
        "changed": row.changed,
        "deltas": [_json_value(delta) for delta in row.deltas],
    }


def format_value(value: Any) -> str:
    """A value as the table shows it: floats to 6 significant digits, lists as JSON."""
    if value is MISSING:
        return "-"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def format_delta(delta: int | float) -> str:
    return f"{delta:+.4g}" if isinstance(delta, float) else f"{delta:+d}"


def only_changed(comparison: Comparison) -> Comparison:
    """``comparison`` with only the rows whose value differs between revisions."""
    return replace(
        comparison,
        metrics=[row for row in comparison.metrics if row.changed],
        params=[row for row in comparison.params if row.changed],
    )


def abbreviate_middle(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters by replacing its middle with ``…``; the end, which
    names the value, keeps the larger part."""
    if len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    head = (width - 1) // 3
    return text[:head] + ELLIPSIS + text[len(text) - (width - 1 - head) :]


def abbreviate_keys(keys: Sequence[str], width: int) -> dict[str, str]:
    """Each of ``keys`` abbreviated in the middle to ``width`` characters or, where that would
    make two keys look the same, to the least width at which every one is told apart."""
    distinct = list(dict.fromkeys(keys))
    longest = max((len(key) for key in distinct), default=0)
    for size in range(max(width, 1), longest + 1):
        shown = {key: abbreviate_middle(key, size) for key in distinct}
        # an abbreviation equal to another key written out would mislead as well
        if len(set(shown.values())) == len(distinct) and not any(
            short != key and short in shown for key, short in shown.items()
        ):
            return shown
    return {key: key for key in distinct}


#: Plot layout in inches: one panel per metric on a fixed grid, all drawn on one canvas in
#: inches. One matplotlib Axes per panel, placed by a layout engine, costs its ticks, labels
#: and measurements 66 times over (30-40 s for 66 panels); bench/compare_plot.py measures it.
PANEL_WIDTH, PANEL_HEIGHT = 3.2, 2.4
PANEL_LEFT, PANEL_RIGHT, PANEL_TOP, PANEL_BOTTOM = 0.6, 0.15, 0.5, 0.2
LABEL_BAND = 0.75  # below the lowest panel of each column: the revisions' names
TITLE_CHARACTERS = 46
GAP = 0.06  # between a panel's frame and its labels


def plot_metrics(comparison: Comparison, path: Path) -> int:
    """A PNG at ``path`` with one small panel per numeric metric that changed across the
    revisions: the values at each revision joined by a line, the lowest and highest written
    beside it. Returns the number of panels. Written to a temporary name, then renamed.
    :class:`NothingChanged` when no numeric metric changed (nothing is written then)."""
    rows = [row for row in comparison.metrics if row.numeric and row.changed]
    if not rows:
        numeric = sum(row.numeric for row in comparison.metrics)
        if not numeric:
            raise CompareError("no numeric metric at these revisions: nothing to plot")
        raise NothingChanged(
            f"none of the {numeric} numeric metric(s) changed between these revisions: "
            "nothing to plot"
        )
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    columns = min(4, len(rows))
    lines = math.ceil(len(rows) / columns)
    width, height = PANEL_WIDTH * columns, PANEL_HEIGHT * lines + LABEL_BAND
    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    canvas = figure.add_axes((0, 0, 1, 1))  # data units are inches from the bottom left
    canvas.set_axis_off()
    canvas.set_xlim(0, width)
    canvas.set_ylim(0, height)
    labels = [revision.label.replace(" ", "\n", 1) for revision in comparison.revisions]
    several_files = len({row.file for row in rows}) > 1
    titles = abbreviate_keys([row.key for row in rows], TITLE_CHARACTERS)
    files = abbreviate_keys([row.file for row in rows], TITLE_CHARACTERS)
    inner_width = PANEL_WIDTH - PANEL_LEFT - PANEL_RIGHT
    inner_height = PANEL_HEIGHT - PANEL_BOTTOM - PANEL_TOP
    grid: list[list[tuple[float, float]]] = []
    for index, row in enumerate(rows):
        line, column = divmod(index, columns)
        left = column * PANEL_WIDTH + PANEL_LEFT
        bottom = LABEL_BAND + (lines - 1 - line) * PANEL_HEIGHT + PANEL_BOTTOM
        xs = [left + (at + 0.5) / len(labels) * inner_width for at in range(len(labels))]
        numbers = [value for value in row.values if _is_number(value) and math.isfinite(value)]
        low, high = (min(numbers), max(numbers)) if numbers else (0.0, 0.0)

        def y_of(
            value: float, low: float = low, high: float = high, bottom: float = bottom
        ) -> float:
            share = 0.5 if high == low else (value - low) / (high - low)
            return bottom + inner_height * (0.1 + 0.8 * share)

        points = [
            (x, y_of(value))
            for x, value in zip(xs, row.values, strict=True)
            if _is_number(value) and math.isfinite(value)
        ]
        canvas.plot([x for x, _ in points], [y for _, y in points], marker="o", color="C0")
        canvas.add_patch(
            Rectangle((left, bottom), inner_width, inner_height, fill=False, lw=0.6, ec="0.6")
        )
        grid += [[(x, bottom), (x, bottom + inner_height)] for x in xs]
        for value in dict.fromkeys((high, low)) if numbers else ():
            grid.append([(left, y_of(value)), (left + inner_width, y_of(value))])
            canvas.text(left - GAP, y_of(value), format_value(value), ha="right", va="center",
                        fontsize=7)  # fmt: skip
        title = f"{files[row.file]}\n{titles[row.key]}" if several_files else titles[row.key]
        canvas.text(left + inner_width / 2, bottom + inner_height + GAP, title, ha="center",
                    va="bottom", fontsize=8)  # fmt: skip
        if index + columns >= len(rows):  # no panel below: the revisions are named here
            for x, label in zip(xs, labels, strict=True):
                canvas.text(x, bottom - GAP, label, ha="right", va="top", rotation=30,
                            rotation_mode="anchor", fontsize=7)  # fmt: skip
    canvas.add_collection(LineCollection(grid, colors="0.85", linewidths=0.5, zorder=0))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        figure.savefig(partial, format="png", dpi=100, metadata={"Software": None})
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return len(rows)
