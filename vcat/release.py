"""Releasing DVC-tracked data to a remote, within what the catalog's licences allow.

A release names DVC targets (tracked paths or stage names; none means everything tracked).
Each output it would push is traced back to the catalog entries it derives from:
``data/sources/<entry>`` belongs to ``<entry>``, and a stage's output derives from the
stage's dependencies, recorded in ``dvc.lock`` and declared in ``dvc.yaml``, followed
transitively. A public remote (see ``vcat.remote``) gets nothing that derives from an entry
whose ``licence.redistribution`` is ``forbidden`` or ``unknown``, or from a folder under
``data/sources`` that no entry describes.

The push itself is ``dvc push`` in a child process, watched: when the remote's endpoint stops
answering, the push is stopped at once instead of retrying every object, and the caller
learns which endpoint it was (``ServerStopped``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vcat.catalog.loader import Catalog
from vcat.remote import Audience, probe

SOURCES = ("data", "sources")
#: Seconds between two looks at the endpoint during a push.
PROBE_INTERVAL = 0.5
#: Seconds ``dvc push`` gets to stop after SIGINT before it is killed.
STOP_GRACE = 15.0


class ReleaseError(Exception):
    """The release cannot be worked out; the message says what to do."""


@dataclass(frozen=True)
class Producer:
    """A DVC stage or ``.dvc`` file: the outputs it makes and the paths they derive from."""

    name: str
    outs: tuple[str, ...]
    deps: tuple[str, ...]


@dataclass(frozen=True)
class Released:
    """One output a release pushes and the catalog entries it derives from.

    ``sources`` maps each entry name to the chain from the output down to the entry's data,
    alternating paths and the stages between them. ``files`` pairs the name of each file the
    push sends (``output/...``) with where its bytes are read from: the DVC cache object, or
    the workspace file when the cache does not hold it.
    """

    target: str | None
    output: str
    sources: dict[str, tuple[str, ...]]
    files: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Refusal:
    """An output a public remote may not receive, and the licence that says so."""

    released: Released
    entry: str
    licence: str
    redistribution: str


def plan_release(project_root: Path, targets: Sequence[str]) -> list[Released]:
    """Every cached output ``dvc push`` would send for ``targets``, with what it derives from.

    Targets are resolved as DVC resolves them (relative to the working directory); an
    unknown one raises ``ReleaseError``.
    """
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(project_root)) as repo:
            graph = pipeline_graph(repo)
            pushed: dict[tuple[str | None, str], list[tuple[str, str]]] = {}
            for target in targets or [None]:
                try:
                    collected = repo.stage.collect_granular(target)
                except DvcException as exc:
                    raise ReleaseError(
                        f"{target!r} is neither a DVC-tracked path nor a stage name ({exc}); "
                        "`dvc data status --granular` and `dvc stage list` show what is tracked"
                    ) from None
                for info in collected:
                    for path, files in _pushed_paths(repo, info):
                        pushed.setdefault((target, path), []).extend(files)
    except DvcException as exc:
        raise ReleaseError(f"DVC cannot read this checkout: {exc}") from None
    entries_here = _entries_on_disk(project_root)
    plan = []
    for (target, output), files in pushed.items():
        sources = trace(output, graph, entries_here)
        plan.append(Released(target, output, sources, tuple(dict.fromkeys(files))))
    return plan


def pipeline_graph(repo: Any) -> list[Producer]:
    """Every stage and ``.dvc`` file of ``repo`` with repository-relative paths.

    A pipeline stage's dependencies are those ``dvc.lock`` recorded when it last ran (what
    its outputs were really built from) together with those ``dvc.yaml`` declares now.
    """
    root = Path(repo.root_dir)
    producers = []
    for stage in repo.index.stages:
        outs = tuple(p for out in stage.outs if (p := _in_repo(root, out)))
        deps = {p for dep in stage.deps if (p := _in_repo(root, dep))}
        deps.update(_locked_deps(stage, root))
        producers.append(Producer(stage.addressing, outs, tuple(sorted(deps))))
    return producers


def _in_repo(root: Path, output: Any) -> str | None:
    if not output.is_in_repo:
        return None
    return Path(os.path.relpath(output.fs_path, root)).as_posix()


def _locked_deps(stage: Any, root: Path) -> set[str]:
    name = getattr(stage, "name", None)
    if name is None:  # a .dvc file: it has no lock entry
        return set()
    recorded = stage.dvcfile.lockfile_contents.get("stages", {}).get(name, {})
    paths = set()
    for dep in recorded.get("deps", []):
        if "://" in dep["path"]:
            continue  # a URL (import-url): not a path in this repository
        absolute = os.path.normpath(os.path.join(stage.wdir, dep["path"]))
        relative = os.path.relpath(absolute, root)
        if not relative.startswith(".."):
            paths.add(Path(relative).as_posix())
    return paths


def _pushed_paths(repo: Any, info: Any) -> list[tuple[str, list[tuple[str, str]]]]:
    """The paths ``dvc push`` sends for one collected stage (repository-relative; an output
    outside the repository by its absolute path), each with its files (see ``Released``)."""
    root = Path(repo.root_dir)
    found = []
    for out in info.stage.outs:
        if not out.use_cache:
            continue
        path = _in_repo(root, out) or str(out.fs_path)
        if info.filter_info is None:
            found.append((path, _cached_files(out, path, None)))
            continue
        wanted = Path(os.path.relpath(info.filter_info, root)).as_posix()
        if _overlaps(wanted, path):
            found.append((wanted, _cached_files(out, wanted, info.filter_info)))
    return found


def _cached_files(out: Any, path: str, filter_info: str | None) -> list[tuple[str, str]]:
    """``(name, file to read)`` for every file of one output that a push sends."""
    from dvc.exceptions import DvcException

    try:
        obj = out.get_obj(filter_info=filter_info)
    except (DvcException, OSError, KeyError, ValueError):
        obj = None  # the cache cannot tell: the workspace's files are checked instead
    if obj is None:
        return _workspace_files(Path(filter_info or out.fs_path), path)
    from dvc_data.hashfile.tree import Tree

    base = Path(filter_info or out.fs_path)
    if not isinstance(obj, Tree):
        return [(path, _object_or_workspace(out, obj.hash_info.value, base))]
    files = []
    for key, _, hash_info in obj:
        name = "/".join((path, *key))
        files.append((name, _object_or_workspace(out, hash_info.value, base.joinpath(*key))))
    return files


def _object_or_workspace(out: Any, oid: str | None, workspace: str | Path) -> str:
    cached = out.cache.oid_to_path(oid) if oid else None
    return cached if cached is not None and os.path.isfile(cached) else str(workspace)


def _workspace_files(folder: Path, name: str) -> list[tuple[str, str]]:
    if folder.is_file():
        return [(name, str(folder))]
    return [
        (f"{name}/{file.relative_to(folder).as_posix()}", str(file))
        for file in sorted(folder.rglob("*"))
        if file.is_file()
    ]


def _overlaps(a: str, b: str) -> bool:
    """One path is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def entry_of(path: str) -> str | None:
    """The catalog entry whose data ``path`` is: ``data/sources/<entry>[/...]``,
    ``data/sources/<entry>.dvc`` and the work area ``data/sources/.<entry>.vcat``."""
    parts = path.split("/")
    if tuple(parts[:2]) != SOURCES or len(parts) < 3:
        return None
    name = parts[2]
    if name.startswith("."):
        work_area = name.endswith(".vcat") and len(name) > len("..vcat")
        return name[1 : -len(".vcat")] if work_area else None
    return name.removesuffix(".dvc") or None


