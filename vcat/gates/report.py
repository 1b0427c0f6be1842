"""A gate's outcome: the summary for people, the JSON and metrics files, the bad-items list.

The gate's folder (``<artifact>.gate/`` by default, beside the artifact) holds:

- ``result.json``: ``vcat.gate/1``: the outcome of every check (observed value, failing
  count and fraction, every failing item): the same bytes for the same artifact and checks;
- ``bad-items.tsv``: ``table``, ``item``, ``checks`` (comma-separated) for every row that
  failed a check on its rows, whether within the fraction the check allows or not, sorted:
  a following stage can exclude exactly these;
- ``docs/``: great-expectations' Data Docs (``index.html``, a page per table's validation)
  and its own results (``great_expectations.json``), for a person to browse; they carry run
  times and ids, so a pipeline tracks only the two files above.

The metrics file holds the numbers ``vcat compare`` shows across commits.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcat.gates.profile import Profile
from vcat.gates.validate import Outcome, SuiteRun

RESULT_FORMAT = "vcat.gate/1"
RESULT_NAME = "result.json"
BAD_ITEMS_NAME = "bad-items.tsv"
GX_RESULT_NAME = "great_expectations.json"
BAD_ITEMS_HEADER = "table\titem\tchecks\n"


@dataclass
class GateResult:
    name: str
    profile: Profile
    run: SuiteRun

    @property
    def success(self) -> bool:
        return self.run.success

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.run.outcomes if not outcome.success]

    def bad_items(self) -> list[tuple[str, str, list[str]]]:
        """``(table, item, checks)`` of every row that failed a check, sorted."""
        checks: dict[tuple[str, str], set[str]] = {}
        for outcome in self.run.outcomes:
            for item in outcome.items:
                checks.setdefault((outcome.table, item), set()).add(outcome.check)
        return [(table, item, sorted(names)) for (table, item), names in sorted(checks.items())]


def _number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def to_json(result: GateResult) -> dict[str, Any]:
    profile = result.profile
    return {
        "format": RESULT_FORMAT,
        "gate": result.name,
        "kind": profile.kind,
        "artifact": str(profile.artifact),
        "success": result.success,
        "rows": profile.rows(),
        "facts": profile.facts,
        "bad_items": len(result.bad_items()),
        "checks": [
            {
                "check": o.check,
                "table": o.table,
                "expectation": o.expectation,
                "column": o.column,
                "description": o.description,
                "success": o.success,
                "observed": _number(o.observed),
                "unexpected_count": o.unexpected_count,
                "unexpected_fraction": _number(o.unexpected_fraction),
                "items": o.items,
            }
            for o in result.run.outcomes
        ],
    }


def metrics(result: GateResult) -> dict[str, Any]:
    """Flat numbers for DVC: pass/fail, rows, bad items, and per check its failing count."""
    checks: dict[str, Any] = {}
    for outcome in result.run.outcomes:
        entry = checks.setdefault(outcome.check, {"passed": 1, "failing": 0})
        entry["passed"] = int(entry["passed"] and outcome.success)
        if outcome.unexpected_count is not None:
            entry["failing"] += int(outcome.unexpected_count)
        elif isinstance(outcome.observed, int | float) and not isinstance(outcome.observed, bool):
            entry["observed"] = _number(outcome.observed)
    return {
        "passed": int(result.success),
        "rows": result.profile.rows(),
        "bad_items": len(result.bad_items()),
        "checks": checks,
    }


def write_outputs(result: GateResult, folder: Path) -> None:
    """``result.json`` and ``bad-items.tsv`` in ``folder`` (each written whole, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write(folder / RESULT_NAME, json.dumps(to_json(result), indent=1, default=str) + "\n")
    if result.run.docs is not None:
        raw = json.dumps(result.run.raw, indent=1, default=str) + "\n"
        _write(result.run.docs.parent / GX_RESULT_NAME, raw)
    rows = (f"{table}\t{item}\t{','.join(checks)}\n" for table, item, checks in result.bad_items())
    _write(folder / BAD_ITEMS_NAME, BAD_ITEMS_HEADER + "".join(rows))


def _write(path: Path, text: str) -> None:
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def summary_lines(result: GateResult, max_items: int) -> list[str]:
    """The report for a person: the verdict, then each failed check with its observed value
    and up to ``max_items`` offending items."""
    rows = ", ".join(f"{table}: {count:,}" for table, count in result.profile.rows().items())
    verdict = "passed" if result.success else "FAILED"
    lines = [f"gate {result.name} ({result.profile.kind}, {rows}): {verdict}"]
    shown_checks: set[str] = set()
    for outcome in result.failed:
        if outcome.check not in shown_checks:
            shown_checks.add(outcome.check)
            lines.append(f"  failed {outcome.check}: {outcome.description}")
        lines.append(f"    {_column(outcome)}{_observed(outcome)}")
        shown = outcome.items[:max_items]
        if shown:
            more = len(outcome.items) - len(shown)
            tail = f" and {more:,} more" if more else ""
            lines.append(f"    items: {', '.join(shown)}{tail}")
    allowed = [o for o in result.run.outcomes if o.success and o.items]
    for outcome in allowed:
        lines.append(
            f"  allowed {outcome.check}: {len(outcome.items):,} item(s) within its "
            f"max_bad_fraction, listed in {BAD_ITEMS_NAME}"
        )
    return lines


def _column(outcome: Outcome) -> str:
    return f"{outcome.column}: " if outcome.column else ""


def _observed(outcome: Outcome) -> str:
    if outcome.unexpected_count is not None:
        fraction = outcome.unexpected_fraction or 0.0
        return (
            f"{outcome.unexpected_count:,} row(s) fail it ({fraction:.2%} of the {outcome.table})"
        )
    return f"observed: {outcome.observed}"


def one_line(results: Sequence[GateResult]) -> str:
    """``gates: 5 passed, 1 failed (name)`` for a run of several gates."""
    failed = [r.name for r in results if not r.success]
    passed = len(results) - len(failed)
    text = f"gates: {passed} passed, {len(failed)} failed"
    return f"{text} ({', '.join(failed)})" if failed else text
