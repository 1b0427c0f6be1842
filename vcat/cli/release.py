"""`vcat release [TARGETS...]`: push DVC-tracked data to a remote, within its licences.

Exit codes: 0 pushed (or nothing to push), 1 refused (by a licence, an output outside the data
folders, or an output holding a secret or a sensitive file's bytes) or the push failed (what
was uploaded stays on the remote; the same command finishes it), 2 the command could not
run, 130 interrupted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from vcat.catalog.loader import Catalog, load_catalog
from vcat.cli.common import print_problems
from vcat.cli.options import CatalogOption
from vcat.console import fail, stderr, stdout
from vcat.leaks import find_leaks, fingerprints, path_refusal
from vcat.project import ProjectNotFound, default_catalog_dir, find_project_root
from vcat.release import (
    PushFailed,
    Refusal,
    Released,
    ReleaseError,
    ServerStopped,
    plan_release,
    push,
    refusals,
)
from vcat.remote import (
    RELEASES_FILE,
    Audience,
    ReleasesError,
    RemoteError,
    audience_of,
    default_remote,
    dvc_remote,
    load_audiences,
    probe,
    remote_url,
)


def _say(message: str) -> None:
    stdout.print(escape(message), highlight=False)


def _origins(released: Released, catalog: Catalog) -> str:
    if not released.sources:
        return "derives from no catalog entry"
    entries = catalog.by_name()
    described = []
    for name in sorted(released.sources):
        entry = entries.get(name)
        licence = (
            f"{entry.spec.licence.name}, redistribution {entry.spec.licence.redistribution}"
            if entry is not None
            else "no catalog entry"
        )
        described.append(f"{name} ({licence})")
    return "from " + ", ".join(described)


def _refusal_line(refusal: Refusal) -> str:
    released = refusal.released
    named = f" (target {released.target})" if released.target not in (None, released.output) else ""
    chain = " <- ".join(released.sources[refusal.entry])
    return (
        f"  {released.output}{named}: derives from {refusal.entry!r}, licence "
        f"{refusal.licence} (redistribution {refusal.redistribution}), via {chain}"
    )


def _private_remotes(root: Path) -> str:
    private = [name for name, who in load_audiences(root).items() if who == Audience.PRIVATE]
    if private:
        return "--remote " + " or --remote ".join(private)
    return f"`vcat remote up NAME`, or `audience: private` for a remote in {RELEASES_FILE}"


def _unreachable(endpoint: str, remote: str, served: bool) -> str:
    again = (
        f"run `vcat remote up {remote}`, then the same command again"
        if served
        else "start the server or check the remote's endpointurl, then run the same command again"
    )
    return (
        f"the S3 endpoint {endpoint} of remote {remote!r} did not answer (connection refused); "
        f"objects already uploaded are kept on the remote; {again}"
    )


def _refuse_misplaced(plan: list[Released]) -> None:
    """Exit 1 before any push when an output lies outside the data folders (see
    ``vcat.leaks``), whatever the remote's audience."""
    misplaced = [(r.output, why) for r in plan if (why := path_refusal(r.output)) is not None]
    if misplaced:
        stderr.print(
            f"[red]error:[/red] {len(misplaced)} output(s) may not be released from where they "
            "lie:",
            highlight=False,
        )
        for output, why in misplaced:
            stderr.print(escape(f"  {output}: {why}"), highlight=False)
        stderr.print(
            "nothing was pushed: outputs belong in data/, models/ or metrics/; move the stage's "
            "output there (or `dvc remove` the .dvc file that tracks it)",
            highlight=False,
        )
        raise typer.Exit(1)


