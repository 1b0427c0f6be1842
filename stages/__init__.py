"""Pipeline stages: one module per step, each called by `dvc.yaml` through the CLI.

The contract of a stage module: a typed ``main(conf, inputs..., output, overwrite=False) ->
Path``; a ``default_conf`` merged with OmegaConf in struct mode (unknown keys are errors);
every path given on the command line; resumable, idempotent and deterministic; outputs
written under a temporary name and renamed into place. Stages use ``vcat``; ``vcat`` never
imports stages.
"""
