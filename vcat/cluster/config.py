"""The configuration files of the local cluster: ``slurm.conf`` and ``slurmdbd.conf``.

Every path, port and secret is an argument, so that several clusters (a test's, a user's)
live side by side. The node has the machine's CPUs and a little less than its memory:
slurmd drains a node that reports less than its configured ``RealMemory``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "vcat"
NODE_NAME = "localhost"
PARTITION = "debug"
ACCOUNTING_DATABASE = "slurm_acct_db"
ACCOUNTING_USER = "slurm"


@dataclass(frozen=True)
class ClusterLayout:
    """Where each file of a cluster folder lives."""

    folder: Path

    @property
    def slurm_conf(self) -> Path:
        return self.folder / "etc" / "slurm.conf"

    @property
    def slurmdbd_conf(self) -> Path:
        # slurmdbd reads slurmdbd.conf from the folder of SLURM_CONF
        return self.folder / "etc" / "slurmdbd.conf"

    @property
    def munge_key(self) -> Path:
        return self.folder / "etc" / "munge.key"

    @property
    def munge_socket(self) -> Path:
        return self.folder / "run" / "munge.socket"

    @property
    def database_dir(self) -> Path:
        return self.folder / "mysql"

    @property
    def database_socket(self) -> Path:
        return self.folder / "run" / "mysqld.sock"

    @property
    def state_dir(self) -> Path:
        return self.folder / "state"

    @property
    def spool_dir(self) -> Path:
        return self.folder / "spool"

    @property
    def run_dir(self) -> Path:
        return self.folder / "run"

    @property
    def log_dir(self) -> Path:
        return self.folder / "log"

    def log(self, daemon: str) -> Path:
        return self.log_dir / f"{daemon}.log"

    def pid_file(self, daemon: str) -> Path:
        return self.run_dir / f"{daemon}.pid"


@dataclass(frozen=True)
class Ports:
    """The TCP ports of one start, all on 127.0.0.1."""

    slurmctld: int
    slurmd: int
    slurmdbd: int
    database: int


def slurm_conf(layout: ClusterLayout, ports: Ports, user: str, cpus: int, memory_mb: int) -> str:
    """``slurm.conf`` for one node named ``localhost`` at 127.0.0.1 with ``cpus`` CPUs."""
    return "\n".join(
        [
            f"ClusterName={CLUSTER_NAME}",
            f"SlurmctldHost={NODE_NAME}(127.0.0.1)",
            f"SlurmctldPort={ports.slurmctld}",
            f"SlurmdPort={ports.slurmd}",
            f"SlurmUser={user}",
            f"SlurmdUser={user}",
            "AuthType=auth/munge",
            f"AuthInfo=socket={layout.munge_socket}",
            "CredType=cred/munge",
            f"StateSaveLocation={layout.state_dir}",
            f"SlurmdSpoolDir={layout.spool_dir}",
            f"SlurmctldPidFile={layout.pid_file('slurmctld')}",
            f"SlurmdPidFile={layout.pid_file('slurmd')}",
            f"SlurmctldLogFile={layout.log('slurmctld')}",
            f"SlurmdLogFile={layout.log('slurmd')}",
            # no systemd or cgroups here: processes are tracked through /proc
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_CPU",
            # the node's real topology may differ from CPUs=N; take the configured figures
            "SlurmdParameters=config_overrides",
            "ReturnToService=2",
            # sacct, which submitit reads job states from, needs the accounting daemon
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={ports.slurmdbd}",
            # without it sacct and sacctmgr fail with "Protocol authentication error"
            f"AccountingStoragePass={layout.munge_socket}",
            "JobCompType=jobcomp/none",
            "JobAcctGatherType=jobacct_gather/none",
            "MpiDefault=none",
            # a cancelled step gets SIGKILL 5 s after SIGTERM (30 s by default)
            "KillWait=5",
            "InactiveLimit=0",
            "MinJobAge=300",
            f"NodeName={NODE_NAME} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} "
            "State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={NODE_NAME} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]
    )


def slurmdbd_conf(layout: ClusterLayout, ports: Ports, user: str, password: str) -> str:
    """``slurmdbd.conf``: the accounting daemon on 127.0.0.1, storing into the local MariaDB.
    It holds the database password: write it with mode 600 (slurmdbd refuses it otherwise)."""
    return "\n".join(
        [
            "AuthType=auth/munge",
            f"AuthInfo=socket={layout.munge_socket}",
            "DbdAddr=127.0.0.1",
            "DbdHost=localhost",
            f"DbdPort={ports.slurmdbd}",
            f"SlurmUser={user}",
            f"PidFile={layout.pid_file('slurmdbd')}",
            f"LogFile={layout.log('slurmdbd')}",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={ports.database}",
            f"StorageUser={ACCOUNTING_USER}",
            f"StoragePass={password}",
            f"StorageLoc={ACCOUNTING_DATABASE}",
            "",
        ]
    )


def node_memory_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    """Nine tenths of the machine's memory in MB (slurmd must find at least as much)."""
    for line in meminfo.read_text(encoding="ascii").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 9 // 10 // 1024
    raise ValueError(f"{meminfo} has no MemTotal line")
