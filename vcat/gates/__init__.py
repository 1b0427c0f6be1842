"""Data-quality gates: measure an artifact, check it against declared expectations, report.

A gate runs between the stage that writes an artifact and the stages that read it:

1. a *profiler* of the artifact's kind (``vcat.gates.kinds``) streams through it and turns it
   into tables, one row per item (an image, a pair, a list entry, a video, a matrix);
2. the kind's *checks* (``vcat.gates.checks``), with the parameters declared for this artifact
   (defaults, then the catalog entry's ``quality:``, then ``params.yaml``), become a
   great-expectations suite;
3. great-expectations validates the tables (``vcat.gates.validate``) in an ephemeral context and
   writes its Data Docs; the outcome is summarised, listed per item and written as JSON and
   metrics (``vcat.gates.report``).

``vcat check ARTIFACT`` runs a gate by hand; ``vcat stage gate`` is the same as a DVC stage,
which exits 1 when the gate fails so that ``dvc repro`` runs nothing downstream of it.
"""
