"""Pipeline stages: finding them, configuring them, and the `vcat stage NAME` command group.

A stage is a module of the ``stages`` package registered under its name as an entry point of
the group ``vcat.stages`` (``[project.entry-points."vcat.stages"]`` in pyproject.toml), so the
framework finds stages without importing them. The module provides:

- ``default_conf``: every setting of the stage with its default;
- ``main(conf, inputs..., output, overwrite=False) -> Path``: the work, callable from Python;
- ``command``: the typer command that ``vcat stage NAME`` runs (its docstring is its help);
- optionally ``pipeline_keys``: keys of its ``params.yaml`` section that only ``dvc.yaml``
  reads (which entry or subsets to iterate over); the stage itself ignores them.

A stage's settings are its section of ``params.yaml`` (the section is named after the stage)
merged into ``default_conf`` in OmegaConf's struct mode: an unknown key, or a value of another
type than its default, is an error naming the file, the line and the key.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError
from typer.core import TyperGroup

from vcat.project import ProjectNotFound, find_project_root

ENTRY_POINT_GROUP = "vcat.stages"
PARAMS_FILE = "params.yaml"


class StageError(Exception):
    """A stage that cannot be found, loaded or configured; the message says what to fix."""


@dataclass(frozen=True)
class Stage:
    """A registered stage: its name and the module that implements it."""

    name: str
    module: ModuleType

    @property
    def default_conf(self) -> Mapping[str, Any]:
        return self.module.default_conf

    @property
    def main(self) -> Callable[..., Path]:
        return self.module.main

    @property
    def command(self) -> Callable[..., None]:
        return self.module.command

    @property
    def pipeline_keys(self) -> tuple[str, ...]:
        return tuple(getattr(self.module, "pipeline_keys", ()))


def _entry_points() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def stage_names() -> list[str]:
    """The names of all registered stages, sorted."""
    return sorted(_entry_points())


def load_stage(name: str) -> Stage:
    """The stage registered as ``name``, imported and checked for the contract's attributes."""
    entry_point = _entry_points().get(name)
    if entry_point is None:
        known = ", ".join(stage_names()) or "none"
        raise StageError(
            f"no stage called {name!r} (registered: {known}); stages are entry points of the "
            f"group {ENTRY_POINT_GROUP!r}: add it to pyproject.toml, then `pip install -e .`"
        )
    try:
        module = entry_point.load()
    except Exception as exc:
        raise StageError(
            f"stage {name!r} ({entry_point.value}) cannot be imported: {type(exc).__name__}: {exc}"
        ) from exc
    missing = [attr for attr in ("default_conf", "main", "command") if not hasattr(module, attr)]
    if missing:
        raise StageError(f"stage {name!r} ({entry_point.value}) lacks {', '.join(missing)}")
    return Stage(name, module)


def _type_name(value: object) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    for kind, text in names.items():
        if type(value) is kind:
            return text
    return "a mapping" if isinstance(value, Mapping) else "a list"


def _same_kind(default: object, value: object) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    if isinstance(default, Mapping):
        return isinstance(value, Mapping)
    if isinstance(default, list | tuple):
        return isinstance(value, list | tuple)
    return isinstance(value, type(default))


def _check_types(default: Mapping[str, Any], merged: Mapping[str, Any], prefix: str) -> None:
    for key, default_value in default.items():
        value = merged[key]
        dotted = f"{prefix}{key}"
        if not _same_kind(default_value, value):
            raise _TypeMismatch(dotted, value, default_value)
        if isinstance(default_value, Mapping):
            _check_types(default_value, value, f"{dotted}.")


class _TypeMismatch(Exception):
    def __init__(self, key: str, value: object, default: object) -> None:
        super().__init__(key)
        self.key = key
        self.message = (
            f"is {value!r} but must be {_type_name(default)}, like its default {default!r}"
        )


def merge_conf(
    default_conf: Mapping[str, Any],
    conf: Mapping[str, Any] | None,
    origin: str = "conf",
    locate: Callable[[str], str] | None = None,
) -> DictConfig:
    """``conf`` merged into ``default_conf`` in struct mode; the result is read-only.

    An unknown key or a value whose type differs from its default raises :class:`StageError`
    naming ``origin`` and the dotted key (``locate(key)`` may turn the key into
    ``file:line: key``).
    """
    defaults = OmegaConf.create(dict(default_conf))
    OmegaConf.set_struct(defaults, True)
    where = locate or (lambda key: f"{origin}: {key}")
    try:
        merged = OmegaConf.merge(defaults, conf or {})
    except ConfigKeyError as exc:
        known = ", ".join(str(key) for key in defaults) or "none"
        raise StageError(
            f"{where(str(exc.full_key))} is not a setting (known: {known}); "
            "correct or remove the key"
        ) from None
    plain = OmegaConf.to_container(merged)
    try:
        _check_types(OmegaConf.to_container(defaults), plain, "")
    except _TypeMismatch as exc:
        raise StageError(f"{where(exc.key)} {exc.message}") from None
    OmegaConf.set_readonly(merged, True)
    return merged


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """The 1-based line of every mapping key in a YAML document, by its key path."""
    lines: dict[tuple[str, ...], int] = {}

    def walk(node: yaml.Node, path: tuple[str, ...]) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                child = (*path, str(key.value))
                lines[child] = key.start_mark.line + 1
                walk(value, child)

    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is not None:
        walk(root, ())
    return lines