def _refuse_leaks(plan: list[Released], root: Path) -> None:
    """Exit 1 before any push when a file to push holds a secret or a sensitive file's bytes
    (see ``vcat.leaks``), whatever the remote's audience."""
    prints = fingerprints(root)
    leaks = [leak for r in plan for leak in find_leaks(r.output, r.files, prints)]
    if leaks:
        stderr.print(
            f"[red]error:[/red] {len({leak.output for leak in leaks})} output(s) hold bytes that "
            "must never leave this machine:",
            highlight=False,
        )
        for leak in leaks:
            stderr.print(escape(f"  {leak.output}: {leak.describe()}"), highlight=False)
        stderr.print(
            "nothing was pushed: a list or entry made a stage read a local file it should not "
            "have; fix the list, rebuild the output (`dvc repro`), and rotate any credential "
            "named above if this output was ever shared",
            highlight=False,
        )
        raise typer.Exit(1)


def release(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="DVC-tracked paths or stage names (default: everything tracked)."),
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option("--remote", "-r", help="DVC remote (default: the checkout's default)."),
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Parallel uploads (DVC's default).")
    ] = None,
    catalog_dir: CatalogOption = None,
) -> None:
    """Push data to a remote; a public remote gets only what its licences let us share."""
    from dvc.config import ConfigError

    try:
        root = find_project_root()
        catalog = load_catalog([catalog_dir or default_catalog_dir()])
    except ProjectNotFound as exc:
        fail(str(exc))
    try:
        name = remote or default_remote(root)
        if name is None:
            fail(
                "no --remote given and this checkout has no default DVC remote: "
                "pass --remote NAME, or run `vcat remote up` to serve one"
            )
        settings = dvc_remote(root, name)
        audience, declared = audience_of(root, name)
    except ReleasesError as exc:
        print_problems(exc)
        raise typer.Exit(2) from None
    except (RemoteError, ConfigError) as exc:
        fail(str(exc))
    if not settings:
        fail(
            f"remote {name!r} is not configured in this checkout: run `vcat remote up {name}` "
            f"(or `dvc remote add {name} URL`)"
        )
    try:
        plan = plan_release(root, targets or [])
    except ReleaseError as exc:
        fail(str(exc))

    why = f"in {RELEASES_FILE}" if declared else f"not listed in {RELEASES_FILE}, so public"
    _say(f"release to {name!r} ({settings.get('url')}, {audience}: {why})")
    for released in plan:
        _say(f"  {released.output}: {_origins(released, catalog)}")
    _refuse_misplaced(plan)
    refused = refusals(plan, catalog, audience)
    if refused:
        outputs = len({refusal.released.output for refusal in refused})
        stderr.print(
            f"[red]error:[/red] remote {escape(name)!r} is {audience}; {outputs} output(s) "
            "derive from data whose licence does not allow redistribution:",
            highlight=False,
        )
        for refusal in refused:
            stderr.print(escape(_refusal_line(refusal)), highlight=False)
        stderr.print(
            f"nothing was pushed: push these to a private remote ({_private_remotes(root)}), "
            "or leave them out of this release (name only the targets you may share)",
            highlight=False,
        )
        raise typer.Exit(1)
    if not plan:
        _say("nothing to push: no cached DVC outputs in these targets")
        return
    _refuse_leaks(plan, root)
    if audience == Audience.PUBLIC and not declared:
        stderr.print(
            f"[dim]declare the remote in {escape(RELEASES_FILE)} to say who may read it[/dim]"
        )

    endpoint = settings.get("endpointurl")
    served = settings.get("url") == remote_url(name)
    try:
        if endpoint is not None and probe(endpoint) == "refused":
            raise ServerStopped(endpoint)
        result = push(targets or [], name, jobs, endpoint)
    except ServerStopped as exc:
        fail(_unreachable(exc.endpoint, name, served), code=1)
    except PushFailed as exc:
        fail(f"dvc push to {name!r} failed: {exc}; run the same command again", code=1)
    except KeyboardInterrupt:
        stderr.print("interrupted: objects already uploaded are kept; run the same command again")
        raise typer.Exit(130) from None
    for warning in result.warnings:
        stderr.print(escape(warning), highlight=False)
    done = f"pushed {result.pushed} file(s)" if result.pushed else "nothing new to push"
    _say(f"{done} to {name!r}")
