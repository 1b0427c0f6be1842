"""The command line of one shard: the running stage command, as given, with ``--shard I/N``.

It is rebuilt from click's parsed parameters rather than copied from ``sys.argv``, so that
the options a shard must not get (``--merge``, ``--metrics``: the merge writes the stage's
metrics) are left out whatever way the user spelled them, and everything else (inputs,
output, ``--params``, flags) reaches the shard unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path
from typing import Any

import typer
from typer.models import TyperPath

from vcat.parts import ShardSpec

#: Parameters of a sharded stage command that belong to the whole run, not to a shard.
WHOLE_RUN_ONLY = frozenset({"shard", "merge", "metrics"})


def stage_command_line(context: typer.Context, whole_only: Collection[str] = ()) -> list[str]:
    """``python -m vcat stage NAME ...`` for the command being run in ``context``, without
    the whole-run-only options (those of every stage, and the stage's own ``whole_only``)."""
    words = [sys.executable, "-m", "vcat", "stage", str(context.info_name)]
    for parameter, value in _shard_parameters(context, whole_only):
        if parameter.param_type_name == "argument":
            words += [str(item) for item in _values(value, parameter.nargs != 1)]
        elif parameter.param_type_name == "option":
            words += _option_words(parameter, value)
    return words


def input_paths(
    context: typer.Context, output: Path, whole_only: Collection[str] = ()
) -> list[Path]:
    """The existing files and folders that the command in ``context`` is given, other than
    its output and the whole-run-only options: what its shards read."""
    paths: list[Path] = []
    for parameter, value in _shard_parameters(context, whole_only):
        if not isinstance(parameter.type, TyperPath):
            continue  # the parsed values are still the words given; the type says what they name
        many = parameter.nargs != 1 or bool(getattr(parameter, "multiple", False))
        for item in _values(value, many):
            path = Path(str(item))
            if path != output and path.exists():
                paths.append(path)
    return paths


def _shard_parameters(
    context: typer.Context, whole_only: Collection[str]
) -> Iterator[tuple[Any, object]]:
    """Each parameter of the command in ``context`` that a shard gets, with its value."""
    left_out = WHOLE_RUN_ONLY | set(whole_only)
    for parameter in context.command.params:
        if parameter.name is not None and parameter.name not in left_out:
            yield parameter, context.params.get(parameter.name)


def shard_command_line(stage_command: list[str], spec: ShardSpec) -> list[str]:
    return [*stage_command, "--shard", str(spec)]


def _values(value: object, many: bool) -> Iterable[object]:
    if value is None:
        return []
    return list(value) if many else [value]  # type: ignore[call-overload]


def _option_words(option: Any, value: object) -> list[str]:
    """The words that give ``option`` the value ``value`` (none for its default)."""
    if value is None or value == option.default:
        return []
    if option.is_flag:
        if value:
            return [option.opts[0]]
        return [option.secondary_opts[0]] if option.secondary_opts else []
    words: list[str] = []
    for item in _values(value, option.multiple):
        words += [option.opts[0], str(item)]
    return words
