"""The training and evaluation steps of the pipeline, run through DVC with their gates.

A step is a set of ``dvc.yaml`` stage groups (``pretrain@...`` are the group ``pretrain``):

- ``train``: the backbones pre-trained, their features, the heads trained;
- ``eval``: the evaluations;
- ``all``: both, in the pipeline's order.

The targets of a step are its stages and every gate stage (``gate@``, ``model-gate@``,
``result-gate@``) that
reads one of their outputs. DVC's own ``reproduce`` runs them, with whatever they depend on
that is stale, in the pipeline's order (the gate on an input runs before the stage that
reads it), and stops at the first stage that fails. So ``vcat run`` and ``dvc repro`` of the
same targets do the same work and write the same ``dvc.lock``.

The device is not a param (:mod:`vcat.devices`): a run asks for one through ``VCAT_DEVICE``
in the stages' environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcat.devices import DEVICE_CHOICES, DEVICE_ENV

STEPS: dict[str, tuple[str, ...]] = {
    "train": ("pretrain", "features", "train-overlap"),
    "eval": ("evaluate-overlap", "evaluate-copydetect"),
}
STEPS["all"] = STEPS["train"] + STEPS["eval"]
GATE_GROUPS = ("gate", "model-gate", "result-gate")
_FAILED = re.compile(r"failed to reproduce(?: stages:)? '([^']+)'")


class RunError(Exception):
    """The step cannot start: no project, an unknown step or device, a broken dvc.yaml."""


@dataclass(frozen=True)
class Outcome:
    """What a run did: the targets, and the stage it stopped at (None when all succeeded)."""

    targets: tuple[str, ...]
    failed_stage: str | None = None
    message: str = ""

    @property
    def failed_gate(self) -> bool:
        return self.failed_stage is not None and group_of(self.failed_stage) in GATE_GROUPS


def group_of(stage: str) -> str:
    """The ``dvc.yaml`` group of a stage address: ``model-gate@x`` -> ``model-gate``."""
    return stage.split("@", 1)[0]


def step_targets(graph: Any, stages: Sequence[Any], step: str) -> tuple[str, ...]:
    """The addresses of ``step``'s stages and of the gate stages that read their outputs,
    in ``dvc.yaml`` order. ``graph`` is DVC's stage graph (an edge runs from a stage to a
    stage it depends on)."""
    if step not in STEPS:
        raise RunError(f"no step {step!r}; the steps are {', '.join(STEPS)}")
    groups = STEPS[step]
    chosen = {stage for stage in stages if group_of(stage.addressing) in groups}
    gates = {
        reader
        for stage in chosen
        for reader in graph.predecessors(stage)
        if group_of(reader.addressing) in GATE_GROUPS
    }
    return tuple(stage.addressing for stage in stages if stage in chosen | gates)


@contextmanager
def _device_env(device: str | None) -> Iterator[None]:
    if device is None:
        yield
        return
    if device not in DEVICE_CHOICES:
        raise RunError(f"device {device!r}: use one of {', '.join(DEVICE_CHOICES)}")
    before = os.environ.get(DEVICE_ENV)
    os.environ[DEVICE_ENV] = device
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DEVICE_ENV, None)
        else:
            os.environ[DEVICE_ENV] = before


def _log_to_current_streams() -> None:
    """DVC's console logging, bound to this moment's stdout and stderr. DVC binds its handlers
    to the streams of the time they are made; one made earlier in the process (by another
    in-process DVC call) may hold a stream closed since, and a failed log write fails the
    stage."""
    import logging

    from dvc.logger import LoggerHandler, setup

    for name in ("dvc", "dvc_objects", "dvc_data"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, LoggerHandler):
                logger.removeHandler(handler)
    setup()


def run_step(step: str, root: Path, *, device: str | None = None, dry: bool = False) -> Outcome:
    """Reproduce ``step``'s targets in the DVC project at ``root`` (module doc). ``dry``
    prints the commands DVC would run and runs none."""
    from dvc.exceptions import DvcException, ReproductionError
    from dvc.repo import Repo

    _log_to_current_streams()

    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise RunError(_yaml_problem(exc, root) or f"{root}: {exc}") from None
    with repo, _device_env(device):
        try:
            targets = step_targets(repo.index.graph, list(repo.index.stages), step)
        except DvcException as exc:
            raise RunError(_yaml_problem(exc, root) or f"{root / 'dvc.yaml'}: {exc}") from None
        if not targets:
            raise RunError(f"{root / 'dvc.yaml'} has no stage of step {step!r}")
        try:
            repo.reproduce(list(targets), dry=dry)
        except ReproductionError as exc:
            found = _FAILED.search(str(exc))
            cause = f"{exc.__cause__}" if exc.__cause__ is not None else str(exc)
            return Outcome(targets, found.group(1) if found else "?", cause)
    return Outcome(targets)


def _yaml_problem(error: BaseException, root: Path) -> str | None:
    """Where the YAML file DVC could not read (dvc.yaml, params.yaml, dvc.lock) is broken, as
    ``FILE, line L, column C: problem``; None when ``error`` is not about one."""
    path: str | None = None
    current: BaseException | None = error
    while current is not None:
        path = path or getattr(current, "path", None)
        mark = getattr(current, "problem_mark", None)
        if mark is not None and path is not None:
            problem = getattr(current, "problem", None) or "not valid YAML"
            return (
                f"{root / path}, line {mark.line + 1}, column {mark.column + 1}: {problem}; "
                "fix the YAML there and run again"
            )
        current = current.__cause__ or current.__context__
    return None


def gate_folder_of(root: Path, stage: str) -> Path | None:
    """The report folder (``<artifact>.gate/``) of gate stage ``stage``, from params.yaml;
    None when the declaration cannot be read (the gate's own error said why)."""
    from vcat.gates.checks import DeclarationError
    from vcat.gates.declarations import read_gates
    from vcat.gates.gate import default_folder

    name = stage.split("@", 1)[1] if "@" in stage else stage
    try:
        gate = read_gates(root / "params.yaml").get(name)
    except (DeclarationError, OSError):
        return None
    if gate is None or gate.artifact is None:
        return None
    artifact = Path(gate.artifact)
    return default_folder(artifact if artifact.is_absolute() else root / artifact)