def _entries_on_disk(project_root: Path) -> list[str]:
    folder = project_root.joinpath(*SOURCES)
    if not folder.is_dir():
        return []
    names = {entry_of("/".join((*SOURCES, child.name))) for child in folder.iterdir()}
    return sorted(name for name in names if name)


def trace(
    output: str, graph: list[Producer], entries_here: list[str]
) -> dict[str, tuple[str, ...]]:
    """The catalog entries ``output`` derives from, each with its chain of derivation.

    A path under ``data/sources/<entry>`` is that entry's data; a path that holds all of
    ``data/sources`` (``data`` itself, say) covers every entry there. A path some stage
    writes (or lies inside, or contains) derives from that stage's dependencies.
    """
    sources_dir = "/".join(SOURCES)
    found: dict[str, tuple[str, ...]] = {}
    visited_paths: set[str] = set()
    visited_stages: set[str] = set()
    pending: list[tuple[str, tuple[str, ...]]] = [(output, (output,))]
    while pending:
        path, chain = pending.pop(0)  # breadth first: the shortest chain is reported
        if path in visited_paths:
            continue
        visited_paths.add(path)
        entry = entry_of(path)
        if entry is not None:
            found.setdefault(entry, chain)
        if path == sources_dir or sources_dir.startswith(path + "/"):
            for name in entries_here:
                found.setdefault(name, (*chain, f"{sources_dir}/{name}"))
        for producer in graph:
            if producer.name in visited_stages:
                continue
            if any(_overlaps(path, out) for out in producer.outs):
                visited_stages.add(producer.name)
                for dep in producer.deps:
                    pending.append((dep, (*chain, f"stage {producer.name}", dep)))
    return found


