"""Evaluation metrics: a JSON object whose leaves are the numbers an evaluation stage wrote
(nested objects, and lists, of numbers).

The ``metrics`` table has one row per leaf (item: its dotted key path, list positions as
numbers, e.g. ``overlap.vop.mAP`` or ``curve.0``): its ``kind`` (``number``, ``null``,
``string``, ``boolean``), its ``value`` (NaN for what is not a number) and whether it is a
finite number. A key that the ``required`` or ``bounds`` check names and that is not a leaf
gets a row too: ``object`` when it names a nested object, else ``absent`` (``present`` false).
A JSON null is a metric that could not be computed: it fails ``finite_metrics``.

The suite states each check on this table, restricted to the rows it concerns (a
great-expectations ``row_condition`` on ``kind`` or ``item``): ``finite_metrics`` expects
``finite`` of every number and null, ``required`` expects ``present`` of the listed keys,
``bounds`` expects each bounded key to be a finite number and its ``value`` within its own
``min`` and ``max``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from vcat.gates.checks import Check, DeclarationError, Expect, Params, mostly_of
from vcat.gates.profile import Profile, ProfileError, Table

KIND = "metrics"
DESCRIPTION = "evaluation metrics: a JSON object of (nested) numbers"
SUFFIX = ".json"
NUMERIC_KINDS = ("number", "null")  # the leaves finite_metrics checks
BOUND_KEYS = frozenset({"min", "max"})


def required_keys(params: Params) -> list[str]:
    """The ``keys`` of the ``required`` check ([] when off); DeclarationError for another
    type than a list of dotted keys."""
    keys = params.get("keys")
    if keys is None:
        return []
    if isinstance(keys, str) or not isinstance(keys, Sequence):
        raise DeclarationError(f"required: keys must be a list of dotted keys, not {keys!r}")
    for key in keys:
        if not isinstance(key, str) or not key:
            raise DeclarationError(f"required: keys must be dotted keys (strings), not {key!r}")
    return list(keys)


def declared_bounds(params: Params) -> dict[str, dict[str, float]]:
    """The ``keys`` of the ``bounds`` check, dotted key -> {min, max} (either optional);
    DeclarationError for another shape, a bound that is not a number, or min above max."""
    keys = params.get("keys")
    if keys is None:
        return {}
    if not isinstance(keys, Mapping):
        raise DeclarationError(
            f"bounds: keys must map dotted keys to {{min, max}}, not {keys!r}; "
            "e.g. {'retrieval.vop.mAP': {'min': 0.5}}"
        )
    bounds: dict[str, dict[str, float]] = {}
    for key, limits in keys.items():
        if not isinstance(limits, Mapping) or not set(limits) <= BOUND_KEYS:
            raise DeclarationError(
                f"bounds: {key!r} must map to {{min, max}} (either optional), not {limits!r}"
            )
        found = {}
        for name, value in limits.items():
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DeclarationError(f"bounds: {key}.{name} must be a number, not {value!r}")
            found[name] = float(value)
        if "min" in found and "max" in found and found["min"] > found["max"]:
            raise DeclarationError(f"bounds: {key} has min {found['min']} above max {found['max']}")
        bounds[str(key)] = found
    return bounds


def where(column: str, operator: str, parameter: Any) -> dict[str, Any]:
    """The row condition ``column operator parameter`` (``==``, ``IN``) as the plain data
    great-expectations' ``ComparisonCondition`` is read from."""
    return {
        "type": "comparison",
        "column": {"name": column},
        "operator": operator,
        "parameter": parameter,
    }


def _finite(params: Params) -> list[Expect]:
    kwargs = {
        "column": "finite",
        "value_set": [True],
        "row_condition": where("kind", "IN", list(NUMERIC_KINDS)),
        **mostly_of(params),
    }
    return [Expect("ExpectColumnValuesToBeInSet", kwargs)]


def _required(params: Params) -> list[Expect]:
    keys = required_keys(params)
    if not keys:
        return []
    condition = where("item", "IN", sorted(keys))
    kwargs = {"column": "present", "value_set": [True], "row_condition": condition}
    return [Expect("ExpectColumnValuesToBeInSet", kwargs)]