def read_params_section(path: Path, name: str) -> tuple[dict[str, Any], Callable[[str], str]]:
    """Section ``name`` of the params file ``path`` ({} when absent), and a ``locate`` for it.

    ``locate(key)`` gives ``path:line: name.key`` for :func:`merge_conf`'s messages.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StageError(f"{path}: cannot read the params file: {exc.strerror}") from None
    try:
        document = yaml.safe_load(text)
        lines = _key_lines(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise StageError(f"{path}{line}: not valid YAML: {exc}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise StageError(f"{path}:1: must be a mapping of stage name to settings")
    section = document.get(name)
    if section is None:
        section = {}
    if not isinstance(section, dict):
        raise StageError(
            f"{path}:{lines.get((name,), 1)}: section {name!r} must be a mapping of settings"
        )

    def locate(key: str) -> str:
        line = lines.get((name, *key.split(".")), lines.get((name,), 1))
        return f"{path}:{line}: {name}.{key}"

    return section, locate


def default_params_path() -> Path | None:
    """``params.yaml`` of the enclosing project, or None outside a project or without one."""
    try:
        path = find_project_root() / PARAMS_FILE
    except ProjectNotFound:
        return None
    return path if path.is_file() else None


def stage_conf(
    name: str,
    default_conf: Mapping[str, Any],
    params_path: Path | None = None,
    pipeline_keys: Sequence[str] = (),
) -> DictConfig:
    """The settings of stage ``name``: its params section merged into ``default_conf``.

    ``params_path`` defaults to the project's ``params.yaml``; without one the defaults stand.
    Keys in ``pipeline_keys`` are dropped from the section before merging.
    """
    path = params_path if params_path is not None else default_params_path()
    if path is None:
        return merge_conf(default_conf, None, origin=f"stage {name}")
    section, locate = read_params_section(path, name)
    overrides = {key: value for key, value in section.items() if key not in pipeline_keys}
    return merge_conf(default_conf, overrides, locate=locate)


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` (UTF-8, line ends as given) written to a temporary name and renamed; the file
    is left alone when it already holds exactly that."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        partial.write_text(text, encoding="utf-8", newline="")
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)  # a disk that filled leaves no half-written file


def write_json(path: Path, values: Mapping[str, Any]) -> None:
    """``values`` as indented JSON with sorted keys (equal values, equal bytes), written with
    :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(values, indent=2, sort_keys=True) + "\n")


MetricsOption = Annotated[
    Path | None,
    typer.Option("--metrics", help="Also write what the stage counted, as JSON, to this file."),
]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Redo the work even when the output is up to date.")
]
ParamsOption = Annotated[
    Path | None,
    typer.Option(
        "--params",
        help="Params file whose section named after the stage holds its settings "
        "(default: params.yaml of the project).",
        dir_okay=False,
        exists=True,
    ),
]


def _command_of(name: str) -> Any:
    """The click command of stage ``name``; one that only reports the error if it cannot load."""
    commands = typer.Typer(add_completion=False)
    try:
        stage = load_stage(name)
    except StageError as exc:
        message = str(exc)

        def broken() -> None:
            from vcat.console import fail

            fail(message)

        commands.command(name, help=f"(cannot be loaded) {message}")(broken)
    else:
        commands.command(name)(_one_line_os_errors(stage.command))
    return typer.main.get_command(commands)


def _one_line_os_errors(command: Callable[..., None]) -> Callable[..., None]:
    """``command``, with an operating-system error it did not handle (a full disk, a name too
    long) ending as one line naming the file and exit 2 rather than a traceback."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except OSError as error:
            from vcat.console import fail
            from vcat.oserrors import os_error_message

            fail(os_error_message(error))

    return run


class _LazyCommands(MutableMapping[str, Any]):
    """Stage commands by name, each imported on first use, so `vcat stage X` loads only X."""

    def __init__(self) -> None:
        self._names: list[str] | None = None
        self._loaded: dict[str, Any] = {}

    def _all(self) -> list[str]:
        if self._names is None:
            self._names = stage_names()
        return self._names

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            if name not in self._all():
                raise KeyError(name)
            self._loaded[name] = _command_of(name)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self._loaded[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(set(self._all()) | set(self._loaded)))

    def __len__(self) -> int:
        return len(set(self._all()) | set(self._loaded))


class StageGroup(TyperGroup):
    """The `vcat stage` group: one sub-command per registered stage, imported when used."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _LazyCommands()

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)


app = typer.Typer(
    cls=StageGroup,
    no_args_is_help=True,
    help="Run one pipeline stage (dvc.yaml calls these); settings come from params.yaml.",
)