def refusals(plan: list[Released], catalog: Catalog, audience: Audience) -> list[Refusal]:
    """What a remote of ``audience`` may not receive: for a public one, every output that
    derives from an entry whose licence forbids redistribution, leaves it unknown, or that
    the catalog does not describe. A private remote refuses nothing."""
    if audience != Audience.PUBLIC:
        return []
    entries = catalog.by_name()
    broken = {problem.path.stem for problem in catalog.problems}
    found = []
    for released in plan:
        for name in sorted(released.sources):
            entry = entries.get(name)
            if entry is None:
                why = "its entry file is invalid" if name in broken else "no catalog entry"
                found.append(Refusal(released, name, why, "unknown"))
            elif entry.spec.licence.redistribution != "allowed":
                licence = entry.spec.licence
                found.append(Refusal(released, name, licence.name, str(licence.redistribution)))
    return found


# --- the push ------------------------------------------------------------------------------


class ServerStopped(Exception):
    """The remote's endpoint stopped answering (refused or reset the connection)."""

    def __init__(self, endpoint: str) -> None:
        super().__init__(endpoint)
        self.endpoint = endpoint


class PushFailed(Exception):
    """``dvc push`` failed for another reason; the message holds DVC's errors."""


@dataclass(frozen=True)
class PushResult:
    """What ``dvc push`` reported: files uploaded, and its warnings."""

    pushed: int
    warnings: list[str]


_CANNOT_CONNECT = re.compile(r'Could not connect to the endpoint URL: "(https?://[^/"]+)')
_PUSHED = re.compile(r"^(\d+) files? pushed", re.MULTILINE)


def push(targets: Sequence[str], remote: str, jobs: int | None, endpoint: str | None) -> PushResult:
    """``dvc push -r remote [-j jobs] targets`` from the working directory.

    With ``endpoint`` (the remote's ``endpointurl``) the server is watched while the push
    runs; if it refuses connections, the push is interrupted and ``ServerStopped`` raised.
    Objects uploaded before are complete on the remote, so a later push sends only the rest.
    Ctrl-C stops the push too (``KeyboardInterrupt`` after it has stopped).
    """
    command = [sys.executable, "-m", "dvc", "push", "-r", remote]
    if jobs is not None:
        command += ["-j", str(jobs)]
    command += list(targets)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace"
    )
    try:
        out, err, stopped = _watch(process, endpoint)
    except KeyboardInterrupt:
        _stop(process)  # it got the SIGINT too, being in our process group
        raise
    if stopped:
        assert endpoint is not None
        raise ServerStopped(endpoint)
    if process.returncode != 0:
        unreachable = _CANNOT_CONNECT.search(err)
        if unreachable is not None:
            raise ServerStopped(unreachable.group(1))
        if endpoint is not None and probe(endpoint) == "refused":
            raise ServerStopped(endpoint)
        errors = [line for line in err.splitlines() if line.startswith("ERROR")]
        raise PushFailed("; ".join(errors) or err.strip() or f"exit status {process.returncode}")
    counted = _PUSHED.search(out)
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    return PushResult(int(counted.group(1)) if counted else 0, warnings)


def _watch(process: subprocess.Popen[str], endpoint: str | None) -> tuple[str, str, bool]:
    """Wait for ``process``; stop it if ``endpoint`` refuses twice in a row."""
    refused = 0
    while True:
        try:
            out, err = process.communicate(timeout=PROBE_INTERVAL)
            return out, err, False
        except subprocess.TimeoutExpired:
            pass
        if endpoint is None:
            continue
        refused = refused + 1 if probe(endpoint) == "refused" else 0
        if refused >= 2:
            out, err = _stop(process)
            return out, err, True


def _stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    """Interrupt ``dvc push`` as Ctrl-C would; kill it if it does not stop in time."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        return process.communicate(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.communicate()
