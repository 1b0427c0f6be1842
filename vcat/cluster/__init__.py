"""A real single-node SLURM cluster on 127.0.0.1, for development, tests and benches.

Debian's ``slurm-wlm``, ``slurmdbd``, ``munge`` and ``mariadb-server`` provide the programs;
:mod:`vcat.cluster.local` starts them in one folder (``vcat cluster up``), so that ``sbatch``,
``squeue``, ``scancel`` and ``sacct`` (which submitit reads job states from) are the real
ones. Clients find the cluster through ``SLURM_CONF`` (``vcat cluster env`` prints it).
"""
