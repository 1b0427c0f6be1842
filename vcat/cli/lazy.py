"""A command group that imports a command's module only when that command runs.

Each lazy command is a ``"module:attribute"`` target (a ``typer.Typer`` sub-app or a command
function) and the one-line help that the group's ``--help`` lists. Listing the commands never
imports them, so ``vcat --help`` costs only typer; ``vcat catalog list`` imports the catalog
command's module and nothing of the other commands. Commands added the usual typer way
(``app.command``, ``app.add_typer``) work beside the lazy ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, ClassVar

import typer
from typer.core import TyperCommand, TyperGroup

#: name -> ("module:attribute", one-line help)
LazyTargets = Mapping[str, tuple[str, str]]


def load_command(name: str, target: str) -> Any:
    """The click command of ``target`` under ``name``, as ``add_typer``/``command`` make it."""
    module_name, _, attribute = target.partition(":")
    obj = getattr(importlib.import_module(module_name), attribute)
    holder = typer.Typer(add_completion=False)
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=name)
        return typer.main.get_command(holder).commands[name]  # type: ignore[attr-defined]
    holder.command(name)(obj)
    return typer.main.get_command(holder)


class _Commands(MutableMapping[str, Any]):
    """Eagerly added commands plus lazy targets, each imported on first lookup."""

    def __init__(self, targets: LazyTargets, eager: Mapping[str, Any]) -> None:
        self._targets = dict(targets)
        self._loaded: dict[str, Any] = dict(eager)

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def __getitem__(self, name: str) -> Any:
        if name not in self._loaded:
            target, _ = self._targets[name]  # KeyError for an unknown name
            self._loaded[name] = load_command(name, target)
        return self._loaded[name]

    def __setitem__(self, name: str, command: Any) -> None:
        self._loaded[name] = command

    def __delitem__(self, name: str) -> None:
        self._loaded.pop(name)
        self._targets.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self._targets, *self._loaded]))

    def __len__(self) -> int:
        return len(set(self._targets) | set(self._loaded))


class LazyGroup(TyperGroup):
    """A typer group whose ``targets`` are imported when run, never to list them in help."""

    targets: ClassVar[LazyTargets] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands(self.targets, self.commands)
        self._listing = False

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        commands: _Commands = self.commands  # type: ignore[assignment]
        if self._listing and cmd_name in self.targets and not commands.is_loaded(cmd_name):
            _, help_text = self.targets[cmd_name]
            return TyperCommand(cmd_name, help=help_text, short_help=help_text)
        return commands.get(cmd_name)

    def list_commands(self, ctx: Any) -> list[str]:
        return list(self.commands)

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


def lazy_app(targets: LazyTargets, **settings: Any) -> typer.Typer:
    """A ``typer.Typer`` (``settings`` as for it) whose group has these lazy commands."""
    group = type("LazyCommands", (LazyGroup,), {"targets": dict(targets)})
    app = typer.Typer(cls=group, **settings)
    # typer builds a group, rather than a lone command, only for an app with a callback
    app.callback()(_no_options)
    return app


def _no_options() -> None:
    pass
