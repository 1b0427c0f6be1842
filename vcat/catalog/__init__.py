"""The catalog: YAML entries for datasets and models, their schema, checks and docs."""
