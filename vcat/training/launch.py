"""How this process was launched: alone, by ``torchrun``, or as one task of a SLURM job step.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``; its rendezvous store already listens on that port, so the process group
joins it through ``env://``. ``srun`` sets ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` (the
step's ``SLURM_NTASKS``) and ``SLURM_LOCALID`` for every task of a job step
(``SLURM_STEP_ID``); rank 0 runs on the first host of the step's node list, and listens on a
port derived from the job and step ids (``MASTER_ADDR`` / ``MASTER_PORT`` override both).
A batch script or an ``salloc`` shell is not a job step: it runs alone even when the job has
several tasks. Anything else, or a world of one process, is a single process (``None``): no
process group at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

#: Ports from here on, below Linux's ephemeral range (32768-), so no port the OS hands out.
SLURM_PORT_BASE = 15000
SLURM_PORT_SPAN = 15000


class LaunchError(ValueError):
    """The launcher's environment is incomplete or inconsistent; the message names the
    variable."""


@dataclass(frozen=True)
class Launch:
    """One process of a distributed run: its rank among ``world_size``, its rank on its node
    (which GPU it takes), and where the process group meets (``init_method``)."""

    rank: int
    world_size: int
    local_rank: int
    init_method: str
    launcher: str  # "torchrun" or "srun", for messages


def detect_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The launch ``environ`` (default: this process's) describes (module doc); None for a
    single process. Raises LaunchError for a variable that is missing or not a number."""
    env = os.environ if environ is None else environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return _torchrun(env)
    if "SLURM_STEP_ID" in env and "SLURM_PROCID" in env:
        return _srun(env)
    return None


def _torchrun(env: Mapping[str, str]) -> Launch | None:
    world_size = _number(env, "WORLD_SIZE")
    if world_size == 1:
        return None
    rank = _number(env, "RANK")
    local_rank = _number(env, "LOCAL_RANK") if "LOCAL_RANK" in env else rank
    for name in ("MASTER_ADDR", "MASTER_PORT"):
        if not env.get(name):
            raise LaunchError(
                f"{name} is not set, but RANK and WORLD_SIZE are: start with torchrun"
            )
    return _checked(Launch(rank, world_size, local_rank, "env://", "torchrun"))


def _srun(env: Mapping[str, str]) -> Launch | None:
    tasks = "SLURM_STEP_NUM_TASKS" if "SLURM_STEP_NUM_TASKS" in env else "SLURM_NTASKS"
    world_size = _number(env, tasks)
    if world_size == 1:
        return None
    rank, local_rank = _number(env, "SLURM_PROCID"), _number(env, "SLURM_LOCALID")
    address = env.get("MASTER_ADDR") or first_host(
        env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST", "")
    )
    if "MASTER_PORT" in env:
        port = _number(env, "MASTER_PORT")
    else:
        port = slurm_port(_number(env, "SLURM_JOB_ID"), _number(env, "SLURM_STEP_ID"))
    return _checked(Launch(rank, world_size, local_rank, f"tcp://{address}:{port}", "srun"))


def slurm_port(job_id: int, step_id: int) -> int:
    """The port rank 0 of job step ``job_id.step_id`` listens on: the same in every task,
    different for the steps of one job and for consecutive jobs."""
    return SLURM_PORT_BASE + (job_id * 16 + step_id) % SLURM_PORT_SPAN


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: ``node[07-09,12],gpu1`` -> ``node07``,
    ``rack[2-3]-n[010-011]`` -> ``rack2-n010`` (zero padding kept). Raises LaunchError for
    an empty list."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    host = re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[-,]", m.group(1))[0], first)
    if not host:
        raise LaunchError(
            "SLURM_STEP_NODELIST and SLURM_JOB_NODELIST are empty: set MASTER_ADDR to rank 0's host"
        )
    return host


def _number(env: Mapping[str, str], name: str) -> int:
    value = env.get(name, "")
    try:
        return int(value)
    except ValueError:
        raise LaunchError(f"{name}={value!r} is not a whole number") from None


def _checked(launch: Launch) -> Launch:
    if launch.world_size < 1 or not 0 <= launch.rank < launch.world_size:
        raise LaunchError(
            f"{launch.launcher} gave rank {launch.rank} of {launch.world_size} processes"
        )
    if launch.local_rank < 0:
        raise LaunchError(f"{launch.launcher} gave a negative local rank {launch.local_rank}")
    return launch
