"""Executors: run the shards of a sharded stage elsewhere, then merge them here.

A stage that takes ``--shard I/N`` and ``--merge N`` (:mod:`vcat.parts`) can be split by the
``executor:`` section of ``params.yaml`` without any change to ``dvc.yaml``: with
``shards: N`` above 1, the stage's command (as ``dvc repro`` runs it) starts its N shards as
local processes (``kind: local``) or as a SLURM job array through submitit (``kind: slurm``),
waits for them, retries a failed shard, and merges the parts into the output. Each shard runs
the stage's own command line with ``--shard I/N`` added, so a shard is exactly what a user
would run by hand, and the merged output is byte-identical to a single run.
"""
