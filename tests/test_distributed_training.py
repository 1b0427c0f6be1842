"""The pretrain stage in two processes, under torchrun and under SLURM's srun, on a tiny real
crop-pair set (the croco-crops stage on scikit-image photos, as its own tests make them).

Measured on this 2-core machine (one torch thread per process): the 6 steps here give per-step
losses within 2.4e-7 of one process (losses about 1.0-1.4; float32 spacing there is 1.2e-7)
and weights within 5.5e-7; the demo's own pre-training (236 pairs, 112 steps of 16) stays
within 1.2e-7 in every step's loss, its weights within 1.5e-5. The tests allow 1e-5 and 1e-4.
The two-process checkpoint is not the one-process file (the gradient sums round differently),
but two-process runs are: torchrun, srun and a run killed and resumed write the same bytes.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import torch
import yaml

from tests.process_tree import children
from tests.test_croco_crops import crops_text, make_world
from vcat.training.distributed import DistributedError, Ranks, shuffled_batches
from vcat.training.launch import Launch, LaunchError, detect_launch, first_host, slurm_port

if TYPE_CHECKING:
    from vcat.cluster.local import ClusterState

REPO = Path(__file__).resolve().parents[1]
VCAT = str(Path(sys.executable).with_name("vcat"))
MODEL = "demo-croco-vit"
CONF: dict[str, Any] = {
    "schedule": {"epochs": 2, "warmup_epochs": 1, "cosine_epochs": 2},
    "batch_size": 8,  # 25 pairs: 3 steps an epoch
    "lr": 2.0e-3,
    "device": "cpu",
}
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-4
LAUNCH_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_STEP_ID", "SLURM_PROCID")

# Installed in every process of a rank (RANK or SLURM_PROCID set): records each file that
# process creates, writes, renames, removes or makes a folder for under WRITES_WATCH.
WRITE_RECORDER = """
import os, sys

_watch = os.environ.get("WRITES_WATCH")
_rank = os.environ.get("RANK", os.environ.get("SLURM_PROCID"))
if _watch and _rank is not None:
    _root = os.path.realpath(_watch)
    _log = os.open(os.path.join(os.environ["WRITES_LOG"], "rank-" + _rank + ".log"),
                   os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    _writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
    _paths = {"os.rename": 1, "os.remove": 0, "os.mkdir": 0, "os.rmdir": 0}

    def _record(event, args):
        if event == "open" and isinstance(args[2], int) and args[2] & _writing:
            path = args[0]
        elif event in _paths:
            path = args[_paths[event]]
        else:
            return
        if isinstance(path, (str, bytes, os.PathLike)):
            real = os.path.realpath(os.fsdecode(path))
            if real == _root or real.startswith(_root + os.sep):
                os.write(_log, (event + " " + real + "\\n").encode())

    sys.addaudithook(_record)
"""


@dataclass(frozen=True)
class Run:
    """A finished pre-training: its output folder, error output, and (when recorded) the
    files each rank wrote there."""

    out: Path
    stderr: str
    writes: dict[str, list[str]]

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"

    def losses(self) -> list[float]:
        return [float(line.split("\t")[2]) for line in self.steps().splitlines()[1:]]

    def steps(self) -> str:
        return (self.out / "steps.tsv").read_text()

    def files(self) -> set[str]:
        return {str(p.relative_to(self.out)) for p in self.out.rglob("*") if p.is_file()}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stage_args(pairs: Path, out: Path, params: Path) -> list[str]:
    return [
        *("stage", "pretrain", str(pairs), MODEL, str(out / "checkpoint.pt")),
        *("--live", str(out / "live"), "--metrics", str(out / "metrics.json")),
        *("--steps", str(out / "steps.tsv"), "--params", str(params)),
    ]


def torchrun(*args: str) -> list[str]:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*launcher, "--nproc_per_node", "2", VCAT, *args]


def environment(scratch: Path, watch: Path | None = None) -> dict[str, str]:
    """The processes' environment: the project's catalog, one torch thread each (the same
    arithmetic under every launcher), and with ``watch``, the write recorder."""
    env = {k: v for k, v in os.environ.items() if k not in (*LAUNCH_VARIABLES, "VCAT_DEVICE")}
    env |= {"VCAT_CATALOG": str(REPO / "catalog"), "OMP_NUM_THREADS": "1"}
    if watch is not None:
        hooks = scratch / "hooks"
        hooks.mkdir(exist_ok=True)
        (hooks / "sitecustomize.py").write_text(WRITE_RECORDER)
        (scratch / "writes").mkdir(exist_ok=True)
        path = os.pathsep.join(filter(None, [str(hooks), env.get("PYTHONPATH")]))
        env |= {
            "PYTHONPATH": path,
            "WRITES_WATCH": str(watch),
            "WRITES_LOG": str(scratch / "writes"),
        }
    return env


def recorded_writes(scratch: Path) -> dict[str, list[str]]:
    return {p.stem: p.read_text().splitlines() for p in sorted((scratch / "writes").glob("*.log"))}


def launch(command: list[str], scratch: Path, out: Path) -> Run:
    """``command`` (a launcher of the pretrain stage writing to ``out``) run to its end."""
    done = subprocess.run(
        command,
        env=environment(scratch, watch=out),
        cwd=scratch,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return Run(out, done.stderr, recorded_writes(scratch))


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 crop pairs of 64x64, made by the croco-crops stage from scikit-image photos."""
    from stages.croco_crops import main as croco_crops

    folder = tmp_path_factory.mktemp("pairs")
    make_world(folder / "root")
    (folder / "crops.txt").write_text(crops_text())
    return croco_crops(
        {"imsize": 64, "jobs": 1}, folder / "crops.txt", folder / "root", folder / "pairs"
    )


@pytest.fixture(scope="module")
def params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump({"pretrain": CONF}))
    return path


