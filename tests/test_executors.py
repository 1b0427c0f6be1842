"""Executors: a sharded stage run as local processes or as a SLURM job array on the project's
real single-node cluster, retried, resumed after its submitter was killed, and merged to the
bytes of a single run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from tests.test_croco_crops import crops_text, folder_bytes, make_world
from vcat.cluster.local import ClusterState
from vcat.executors.command import stage_command_line
from vcat.executors.ledger import LEDGER_NAME, Ledger
from vcat.parts import parts_root

STAGE = {"imsize": 32, "jobs": 1, "shard_max_count": 7}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, bytes]]:
    """A project folder with a crop list and its images, and the bytes of a single run."""
    folder = tmp_path_factory.mktemp("executors")
    make_world(folder / "root", scenes=("0101", "0102", "0103"), per_scene=4)
    (folder / "crops.txt").write_text(crops_text(("0101", "0102", "0103"), per_scene=4))
    write_params(folder / "single.yaml")
    result = stage(folder, "single", "single.yaml")
    assert result.returncode == 0, result.stderr
    return folder, folder_bytes(folder / "single")


def write_params(path: Path, **executor: object) -> Path:
    path.write_text(yaml.safe_dump({"croco-crops": STAGE, "executor": executor}))
    return path


def stage_command(output: str, params: str) -> list[str]:
    """The crop stage of ``crops.txt`` and ``root`` into ``output``, as dvc.yaml would run it."""
    command = [sys.executable, "-m", "vcat", "stage", "croco-crops", "crops.txt", "root"]
    return [*command, output, "--params", params, "--metrics", f"{output}.json"]


def stage(
    folder: Path, output: str, params: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        stage_command(output, params),
        cwd=folder,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def start_stage(
    folder: Path, output: str, params: str, env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        stage_command(output, params),
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def watched_stage(folder: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    """The stage of ``p.yaml`` into ``out`` in ``folder``, started; its stderr to read at the
    end with ``communicate``."""
    return subprocess.Popen(
        stage_command("out", "p.yaml"),
        cwd=folder,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def cluster_env(cluster: ClusterState) -> dict[str, str]:
    return {**os.environ, **cluster.environment()}


def read_ledger(output: Path) -> dict[str, object]:
    try:
        return json.loads((parts_root(output) / LEDGER_NAME).read_text())
    except (OSError, ValueError):
        return {}


def wait_for(condition: object, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def array_tasks(cluster: ClusterState, workdir: Path, expected: int) -> list[str]:
    """``JobID|State`` of the jobs (array tasks, or a job of one shard: a retry) that ran in
    ``workdir``, sorted; sacct is asked again
    until it lists ``expected`` tasks, none still pending or running (slurmdbd records a job
    a moment after it ends)."""

    def listed() -> list[str]:
        text = subprocess.run(
            ["sacct", "-X", "-n", "-P", "-S", "now-1hour", "-o", "JobID,State,WorkDir"],
            capture_output=True,
            text=True,
            env=cluster_env(cluster),
            check=True,
        ).stdout
        rows = [line.rsplit("|", 1) for line in text.splitlines()]
        return sorted(row for row, where in rows if where == str(workdir))

    deadline = time.monotonic() + 30
    rows = listed()
    while time.monotonic() < deadline and (
        len(rows) < expected or any("PENDING" in row or "RUNNING" in row for row in rows)
    ):
        time.sleep(0.5)
        rows = listed()
    return rows


# --- local processes -------------------------------------------------------------------------


def test_local_shards_merge_to_the_single_runs_bytes(
    reference: tuple[Path, dict[str, bytes]],
) -> None:
    folder, single = reference
    write_params(folder / "local.yaml", kind="local", shards=3)
    result = stage(folder, "local", "local.yaml")
    assert result.returncode == 0, result.stderr
    assert folder_bytes(folder / "local") == single
    for index in range(3):
        assert f"local: shard {index}/3 done" in result.stderr
    assert not parts_root(folder / "local").exists(), "the executor's parts are removed"
    metrics = json.loads((folder / "local.json").read_text())
    assert (
        metrics["pairs_written"]
        == json.loads((folder / "single.json").read_text())["pairs_written"]
    )


@pytest.mark.slow
def test_a_shard_that_keeps_failing_ends_the_stage_naming_its_log_and_a_rerun_does_only_it(
    reference: tuple[Path, dict[str, bytes]], tmp_path: Path
) -> None:
    folder, single = reference
    project = tmp_path / "project"
    project.mkdir()
    (project / "crops.txt").write_bytes((folder / "crops.txt").read_bytes())
    (project / "root").symlink_to(folder / "root")
    write_params(project / "p.yaml", kind="local", shards=3, retries=1)
    # the last shard's pairs all come from scene 0103: its images missing, that shard fails
    (project / "root").unlink()
    (project / "root").mkdir()
    for scene in ("0101", "0102"):
        (project / "root" / scene).symlink_to(folder / "root" / scene)
    settings = yaml.safe_load((project / "p.yaml").read_text())
    settings["croco-crops"]["max_failed_fraction"] = 0.0
    (project / "p.yaml").write_text(yaml.safe_dump(settings))

    failed = stage(project, "out", "p.yaml")
    assert failed.returncode == 1, failed.stderr
    log = parts_root(project / "out") / "logs" / "shard-00002.attempt-2.log"
    assert "shard 2/3 failed (exit code 1" in failed.stderr and "retry 1 of 1" in failed.stderr
    done = sorted(read_ledger(project / "out")["done"])  # type: ignore[arg-type]
    assert 0 in done and 2 not in done  # 0103's pairs are at the end of the list
    assert f"{3 - len(done)} shard(s) failed 2 time(s)" in failed.stderr
    assert f"shard 2 (exit code 1; log: {log.relative_to(project)})" in failed.stderr
    assert "pairs failed" in log.read_text()
    assert "Traceback" not in failed.stderr

    (project / "root" / "0103").symlink_to(folder / "root" / "0103")
    again = stage(project, "out", "p.yaml")
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} of 3 shards finished earlier; running {3 - len(done)}" in again.stderr
    assert folder_bytes(project / "out") == single


@pytest.mark.slow
def test_a_killed_submitter_takes_its_local_shards_with_it_and_a_rerun_runs_only_the_rest(
    reference: tuple[Path, dict[str, bytes]],
) -> None:
    folder, single = reference
    write_params(folder / "one-at-a-time.yaml", kind="local", shards=4, parallel=1)
    output = folder / "killed-local"
    submitter = start_stage(folder, "killed-local", "one-at-a-time.yaml", dict(os.environ))
    wait_for(lambda: len(read_ledger(output).get("done", [])) >= 1, "a first shard")  # type: ignore[arg-type]
    submitter.send_signal(signal.SIGKILL)
    submitter.wait()
    wait_for(
        lambda: not _shard_processes(output), "the running shard to end with its submitter", 10
    )
    finished = len(read_ledger(output)["done"])  # type: ignore[arg-type]

    again = stage(folder, "killed-local", "one-at-a-time.yaml")
    assert again.returncode == 0, again.stderr
    if finished < 4:
        assert f"{finished} of 4 shards finished earlier; running {4 - finished}" in again.stderr
    assert folder_bytes(output) == single


def _shard_processes(output: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(output).encode() in (proc / "cmdline").read_bytes() or (
                    output.name.encode() in (proc / "cmdline").read_bytes()
                    and b"--shard" in (proc / "cmdline").read_bytes()
                ):
                    found.append(int(proc.name))
            except OSError:
                pass
    return found


# --- SLURM -----------------------------------------------------------------------------------


def test_a_4_shard_job_array_merges_to_the_single_runs_bytes(
    reference: tuple[Path, dict[str, bytes]], slurm_cluster: ClusterState
) -> None:
    folder, single = reference
    write_params(folder / "slurm.yaml", kind="slurm", shards=4)
    result = stage(folder, "slurm", "slurm.yaml", env=cluster_env(slurm_cluster))
    assert result.returncode == 0, result.stderr
    assert folder_bytes(folder / "slurm") == single
    tasks = array_tasks(slurm_cluster, folder, 4)
    job = tasks[0].split("_")[0]
    assert tasks == [f"{job}_{index}|COMPLETED" for index in range(4)]


@pytest.mark.slow
def test_a_shard_cancelled_with_scancel_is_started_again(
    reference: tuple[Path, dict[str, bytes]], slurm_cluster: ClusterState, tmp_path: Path
) -> None:
    folder, single = reference
    project = _copy_inputs(folder, tmp_path)
    write_params(project / "p.yaml", kind="slurm", shards=4, parallel=1)
    env = cluster_env(slurm_cluster)
    submitter = watched_stage(project, env)
    output = project / "out"
    wait_for(lambda: "3" in read_ledger(output).get("jobs", {}), "the job array")  # type: ignore[operator]
    task = read_ledger(output)["jobs"]["3"]  # type: ignore[index]
    # with one task at a time, the last one still waits its turn: cancel it there
    subprocess.run(["scancel", task], env=env, check=True)
    _, errors = submitter.communicate(timeout=300)
    assert submitter.returncode == 0, errors
    # a task cancelled before it started never reaches sacct: it is known by leaving the queue
    assert "shard 3/4 failed (it left the queue without a result" in errors
    assert "retry 1 of 2" in errors
    assert folder_bytes(output) == single
    tasks = array_tasks(slurm_cluster, project, 4)
    assert len(tasks) == 4 and all("COMPLETED" in row for row in tasks), tasks
    assert task not in {row.split("|")[0] for row in tasks}, "the cancelled task ran again"


#: Imported by every Python process that finds it on its path: the first process of array task
#: 0 to start takes the flag away and sleeps, so the test can cancel that task while it runs.
SLOW_FIRST_TASK = """
import os, pathlib, time
flag = pathlib.Path(os.environ["VCAT_TEST_SLOW_FLAG"])
if os.environ.get("SLURM_ARRAY_TASK_ID") == "0":
    try:
        flag.unlink()
    except FileNotFoundError:
        pass
    else:
        time.sleep(120)