def _bounds(params: Params) -> list[Expect]:
    bounds = declared_bounds(params)
    if not bounds:
        return []
    # a bounded key must be there and be a finite number (a NaN would pass a range test)
    condition = where("item", "IN", sorted(bounds))
    kwargs = {"column": "finite", "value_set": [True], "row_condition": condition}
    found = [Expect("ExpectColumnValuesToBeInSet", kwargs)]
    for key, limits in sorted(bounds.items()):
        if not limits:
            continue
        kwargs = {
            "column": "value",
            **{f"{name}_value": value for name, value in sorted(limits.items())},
            "row_condition": where("item", "==", key),
        }
        found.append(Expect("ExpectColumnValuesToBeBetween", kwargs))
    return found


CHECKS: list[Check] = [
    Check(
        "finite_metrics",
        "metrics",
        "every number is finite (no NaN, no inf, no null)",
        {"max_bad_fraction": 0.0},
        _finite,
        "finite",
    ),
    Check(
        "required", "metrics", "these keys are there: {keys}", {"keys": None}, _required, "present"
    ),
    Check(
        "bounds",
        "metrics",
        "these keys are finite numbers within their bounds: {keys}",
        {"keys": None},
        _bounds,
        "value",
    ),
]


def detect(artifact: Path) -> bool:
    return artifact.is_file() and artifact.suffix == SUFFIX


def profile(artifact: Path, workers: int | None, params: Mapping[str, Params]) -> Profile:
    """The ``metrics`` table of the JSON file ``artifact`` (module doc); ``workers`` is
    unused."""
    import pandas as pd

    wanted = [*required_keys(params.get("required", {}))]
    wanted += [key for key in declared_bounds(params.get("bounds", {})) if key not in wanted]
    document = read_metrics(artifact)
    leaves: dict[str, Any] = {}
    objects: set[str] = set()
    for path, value in walk(document, ()):
        item = ".".join(path)
        if item in leaves or item in objects:
            raise ProfileError(
                f"{artifact}: the key path {item!r} names two values (a key with a dot in it?); "
                "dotted paths must be unique"
            )
        if isinstance(value, dict | list):
            objects.add(item)
        else:
            leaves[item] = value
    if not leaves:
        raise ProfileError(f"{artifact}: holds no metric; run the evaluation stage again")
    rows = [leaf_row(item, value) for item, value in leaves.items()]
    for key in wanted:
        if key not in leaves:
            kind = "object" if key in objects else "absent"
            rows.append(_row(key, key in objects, kind, math.nan, False))
    frame = pd.DataFrame(rows, columns=["item", "present", "kind", "value", "finite"])
    numbers = [r for r in rows if r["kind"] in NUMERIC_KINDS]
    facts = {
        "metrics": len(leaves),
        "numbers": len(numbers),
        "not_finite": sum(not r["finite"] for r in numbers),
        "absent": sum(r["kind"] == "absent" for r in rows),
    }
    return Profile(KIND, artifact, {"metrics": Table(frame, "item")}, facts)


def read_metrics(path: Path) -> dict[str, Any]:
    """The JSON object of ``path``; ProfileError naming the file when it is missing, not
    JSON, not an object, or gives a key twice in one object."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProfileError(f"{path}: no such metrics file; run the evaluation stage") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path}: cannot read the metrics file ({exc})") from None
    try:
        document = json.loads(text, object_pairs_hook=_unique_keys)
    except ValueError as exc:
        raise ProfileError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise ProfileError(
            f"{path}: a JSON {type(document).__name__}, not an object of metrics; the gate "
            "reads {name: number, or nested objects}"
        )
    return document


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {key!r} is given twice in one object")
        found[key] = value
    return found


def walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every nested object and list (below the top) and every leaf, with its key path."""
    if path:
        yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, str(key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from walk(item, (*path, str(index)))


def leaf_row(item: str, value: Any) -> dict[str, Any]:
    if value is None:
        return _row(item, True, "null", math.nan, False)
    if isinstance(value, bool):
        return _row(item, True, "boolean", math.nan, False)
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # a JSON integer beyond float's range
            number = math.inf if value > 0 else -math.inf
        return _row(item, True, "number", number, math.isfinite(number))
    return _row(item, True, "string", math.nan, False)


def _row(item: str, present: bool, kind: str, value: float, finite: bool) -> dict[str, Any]:
    return {"item": item, "present": present, "kind": kind, "value": value, "finite": finite}
