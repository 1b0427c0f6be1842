"""The leakage audit: held-out splits of the catalog against training artifacts.

A test or validation split declared ``held_out: true`` in the catalog names its scenes and
images (:mod:`vcat.audit.held_out`). Training artifacts (:mod:`vcat.audit.artifacts`) are
checked against them by identifier (a croco-crops pair cut from a held-out scene or image,
through its ``provenance.tsv``) and by near-duplicate perceptual hash (every image of an image
shard folder against every image file of the held-out splits found under the entries' data
roots, with faiss: :mod:`vcat.audit.near`). :mod:`vcat.audit.leakage` runs the checks and
reports each hit with both sides' paths; ``vcat audit leakage`` is the command.
"""

from __future__ import annotations


class AuditError(Exception):
    """The audit cannot run (missing artifact, nothing held out, an unreadable image); the
    message is one line naming the file and what to do."""
