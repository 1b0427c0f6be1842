"""The `vcat` command line: one typer sub-app or command per module, imported when it runs.

``COMMANDS`` names each command's ``module:attribute`` and the line ``vcat --help`` shows for
it, so listing the commands imports none of them (a test checks the lines match the commands).
"""

from __future__ import annotations

from vcat.cli.lazy import lazy_app

COMMANDS = {
    "catalog": (
        "vcat.cli.catalog:app",
        "Read, check and document the catalog of datasets and models.",
    ),
    "fetch": (
        "vcat.cli.fetch:fetch",
        "Download, verify and place an entry's sources; resumes what an earlier run left.",
    ),
    "status": (
        "vcat.cli.status:status",
        "Show whether each source and subset is absent, partial, fetched, verified, changed, "
        "damaged or failed.",
    ),
    "verify": (
        "vcat.cli.verify:verify",
        "Check a dataset's tree: its layout and the files its fetch placed, or every file "
        "against a manifest.",
    ),
    "manifest": (
        "vcat.cli.manifest:manifest_app",
        "Manifests: the size and digest of every file of a dataset, to verify copies with.",
    ),
    "audit": (
        "vcat.cli.audit:app",
        "Checks across datasets: `vcat audit leakage` finds held-out scenes and images, or near "
        "duplicates of them, in training artifacts.",
    ),
    "check": (
        "vcat.cli.check:check",
        "Run a data-quality gate on an artifact: profile it, validate it with "
        "great-expectations, list what failed.",
    ),
    "demo": ("vcat.cli.demo:app", "The embedded demo world."),
    "compare": (
        "vcat.cli.compare:compare",
        "Show every metric and param at each revision, marking changes and differences from "
        "the first revision.",
    ),
    "remote": ("vcat.cli.remote:app", "Local S3 remotes for releases (SeaweedFS on 127.0.0.1)."),
    "cluster": (
        "vcat.cli.cluster:app",
        "A single-node SLURM cluster on 127.0.0.1 (Debian's slurm-wlm, munge, slurmdbd).",
    ),
    "executor": (
        "vcat.cli.executor:app",
        "The shards of sharded stages (the executor: section of params.yaml).",
    ),
    "release": (
        "vcat.cli.release:release",
        "Push data to a remote; a public remote gets only what its licences let us share.",
    ),
    "run": (
        "vcat.cli.run:run",
        "Run gate -> pretrain -> gate -> features -> gate -> train -> gate -> evaluate -> gate "
        "for the current params, as `dvc repro` would; stop at the first failing gate.",
    ),
    "train": (
        "vcat.cli.run:train",
        "Pre-train the backbones, extract their features and train the heads, with the gates "
        "on their inputs and outputs (what they depend on runs first when stale).",
    ),
    "eval": (
        "vcat.cli.run:evaluate",
        "Run the evaluations and their gates (what they depend on runs first when stale).",
    ),
    "stage": (
        "vcat.stage:app",
        "Run one pipeline stage (dvc.yaml calls these); settings come from params.yaml.",
    ),
    "shards": ("vcat.cli.shards:app", "Folders of WebDataset shards (vcat.shards)."),
    "settings": (
        "vcat.cli.settings:app",
        "This checkout's local settings: remembered dataset roots and readable local folders.",
    ),
    "doctor": (
        "vcat.cli.doctor:doctor",
        "Check dvc.lock, .dvc files, DVC's config and cache objects; --fix repairs them.",
    ),
}

app = lazy_app(
    COMMANDS,
    name="vcat",
    help="A declarative catalog of computer-vision datasets and models, versioned with DVC.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Console-script entry point. An operating-system error that no command handled (a full
    disk, a name too long, a read-only mount) ends as one line naming the file, exit 2."""
    try:
        app()
    except OSError as error:
        import sys

        from vcat.oserrors import os_error_message

        sys.stderr.write(f"error: {os_error_message(error)}\n")
        raise SystemExit(2) from None
