"""The command line that stages over a list file share: the list, the output, the options,
and the mapping of errors to exit codes.

A stage whose work is described by one list file (a subset list, a frame list, a crop list)
declares its typer command with the argument types made here and runs its work through
:func:`run_stage`, which reads the stage's section of params.yaml and turns what went wrong
into the contract's exit codes:

- exit 2, one line naming the file (and line): the input or the settings cannot be used
  (:class:`~vcat.stage.StageError`, :class:`InputError`, unusable shards or parts);
- exit 1: the stage ran but its result failed a threshold from params (:class:`StageFailed`);
- an operating-system error the stage did not handle (a full disk) is left to ``vcat stage``,
  which prints it as one line with exit 2.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from omegaconf import DictConfig

from vcat.console import fail
from vcat.devices import DeviceError
from vcat.parts import PartsError, ShardSpec, shard_spec
from vcat.processes import WorkerDied
from vcat.shards import ShardError
from vcat.stage import StageError, merge_conf, stage_conf


class InputError(ValueError):
    """An input file that cannot be used; the message names the file and, where known, the
    line, and says what to do."""


class StageFailed(StageError):
    """The stage ran, but its result failed a threshold from params (exit 1)."""


#: Errors that mean the stage could not run with what it was given (exit 2).
INPUT_ERRORS: tuple[type[Exception], ...] = (
    StageError,
    InputError,
    ShardError,
    PartsError,
    DeviceError,
    WorkerDied,
)


def list_argument(help: str) -> Any:
    """The type of a stage's list argument: an existing file, shown as LIST."""
    return Annotated[Path, typer.Argument(help=help, metavar="LIST", exists=True, dir_okay=False)]


def folder_argument(help: str, metavar: str = "INPUT") -> Any:
    """The type of a stage's input-folder argument: an existing folder, shown as ``metavar``."""
    return Annotated[Path, typer.Argument(help=help, metavar=metavar, exists=True, file_okay=False)]


def output_argument(help: str, *, folder: bool) -> Any:
    """The type of a stage's output argument: a folder or a file, shown as OUTPUT."""
    option = (
        typer.Argument(help=help, metavar="OUTPUT", file_okay=False)
        if folder
        else typer.Argument(help=help, metavar="OUTPUT", dir_okay=False)
    )
    return Annotated[Path, option]


def settings(name: str, default_conf: Mapping[str, Any], conf: Mapping[str, Any] | None) -> Any:
    """``conf`` (as ``main`` receives it) merged into ``default_conf`` in struct mode."""
    return merge_conf(default_conf, conf, origin=f"conf of stage {name}")


def shard_or_merge(shard: str | None, merge: int | None) -> tuple[ShardSpec | None, int | None]:
    """``--shard I/N`` as a spec (None when not given) and ``--merge N``; typer.BadParameter
    when both are given (they are two steps: every shard first, then the merge)."""
    if shard is not None and merge is not None:
        raise typer.BadParameter("give either --shard I/N or --merge N, not both")
    return (None if shard is None else shard_spec(shard)), merge


def run_stage(
    name: str,
    default_conf: Mapping[str, Any],
    params: Path | None,
    work: Callable[[DictConfig], object],
    pipeline_keys: Sequence[str] = (),
    input_errors: tuple[type[Exception], ...] = (),
) -> None:
    """``work(conf)`` with the stage's settings from ``params`` (default: the project's
    params.yaml); failures end the command with the contract's message and exit code.

    ``input_errors`` adds the stage's own exception types that mean exit 2.
    """
    try:
        work(stage_conf(name, default_conf, params, pipeline_keys))
    except StageFailed as exc:
        fail(str(exc), code=1)
    except (*INPUT_ERRORS, *input_errors) as exc:
        fail(str(exc))
