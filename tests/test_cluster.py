"""`vcat cluster`: a real single-node SLURM cluster (slurmctld, slurmd, slurmdbd, munged,
MariaDB) started and stopped by the project, answering the real sbatch, squeue and sacct."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vcat.cluster.config import ClusterLayout, Ports, node_memory_mb, slurm_conf
from vcat.cluster.local import ClusterState, cluster_down, cluster_up, read_state


@pytest.fixture
def folder(tmp_path: Path) -> Iterator[Path]:
    """A cluster folder whose cluster, if a test started one, is stopped however it ends
    (pytest later deletes the folder: daemons left running would have no state to stop)."""
    where = tmp_path / "cluster"
    try:
        yield where
    finally:
        if (where / "cluster.json").exists():
            cluster_down(where)


def vcat(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).with_name("vcat")), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)


def slurm(state: ClusterState, *command: str) -> str:
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, **state.environment()},
        timeout=60,
        check=True,
    )
    return result.stdout


def wait_for_no_jobs(state: ClusterState, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while slurm(state, "squeue", "-h", "-o", "%i").split():
        assert time.monotonic() < deadline, slurm(state, "squeue")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_job_array_runs_and_sacct_reports_each_task(
    slurm_cluster: ClusterState, tmp_path: Path
) -> None:
    script = tmp_path / "task.sh"
    script.write_text('#!/bin/sh\necho "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT"\n')
    job = slurm(
        slurm_cluster,
        "sbatch",
        "--parsable",
        "--array=0-3",
        f"--output={tmp_path}/out_%a.txt",
        str(script),
    ).strip()
    wait_for_no_jobs(slurm_cluster)
    for task in range(4):
        assert (tmp_path / f"out_{task}.txt").read_text() == f"task {task} of 4\n"
    expected = [f"{job}_{task}|COMPLETED" for task in range(4)]
    deadline = time.monotonic() + 30  # slurmdbd records a job a moment after it ends
    while True:
        states = slurm(slurm_cluster, "sacct", "-j", job, "-X", "-n", "-P", "-o", "JobID,State")
        if sorted(states.split()) == expected or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert sorted(states.split()) == expected


def test_the_node_has_the_machines_cpus(slurm_cluster: ClusterState) -> None:
    node = slurm(slurm_cluster, "scontrol", "show", "node", "localhost")
    assert f"CPUTot={os.cpu_count()}" in node
    assert "State=IDLE" in node


@pytest.mark.slow
def test_up_down_status_cli_and_down_ends_running_jobs(folder: Path, tmp_path: Path) -> None:
    started = vcat("cluster", "up", "--folder", str(folder))
    assert started.returncode == 0, started.stderr
    assert f"export SLURM_CONF={folder}/etc/slurm.conf" in started.stdout
    again = vcat("cluster", "up", "--folder", str(folder))
    assert again.returncode == 0 and "already running" in again.stdout
    status = json.loads(vcat("cluster", "status", "--folder", str(folder), "--json").stdout)
    assert status["up"] and status["node"] == "idle" and status["jobs"] == 0
    assert vcat("cluster", "env", "--folder", str(folder)).stdout == (
        f"export SLURM_CONF={folder}/etc/slurm.conf\n"
    )
    state = read_state(folder)
    assert state is not None
    marker = tmp_path / "running"
    job = slurm(
        state,
        "sbatch",
        "--parsable",
        f"--output={tmp_path}/long.txt",
        f"--wrap=touch {marker}; exec sleep 300",
    ).strip()
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the job did not start"
        time.sleep(0.1)

    stopped = vcat("cluster", "down", "--folder", str(folder))
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert not _processes_mentioning(str(folder)), "a daemon or job of the cluster is left"
    status = json.loads(vcat("cluster", "status", "--folder", str(folder), "--json").stdout)
    assert not status["up"] and not any(status["daemons"].values())

    # a new start keeps the accounting: sacct still knows the cancelled job
    assert vcat("cluster", "up", "--folder", str(folder)).returncode == 0
    try:
        recorded = slurm(state, "sacct", "-j", job, "-X", "-n", "-P", "-o", "State")
        assert recorded.split() == ["CANCELLED"]
    finally:
        cluster_down(folder)


def _processes_mentioning(text: str) -> list[str]:
    """Live processes whose command line or environment mentions ``text``."""
    found = []
    needle = text.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            status = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            words = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except (OSError, IndexError):
            continue
        if status != "Z" and needle in words:
            found.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:80]!r}")
    return found


def test_a_daemon_that_fails_to_start_is_named_with_its_log_and_nothing_is_left(
    folder: Path,
) -> None:
    # a database folder without its system tables: mariadbd stops at once, after munged began
    (folder / "mysql" / "mysql").mkdir(parents=True)
    result = vcat("cluster", "up", "--folder", str(folder))
    assert result.returncode == 2
    assert "mariadbd exited with" in result.stderr
    assert f"{folder}/log/mariadbd.log" in result.stderr
    assert "Traceback" not in result.stderr
    assert not _processes_mentioning(str(folder))
    state = read_state(folder)
    assert state is not None and state.pids == {}


def test_missing_programs_are_named_with_the_packages_to_install(tmp_path: Path) -> None:
    bare = {"PATH": str(Path(sys.executable).parent), "HOME": str(tmp_path)}
    result = vcat("cluster", "up", "--folder", str(tmp_path / "cluster"), env=bare)
    assert result.returncode == 2
    assert "slurmctld" in result.stderr and "apt-get install slurm-wlm" in result.stderr


def test_a_broken_state_file_says_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "cluster"
    folder.mkdir()
    (folder / "cluster.json").write_text("{not json")
    result = vcat("cluster", "status", "--folder", str(folder))
    assert result.returncode == 2
    assert f"{folder}/cluster.json is not a cluster state" in result.stderr
    assert "vcat cluster up" in result.stderr and "Traceback" not in result.stderr


def test_status_of_a_folder_without_a_cluster(tmp_path: Path) -> None:
    result = vcat("cluster", "status", "--folder", str(tmp_path / "none"))
    assert result.returncode == 0 and "no cluster" in result.stdout
    assert vcat("cluster", "env", "--folder", str(tmp_path / "none")).returncode == 2


def test_slurm_conf_names_the_node_ports_and_munge_socket(tmp_path: Path) -> None:
    layout = ClusterLayout(tmp_path)
    text = slurm_conf(layout, Ports(7001, 7002, 7003, 7004), "root", 3, 1000)
    assert "SlurmctldPort=7001" in text and "SlurmdPort=7002" in text
    assert "AccountingStoragePort=7003" in text
    assert f"AuthInfo=socket={tmp_path}/run/munge.socket" in text
    assert "NodeName=localhost NodeAddr=127.0.0.1 CPUs=3 RealMemory=1000" in text


def test_node_memory_is_nine_tenths_of_memtotal(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       10485760 kB\nMemFree: 1 kB\n")
    assert node_memory_mb(meminfo) == 9216
    meminfo.write_text("MemFree: 1 kB\n")
    with pytest.raises(ValueError, match="MemTotal"):
        node_memory_mb(meminfo)


@pytest.mark.slow
def test_up_in_a_folder_whose_start_failed_starts_cleanly(folder: Path) -> None:
    (folder / "mysql" / "mysql").mkdir(parents=True)
    assert vcat("cluster", "up", "--folder", str(folder)).returncode == 2
    shutil.rmtree(folder / "mysql")
    report = cluster_up(folder)
    try:
        assert report.started and all(report.state.running().values())
    finally:
        cluster_down(folder)