@pytest.fixture(scope="module")
def one_process(pairs: Path, params: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The stage as one plain process, with one torch thread as the launched ranks have (in
    a process of its own: dvclive leaves a thread behind, which pytest's process must not
    keep, since other tests fork it)."""
    scratch = tmp_path_factory.mktemp("one")
    return launch([VCAT, *stage_args(pairs, scratch / "out", params)], scratch, scratch / "out")


@pytest.fixture(scope="module")
def two_processes(pairs: Path, params: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    scratch = tmp_path_factory.mktemp("torchrun")
    return launch(torchrun(*stage_args(pairs, scratch / "out", params)), scratch, scratch / "out")


# --- launch detection -----------------------------------------------------------------------


def test_torchrun_variables_make_a_launch_and_a_world_of_one_does_not() -> None:
    env = {
        "RANK": "1",
        "WORLD_SIZE": "2",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "h",
        "MASTER_PORT": "29500",
    }
    assert detect_launch(env) == Launch(1, 2, 1, "env://", "torchrun")
    assert detect_launch({**env, "RANK": "0", "WORLD_SIZE": "1"}) is None
    assert detect_launch({}) is None
    with pytest.raises(LaunchError, match="MASTER_PORT is not set"):
        detect_launch({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(LaunchError, match="RANK='one'"):
        detect_launch({**env, "RANK": "one"})
    with pytest.raises(LaunchError, match="rank 2 of 2"):
        detect_launch({**env, "RANK": "2"})


def test_an_srun_step_is_a_launch_and_a_batch_script_is_not() -> None:
    # what srun --ntasks=2 gave the second task of job 7 on this project's cluster
    step = {
        "SLURM_JOB_ID": "7",
        "SLURM_STEP_ID": "0",
        "SLURM_PROCID": "1",
        "SLURM_LOCALID": "1",
        "SLURM_NTASKS": "2",
        "SLURM_STEP_NUM_TASKS": "2",
        "SLURM_JOB_NODELIST": "localhost",
        "SLURM_STEP_NODELIST": "localhost",
    }
    port = slurm_port(7, 0)
    assert detect_launch(step) == Launch(1, 2, 1, f"tcp://localhost:{port}", "srun")
    assert 15000 <= port < 30000 and slurm_port(7, 1) != port != slurm_port(8, 0)
    override = {**step, "MASTER_ADDR": "head", "MASTER_PORT": "4000"}
    assert detect_launch(override) == Launch(1, 2, 1, "tcp://head:4000", "srun")
    batch_script = {k: v for k, v in step.items() if not k.startswith("SLURM_STEP")}
    assert detect_launch(batch_script) is None
    one_task = {"SLURM_NTASKS": "1", "SLURM_STEP_NUM_TASKS": "1", "SLURM_PROCID": "0"}
    assert detect_launch(step | one_task) is None
    # torchrun started by srun: torchrun's ranks
    both = {**step, "RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "3"}
    assert detect_launch({**both, "MASTER_ADDR": "h", "MASTER_PORT": "1"}) == Launch(
        3, 4, 3, "env://", "torchrun"
    )


@pytest.mark.parametrize(
    ("nodelist", "host"),
    [
        ("localhost", "localhost"),
        ("node[07-09,12],gpu1", "node07"),
        ("gpu1,node[07-09]", "gpu1"),
        ("node[3,5-6]", "node3"),
        ("rack[2-3]-n[010-011]", "rack2-n010"),
    ],
)
def test_the_first_host_of_a_slurm_host_list(nodelist: str, host: str) -> None:
    assert first_host(nodelist) == host


def test_an_empty_host_list_says_what_to_set() -> None:
    with pytest.raises(LaunchError, match="MASTER_ADDR"):
        first_host("")


# --- global batches -------------------------------------------------------------------------


@pytest.mark.parametrize(("items", "world_size", "drop_last"), [(25, 2, True), (29, 3, False)])
def test_the_ranks_parts_make_up_the_batches_of_one_process(
    items: int, world_size: int, drop_last: bool
) -> None:
    """The same seeded generator in every rank: the parts of step k, in rank order, are the
    batch one process takes at step k; a last batch of 5 (29 in batches of 6, kept with
    drop_last False) is split 1/2/2."""
    data = torch.utils.data.TensorDataset(torch.arange(items))
    cpu = torch.device("cpu")

    def batches(ranks: Ranks) -> list[list[int]]:
        generator = torch.Generator().manual_seed(11)
        loader = shuffled_batches(data, 6, generator, ranks, drop_last=drop_last)
        return [batch[0].tolist() for batch in loader]

    whole = batches(Ranks(0, 1, cpu))
    parts = [batches(Ranks(rank, world_size, cpu)) for rank in range(world_size)]
    assert [len(batch) for batch in whole] == ([6] * 4 if drop_last else [6] * 4 + [5])
    for step, batch in enumerate(whole):
        assert [item for part in parts for item in part[step]] == batch
    if not drop_last:
        assert [len(part[-1]) for part in parts] == [1, 2, 2]


def test_a_global_batch_that_does_not_split_names_the_param() -> None:
    ranks = Ranks(0, 2, torch.device("cpu"))
    assert ranks.local_batch(8, "pretrain.batch_size") == 4
    with pytest.raises(DistributedError, match=r"pretrain.batch_size is 9.*multiple of 2"):
        ranks.local_batch(9, "pretrain.batch_size")


# --- two processes --------------------------------------------------------------------------


def test_two_processes_take_the_steps_of_one(one_process: Run, two_processes: Run) -> None:
    one, two = one_process.losses(), two_processes.losses()
    assert len(one) == len(two) == 6
    assert max(abs(a - b) for a, b in zip(one, two, strict=True)) <= LOSS_TOLERANCE, (one, two)
    assert "by 2 processes" in two_processes.stderr
    assert two_processes.stderr.count("epoch 1/2") == 1  # rank 0 alone speaks
    single = torch.load(one_process.checkpoint, weights_only=True)
    double = torch.load(two_processes.checkpoint, weights_only=True)
    assert single["made_from"] == double["made_from"]
    assert single["model"].keys() == double["model"].keys()
    for name, weights in single["model"].items():
        assert torch.allclose(weights, double["model"][name], rtol=0, atol=WEIGHT_TOLERANCE), name


def test_only_rank_0_writes_the_outputs(one_process: Run, two_processes: Run) -> None:
    assert two_processes.writes.keys() == {"rank-0", "rank-1"}
    assert two_processes.writes["rank-1"] == []
    written = "\n".join(two_processes.writes["rank-0"])
    assert f"os.rename {two_processes.checkpoint}" in written
    assert two_processes.files() == one_process.files()


@pytest.mark.slow  # about 15 s; the fast tier launches two processes with torchrun
def test_srun_with_two_tasks_runs_the_same_training(
    slurm_cluster: ClusterState, pairs: Path, params: Path, two_processes: Run, tmp_path: Path
) -> None:
    """srun --ntasks=2 on the project's SLURM cluster: the ranks come from SLURM's variables,
    and the arithmetic is torchrun's, to the byte."""
    out = tmp_path / "out"
    command = ["srun", "--ntasks=2", "--cpus-per-task=1", sys.executable, "-m", "vcat"]
    env = environment(tmp_path, watch=out) | slurm_cluster.environment()
    done = subprocess.run(
        [*command, *stage_args(pairs, out, params)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    run = Run(out, done.stderr, recorded_writes(tmp_path))
    assert "by 2 processes" in run.stderr
    assert run.writes["rank-1"] == [] and run.writes["rank-0"]
    assert run.steps() == two_processes.steps()
    assert md5(run.checkpoint) == md5(two_processes.checkpoint)


@pytest.mark.slow  # two launches of two processes: about 30 s
def test_a_killed_two_process_run_resumes_from_its_checkpoint(
    pairs: Path, params: Path, two_processes: Run, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    command = torchrun(*stage_args(pairs, out, params))
    env = environment(tmp_path)
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    assert process.stderr is not None
    for line in process.stderr:  # rank 0 wrote the resume file just before this line
        if line.startswith("epoch 1/2"):
            break
    for worker in children(process.pid):
        os.kill(worker, signal.SIGKILL)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert not (out / "checkpoint.pt").exists()
    assert (out / ".checkpoint.pt.resume.pt").exists()

    resumed = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "epoch 1/2" not in resumed.stderr and "epoch 2/2" in resumed.stderr
    assert md5(out / "checkpoint.pt") == md5(two_processes.checkpoint)
    assert (out / "steps.tsv").read_text() == two_processes.steps()
    assert (out / "live" / "plots" / "metrics" / "loss.tsv").read_text() == (
        two_processes.out / "live" / "plots" / "metrics" / "loss.tsv"
    ).read_text()


@pytest.mark.slow  # a launch of two processes: about 12 s
def test_a_batch_size_that_does_not_split_stops_every_rank(pairs: Path, tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"pretrain": {**CONF, "batch_size": 9}}))
    out = tmp_path / "out"
    done = subprocess.run(
        torchrun(*stage_args(pairs, out, params)),
        env=environment(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode != 0
    assert "pretrain.batch_size is 9, the global batch; it does not split among 2" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("problem", ["port taken", "no master address"])
def test_a_launch_that_cannot_form_a_group_is_one_line(tmp_path: Path, problem: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {**os.environ, "RANK": "0", "WORLD_SIZE": "2", "VCAT_CATALOG": str(REPO / "catalog")}
        if problem == "port taken":
            env |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(taken.getsockname()[1])}
        command = [VCAT, "stage", "pretrain", str(tmp_path), "demo-croco-vit", "out.pt"]
        result = subprocess.run(
            [*command, "--live", "live"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    expected = (
        "address already in use; if the port is taken"
        if problem == "port taken"
        else ("MASTER_ADDR is not set")
    )
    assert expected in result.stderr
    assert not (tmp_path / "out.pt").exists()
