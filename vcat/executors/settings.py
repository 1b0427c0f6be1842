"""The ``executor:`` section of ``params.yaml``: how the shards of a stage run.

It is read by every sharded stage, but listed in no stage's ``params`` in ``dvc.yaml``: how
the work is split changes where and how fast it runs, never the bytes it writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcat.stage import StageError, stage_conf

SECTION = "executor"
KINDS = ("local", "slurm")
DATA = ("shared", "remote")

default_conf: dict[str, Any] = {
    # local: the shards run as processes on this machine; slurm: as a job array (submitit)
    "kind": "local",
    # 1 runs each stage whole, in the process that dvc repro started
    "shards": 1,
    # shards running at once: local 0 = the machine's cores; slurm 0 = no limit
    "parallel": 0,
    # times a failed shard is started again before the stage fails
    "retries": 2,
    # SLURM only: each shard is one task of the array with these resources
    "partition": "",  # "" = the cluster's default partition
    "time": 60,  # minutes before SLURM ends a shard
    "cpus": 1,  # per shard (give the stage's own `jobs` setting the same number)
    "memory": "",  # per shard, as sbatch --mem takes it (4G, 500M); "" = the default
    "gpus": 0,  # per shard
    # shared: the shards read this checkout's inputs and write their parts beside the output;
    # remote: the inputs go to the DVC remote, each shard fetches what its block needs into
    # scratch, sends its part back there, and the merge fetches the parts from it
    "data": "shared",
    "remote": "",  # data: remote: the DVC remote ("" = the checkout's default remote)
    "scratch": "",  # data: remote: each shard's working folder on its node ("" = $TMPDIR)
}


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str
    shards: int
    parallel: int
    retries: int
    partition: str
    time: int
    cpus: int
    memory: str
    gpus: int
    data: str
    remote: str
    scratch: str

    @property
    def splits(self) -> bool:
        """True when the stage's work is to be split into shards."""
        return self.shards > 1


def executor_settings(params: Path | None = None) -> ExecutorSettings:
    """The ``executor:`` section of ``params`` (default: the project's params.yaml) merged
    into :data:`default_conf`; StageError naming the file, line and key when a value is
    wrong."""
    conf = stage_conf(SECTION, default_conf, params)
    settings = ExecutorSettings(**{key: conf[key] for key in default_conf})
    problems = []
    if settings.kind not in KINDS:
        problems.append(f"kind is {settings.kind!r}: write one of {', '.join(KINDS)}")
    if settings.data not in DATA:
        problems.append(f"data is {settings.data!r}: write one of {', '.join(DATA)}")
    if not 1 <= settings.shards <= 100_000:
        problems.append(f"shards is {settings.shards}: write a number from 1 to 100000")
    for key in ("parallel", "retries", "gpus"):
        if getattr(settings, key) < 0:
            problems.append(f"{key} is {getattr(settings, key)}: write 0 or more")
    for key in ("time", "cpus"):
        if getattr(settings, key) < 1:
            problems.append(f"{key} is {getattr(settings, key)}: write 1 or more")
    if problems:
        where = params if params is not None else "params.yaml"
        raise StageError(f"{where}: {SECTION}: " + "; ".join(problems))
    return settings
