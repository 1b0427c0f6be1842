"""Checks: the declared, named expectations of an artifact kind, and their parameters.

A check is what a person declares ("at most 0.1% unreadable", "exactly 20 copies per class"):
a name, the table it reads, parameters with defaults, and the great-expectations
expectations it becomes for given parameters. A parameter left ``None`` turns the check off
(``count`` has no default: the catalog or params give it). Most checks take
``max_bad_fraction``: the fraction of rows that may fail it (great-expectations' ``mostly``);
the rows that do are listed for the stages that follow to exclude.

Nothing here imports great-expectations: checks are plain data until ``vcat.gates.validate``
builds the suite.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import OmegaConf

from vcat.stage import StageError, merge_conf

Params = Mapping[str, Any]


class DeclarationError(Exception):
    """Declared expectations that name no check or parameter, or have the wrong type."""


@dataclass(frozen=True)
class Expect:
    """One great-expectations expectation: its class name in ``gx.expectations`` and its
    arguments."""

    type: str
    kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Check:
    """A named check of one table of a profile."""

    name: str
    table: str
    description: str  # for people: what passing means; ``{param}`` fields are filled in
    defaults: Params
    build: Callable[[Params], list[Expect]]
    #: The column whose failing rows are the bad items (None: the check is about the table).
    column: str | None = None

    def describe(self, params: Params) -> str:
        return self.description.format(**params)


@dataclass(frozen=True)
class Declared:
    """A check with the parameters in force for one artifact."""

    check: Check
    params: Params = field(default_factory=dict)

    @property
    def expectations(self) -> list[Expect]:
        return self.check.build(self.params)

    @property
    def enabled(self) -> bool:
        return bool(self.expectations)


def mostly_of(params: Params) -> dict[str, float]:
    """great-expectations' ``mostly`` for the ``max_bad_fraction`` in ``params`` ({} for none)."""
    allowed = float(params.get("max_bad_fraction") or 0.0)
    return {"mostly": 1.0 - allowed} if allowed > 0 else {}


def values_between(
    name: str,
    table: str,
    column: str,
    description: str,
    low: str | None,
    high: str | None,
    defaults: Params,
) -> Check:
    """Every value of ``column`` within the parameters ``low`` and ``high`` (either may be
    absent or None for no bound), up to ``max_bad_fraction`` of the rows failing."""

    def build(params: Params) -> list[Expect]:
        bounds = {
            key: params[param]
            for key, param in (("min_value", low), ("max_value", high))
            if param is not None and params.get(param) is not None
        }
        if not bounds:
            return []
        kwargs = {"column": column, **bounds, **mostly_of(params)}
        return [Expect("ExpectColumnValuesToBeBetween", kwargs)]

    return Check(name, table, description, {"max_bad_fraction": 0.0, **defaults}, build, column)


def values_true(name: str, table: str, column: str, description: str) -> Check:
    """``column`` is True on every row, up to ``max_bad_fraction`` of the rows."""

    def build(params: Params) -> list[Expect]:
        kwargs = {"column": column, "value_set": [True], **mostly_of(params)}
        return [Expect("ExpectColumnValuesToBeInSet", kwargs)]

    return Check(name, table, description, {"max_bad_fraction": 0.0}, build, column)


def values_in_set(
    name: str, table: str, column: str, description: str, param: str, default: Sequence[Any]
) -> Check:
    """Every value of ``column`` is one of the list parameter ``param``."""

    def build(params: Params) -> list[Expect]:
        allowed = params.get(param)
        if allowed is None:
            return []
        kwargs = {"column": column, "value_set": list(allowed), **mostly_of(params)}
        return [Expect("ExpectColumnValuesToBeInSet", kwargs)]

    return Check(
        name, table, description, {"max_bad_fraction": 0.0, param: list(default)}, build, column
    )


def values_unique(name: str, table: str, column: str, description: str) -> Check:
    """No value of ``column`` appears twice (switched off with ``enabled: false``)."""

    def build(params: Params) -> list[Expect]:
        if not params.get("enabled", True):
            return []
        return [Expect("ExpectColumnValuesToBeUnique", {"column": column, **mostly_of(params)})]

    return Check(
        name, table, description, {"enabled": True, "max_bad_fraction": 0.0}, build, column
    )


def row_count(name: str, table: str, description: str) -> Check:
    """The table has ``equal`` rows, or between ``min`` and ``max``; off until one is given."""

    def build(params: Params) -> list[Expect]:
        if params.get("equal") is not None:
            return [Expect("ExpectTableRowCountToEqual", {"value": params["equal"]})]
        bounds = {
            key: params[param]
            for key, param in (("min_value", "min"), ("max_value", "max"))
            if params.get(param) is not None
        }
        return [Expect("ExpectTableRowCountToBeBetween", bounds)] if bounds else []

    return Check(name, table, description, {"equal": None, "min": None, "max": None}, build)


def declare(
    checks: Sequence[Check],
    layers: Sequence[tuple[Params | None, Callable[[str], str] | None, str]],
) -> list[Declared]:
    """``checks`` with each layer's parameters merged over the defaults, in order.

    A layer is ``(overrides, locate, origin)``: ``{check: {param: value}}`` from the catalog
    or params.yaml, ``locate(dotted key)`` for a ``file:line: key`` message, and the origin
    named when there is no locate. An unknown check or parameter, or a value of another type
    than its default, raises :class:`DeclarationError`.
    """
    merged: Any = {check.name: dict(check.defaults) for check in checks}
    for overrides, locate, origin in layers:
        if not overrides:
            continue
        try:
            merged = merge_conf(merged, _plain(overrides), origin=origin, locate=locate)
        except StageError as exc:
            raise DeclarationError(str(exc)) from None
        merged = OmegaConf.to_container(merged)
    return [Declared(check, merged[check.name]) for check in checks]


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value