"""


@pytest.mark.slow
def test_a_running_shard_cancelled_with_scancel_is_started_again(
    reference: tuple[Path, dict[str, bytes]], slurm_cluster: ClusterState, tmp_path: Path
) -> None:
    folder, single = reference
    project = _copy_inputs(folder, tmp_path)
    write_params(project / "p.yaml", kind="slurm", shards=2)
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SLOW_FIRST_TASK)
    flag = tmp_path / "slow-flag"
    flag.touch()
    env = {**cluster_env(slurm_cluster), "PYTHONPATH": str(hook)}
    env["VCAT_TEST_SLOW_FLAG"] = str(flag)
    submitter = watched_stage(project, env)
    output = project / "out"
    jobs = lambda: read_ledger(output).get("jobs", {})  # noqa: E731
    wait_for(lambda: not flag.exists() and "0" in jobs(), "task 0 to run")  # type: ignore[operator]
    task = jobs()["0"]  # type: ignore[index]
    subprocess.run(["scancel", task], env=env, check=True)
    _, errors = submitter.communicate(timeout=300)
    assert submitter.returncode == 0, errors
    assert "shard 0/2 failed (SLURM state CANCELLED" in errors, errors
    assert "retry 1 of 2" in errors
    assert folder_bytes(output) == single


@pytest.mark.slow
def test_a_killed_submitter_rerun_follows_the_queued_jobs_and_submits_nothing_again(
    reference: tuple[Path, dict[str, bytes]], slurm_cluster: ClusterState, tmp_path: Path
) -> None:
    folder, single = reference
    project = _copy_inputs(folder, tmp_path)
    write_params(project / "p.yaml", kind="slurm", shards=4, parallel=1)
    env = cluster_env(slurm_cluster)
    output = project / "out"
    submitter = start_stage(project, "out", "p.yaml", env)
    wait_for(lambda: len(read_ledger(output).get("done", [])) >= 1, "a first shard")  # type: ignore[arg-type]
    submitter.send_signal(signal.SIGKILL)
    submitter.wait()

    again = stage(project, "out", "p.yaml", env=env)
    assert again.returncode == 0, again.stderr
    assert "shards finished earlier" in again.stderr
    assert folder_bytes(output) == single
    tasks = array_tasks(slurm_cluster, project, 4)
    assert len(tasks) == 4 and all("COMPLETED" in row for row in tasks), tasks


def _copy_inputs(folder: Path, tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "crops.txt").write_bytes((folder / "crops.txt").read_bytes())
    (project / "root").symlink_to(folder / "root")
    return project


# --- the parts of an executor ----------------------------------------------------------------


def test_a_shards_command_line_is_the_stages_without_whole_run_options() -> None:
    app = typer.Typer()
    seen: list[list[str]] = []

    @app.command()
    def croco(
        context: typer.Context,
        crops: Path,
        output: Path,
        tree: Path | None = None,
        metrics: Path | None = None,
        merge: int | None = None,
        overwrite: bool = False,
        params: Path | None = None,
    ) -> None:
        seen.append(stage_command_line(context, whole_only={"tree"}))

    result = CliRunner().invoke(
        app,
        [
            "list.txt",
            "out",
            "--tree",
            "t",
            "--metrics",
            "m.json",
            "--overwrite",
            "--params",
            "p.yaml",
        ],
    )
    assert result.exit_code == 0, result.output
    assert seen[0][1:3] == ["-m", "vcat"]
    assert seen[0][5:] == ["list.txt", "out", "--overwrite", "--params", "p.yaml"]


def test_a_ledger_of_another_command_or_split_is_not_reused(tmp_path: Path) -> None:
    ledger = Ledger.open(tmp_path, ["a"], 4)
    ledger.done |= {0, 2}
    ledger.jobs[1] = "12_1"
    ledger.save()
    assert Ledger.open(tmp_path, ["a"], 4).done == {0, 2}
    assert Ledger.open(tmp_path, ["a"], 4).jobs == {1: "12_1"}
    assert Ledger.open(tmp_path, ["a"], 5).done == set()
    assert Ledger.open(tmp_path, ["b"], 4).done == set()
    (tmp_path / LEDGER_NAME).write_text("{not json")
    assert Ledger.open(tmp_path, ["a"], 4).todo() == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("executor", "message"),
    [
        ({"kind": "cloud"}, "kind is 'cloud': write one of local, slurm"),
        ({"shards": 0}, "shards is 0: write a number from 1 to 100000"),
        ({"shard": 4}, "executor.shard is not a setting"),
        ({"shards": "four"}, "executor.shards"),
    ],
)
def test_a_wrong_executor_setting_is_named_with_its_file(
    reference: tuple[Path, dict[str, bytes]],
    tmp_path: Path,
    executor: dict[str, object],
    message: str,
) -> None:
    folder, _ = reference
    project = _copy_inputs(folder, tmp_path)
    write_params(project / "p.yaml", **executor)
    result = stage(project, "out", "p.yaml")
    assert result.returncode == 2, result.stderr
    assert "p.yaml" in result.stderr and message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "out").exists()


def test_sbatch_refusing_the_array_is_one_line_saying_what_to_check(
    reference: tuple[Path, dict[str, bytes]], slurm_cluster: ClusterState, tmp_path: Path
) -> None:
    folder, _ = reference
    project = _copy_inputs(folder, tmp_path)
    write_params(project / "p.yaml", kind="slurm", shards=2, partition="nowhere")
    result = stage(project, "out", "p.yaml", env=cluster_env(slurm_cluster))
    assert result.returncode == 2, result.stderr
    assert "sbatch refused the job array" in result.stderr and "partition" in result.stderr
    assert "Traceback" not in result.stderr
