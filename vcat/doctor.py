"""``vcat doctor``: what DVC does not check, checked.

- **Its own files.** A ``dvc repro`` or ``dvc add`` stopped while it rewrites ``dvc.lock`` or
  a ``.dvc`` file can leave it empty or cut short; every ``dvc`` command then fails with a
  bare validation error. Each such file is named with the way back: its version in git
  (``--fix`` restores it when git has a valid one; an empty lock that git does not have is
  deleted, so that the next ``dvc repro`` runs the stages again).
- **Its configuration.** A remote section that ``.dvc/config.local`` keeps after
  ``.dvc/config`` renamed or removed the remote (see ``vcat.remote``), and a
  ``config.local`` that others can read although it holds credentials (``--fix`` makes it
  mode 600).
- **Its cache.** DVC names each cache object by the MD5 of its content but never checks it
  again: ``dvc checkout`` copies a damaged object into the workspace, and ``dvc pull
  --force`` does not replace it, because the object "exists". Every object that
  ``dvc.lock`` and the ``.dvc`` files reference is hashed and compared with its name; for a
  folder, its listing (``<md5>.dir``) and every file it lists. ``--fix`` removes damaged
  objects, and the workspace files that are byte-for-byte copies of one, so that ``dvc pull``
  fetches them again.

Objects that are simply absent (a fresh clone before ``dvc pull``) are counted, not problems.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vcat.problems import Problem, Severity

LOCK_FILE = "dvc.lock"
_OBJECT_NAME = re.compile(r"[0-9a-f]{32}")
#: Called with the number of bytes just hashed (for a progress bar).
Progress = Callable[[int], None]


class DoctorError(Exception):
    """The check could not run; the message says why and what to do."""


@dataclass
class Finding:
    """One problem: where, what, and whether ``--fix`` can (or did) repair it."""

    path: Path
    line: int
    message: str
    fixable: bool = False
    fixed: bool = False

    def problem(self) -> Problem:
        return Problem(self.path, self.line, Severity.ERROR, self.message)


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    objects_checked: int = 0
    bytes_checked: int = 0
    missing: list[str] = field(default_factory=list)  # workspace paths whose object is absent
    skipped_cache: str | None = None  # why the cache was not checked
    next_steps: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return all(finding.fixed for finding in self.findings)


# --- dvc.lock and .dvc files ----------------------------------------------------------------


def dvc_files(root: Path) -> list[Path]:
    """``dvc.lock`` (when present) and every ``.dvc`` file of the checkout that git sees
    (tracked, or new and not ignored); every one under ``root`` without git."""
    found: list[Path] = []
    if (root / LOCK_FILE).exists():
        found.append(root / LOCK_FILE)
    listed = _git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    if listed is not None:
        names = [name for name in listed.decode().split("\0") if name.endswith(".dvc")]
        found += [root / name for name in sorted(set(names)) if (root / name).is_file()]
        return found
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        found += [Path(folder) / name for name in sorted(files) if name.endswith(".dvc")]
    return found


def check_dvc_file(root: Path, path: Path, fix: bool) -> Finding | None:
    """A finding when ``path`` (dvc.lock or a .dvc file) is empty or not what DVC can read."""
    trouble = _file_trouble(path.name, path.read_bytes())
    if trouble is None:
        return None
    line, what = trouble
    relative = path.relative_to(root).as_posix()
    kept = _git(root, "show", f"HEAD:{relative}")
    is_lock = path.name == LOCK_FILE
    cause = (
        "a `dvc repro` stopped while writing it leaves it so"
        if is_lock
        else "a `dvc add` or `dvc commit` stopped while writing it leaves it so"
    )
    if kept is not None and _file_trouble(path.name, kept) is None:
        after = (
            "stages that ran since the last commit run again at the next `dvc repro`"
            if is_lock
            else f"then `dvc checkout {relative}` if its data changed since the last commit"
        )
        message = (
            f"{what}; {cause}, and every dvc command fails until it is restored from git: "
            f"`git checkout -- {relative}` (or `vcat doctor --fix`); {after}"
        )
        finding = Finding(path, line, message, fixable=True)
        if fix:
            _replace_keeping_mode(path, kept)
            finding.fixed = True
        return finding
    if is_lock and not path.read_bytes().strip():
        message = (
            f"{what}; {cause}, and git has no valid version of it: delete it (`vcat doctor "
            "--fix` does) and run `dvc repro`, which runs every stage again"
        )
        finding = Finding(path, line, message, fixable=True)
        if fix:
            path.unlink()
            finding.fixed = True
        return finding
    redo = "run `dvc repro`" if is_lock else f"run `dvc add {relative.removesuffix('.dvc')}`"
    message = (
        f"{what}; git has no valid version of it, so fix it by hand (see `git log -- "
        f"{relative}`) or delete it and {redo}"
    )
    return Finding(path, line, message)


def _file_trouble(name: str, data: bytes) -> tuple[int, str] | None:
    """(line, what is wrong) when DVC cannot read ``data`` as the file ``name``, else None."""
    from dvc.schema import COMPILED_LOCKFILE_SCHEMA, COMPILED_SINGLE_STAGE_SCHEMA
    from voluptuous import Invalid

    kind = "dvc.lock" if name == LOCK_FILE else "this .dvc file"
    if not data.strip():
        return 1, f"{kind} is empty" if data == b"" else f"{kind} holds only blank space"
    try:
        document = yaml.safe_load(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return 1, f"{kind} is not UTF-8 text ({exc.reason} at byte {exc.start})"
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        reason = getattr(exc, "problem", None) or str(exc)
        return line, f"{kind} is not valid YAML ({reason}; cut short?)"
    schema = COMPILED_LOCKFILE_SCHEMA if name == LOCK_FILE else COMPILED_SINGLE_STAGE_SCHEMA
    try:
        schema(document)
    except Invalid as exc:
        where = ".".join(str(part) for part in exc.path) or "the top level"
        return 1, f"{kind} is not one DVC can read ({exc.msg} at {where}; cut short?)"
    for where, entry in _data_entries(document, name == LOCK_FILE):
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
            return 1, f"{kind} is not one DVC can read (no path at {where}; cut short?)"
        digest = entry.get("md5")
        if digest is not None and not re.fullmatch(r"[0-9a-f]{32}(\.dir)?", str(digest)):
            return 1, (
                f"{kind} records md5 {digest!r} at {where}, not 32 hexadecimal digits (cut short?)"
            )
    return None


def _data_entries(document: Any, is_lock: bool) -> list[tuple[str, Any]]:
    """Every dependency and output entry of a parsed lock or .dvc file, with where it is."""
    found: list[tuple[str, Any]] = []
    if not isinstance(document, dict):
        return found
    stages = document.get("stages") if is_lock else {"": document}
    for stage, body in (stages or {}).items() if isinstance(stages, dict) else ():
        if not isinstance(body, dict):
            continue
        for key in ("deps", "outs"):
            for index, entry in enumerate(body.get(key) or []):
                where = ".".join(part for part in ("stages" if is_lock else "", stage, key) if part)
                found.append((f"{where}[{index}]", entry))
    return found


def _git(root: Path, *args: str) -> bytes | None:
    """``git args`` in ``root``: its output, or None when git fails (no repo, no such file)."""
    try:
        result = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout if result.returncode == 0 else None


def _replace_keeping_mode(path: Path, data: bytes) -> None:
    mode = path.stat().st_mode & 0o777
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- configuration --------------------------------------------------------------------------


def check_config(root: Path, fix: bool) -> list[Finding]:
    """Leftover remote sections in ``.dvc/config.local``, and that file's permissions."""
    from vcat.remote import LOCAL_CONFIG, local_config_leftovers
    from vcat.secret_files import tighten

    path = root / LOCAL_CONFIG
    findings = []
    for message in local_config_leftovers(root):
        where, _, text = message.partition(": ")
        line = int(where.rsplit(":", 1)[1]) if where.count(":") else 1
        findings.append(Finding(path, line, text))
    if path.exists() and path.stat().st_mode & 0o077:
        mode = path.stat().st_mode & 0o777
        finding = Finding(
            path,
            1,
            f"readable by others (mode {mode:o}) although it holds credentials: "
            "`chmod 600 .dvc/config.local` (or `vcat doctor --fix`)",
            fixable=True,
        )
        if fix:
            tighten(path)
            finding.fixed = True
        findings.append(finding)
    return findings


# --- the cache ------------------------------------------------------------------------------


@dataclass
class CacheObject:
    """One cache object and the workspace paths that DVC places from it."""

    path: Path
    oid: str  # its name: the MD5 of its content, with ".dir" for a folder's listing
    hash_name: str  # "md5", or "md5-dos2unix" for outputs DVC 2 recorded
    workspace: list[Path] = field(default_factory=list)
    size: int = 0

    @property
    def is_listing(self) -> bool:
        return self.oid.endswith(".dir")


def referenced_objects(root: Path) -> list[CacheObject]:
    """Every cache object of the outputs that dvc.lock and the .dvc files record (files, and
    the listings of folders; a listing's files come from ``listing_entries``)."""
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        repo = Repo(str(root))
    except DvcException as exc:
        raise DoctorError(f"DVC cannot open {root}: {exc}") from None
    objects: dict[Path, CacheObject] = {}
    try:
        outs = list(repo.index.outs)
        for out in outs:
            if not out.use_cache or not out.hash_info or not out.hash_info.value:
                continue  # not cached, or a stage that never ran
            oid = str(out.hash_info.value)
            if not _OBJECT_NAME.fullmatch(oid.removesuffix(".dir")):
                continue  # not an MD5 (another kind of hash): not named by its content
            path = Path(out.cache.oid_to_path(oid))
            entry = objects.setdefault(path, CacheObject(path, oid, out.hash_name))
            place = Path(out.fs_path)
            if place.resolve().is_relative_to(root.resolve()):  # never touch a path outside
                entry.workspace.append(place)
    except Exception as exc:  # DVC fails on some files with a bare KeyError
        reason = str(exc) if isinstance(exc, DvcException) else f"{type(exc).__name__}: {exc}"
        raise DoctorError(
            f"DVC cannot read this checkout's stages ({reason}); `dvc status` shows which file"
        ) from None
    finally:
        repo.close()
    return list(objects.values())


def listing_entries(listing: CacheObject) -> list[CacheObject] | str:
    """The file objects a folder's listing names, or why the listing cannot be read."""
    try:
        entries = json.loads(listing.path.read_bytes())
        files = [(str(entry["md5"]), str(entry["relpath"])) for entry in entries]
    except (OSError, ValueError, TypeError, KeyError) as exc:
        return f"{type(exc).__name__}: {exc}"
    for oid, relpath in files:
        # names from a file: never a path out of the cache or the folder
        parts = Path(relpath).parts
        if not _OBJECT_NAME.fullmatch(oid) or not parts or ".." in parts or relpath[0] == "/":
            return f"it lists {relpath!r} with object {oid!r}, which DVC does not write"
    cache = listing.path.parent.parent
    found = []
    for oid, relpath in files:
        path = cache / oid[:2] / oid[2:]
        found.append(
            CacheObject(
                path, oid, listing.hash_name, [place / relpath for place in listing.workspace]
            )
        )
    return found


def content_md5(path: Path, hash_name: str, progress: Progress | None = None) -> str:
    """The MD5 DVC would name ``path``'s content with (``md5-dos2unix``: line endings of a
    text file as LF)."""
    from dvc_data.hashfile.hash import get_hash_stream

    with path.open("rb") as raw:
        stream = get_hash_stream(raw, name=hash_name)
        while chunk := stream.read(1 << 20):
            if progress is not None:
                progress(len(chunk))
    return stream.hash_value


def check_cache(
    root: Path,
    fix: bool,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> tuple[list[Finding], int, int, list[str], list[str]]:
    """Hash every referenced object. Returns the findings, the objects and bytes checked, the
    workspace paths whose object is absent, and next steps after ``fix``."""
    listings = referenced_objects(root)
    plain = [item for item in listings if not item.is_listing]
    folders = [item for item in listings if item.is_listing]
    findings: list[Finding] = []
    missing: list[str] = []
    removed = 0
    queue: dict[Path, CacheObject] = {item.path: item for item in plain}
    listings_checked = 0
    for listing in folders:
        if not listing.path.exists():
            missing += [_show(root, place) for place in listing.workspace]
            continue
        listings_checked += 1
        bad = _verify(listing, None)
        entries = listing_entries(listing) if bad is None else bad
        if isinstance(entries, str):
            findings.append(_corrupt(root, listing, entries, fix, whole_folder=True))
            removed += fix
            continue
        for entry in entries:
            known = queue.setdefault(entry.path, entry)
            if known is not entry:
                known.workspace += entry.workspace
    present = []
    for item in queue.values():
        try:
            item.size = item.path.stat().st_size
            present.append(item)
        except FileNotFoundError:
            missing += [_show(root, place) for place in item.workspace]
    if total is not None:
        total(sum(item.size for item in present))
    checked_bytes = 0
    for item in present:
        actual = _verify(item, progress)
        checked_bytes += item.size
        if actual is not None:
            findings.append(_corrupt(root, item, actual, fix, whole_folder=False))
            removed += fix
    steps = []
    if fix and removed:
        steps.append(
            f"run `dvc pull` to fetch the {removed} removed object(s) again and put their "
            "files back in the workspace"
        )
    return findings, listings_checked + len(present), checked_bytes, sorted(missing), steps


def _verify(item: CacheObject, progress: Progress | None) -> str | None:
    """None when the object's content matches its name, else what it holds instead."""
    try:
        actual = content_md5(item.path, item.hash_name, progress)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    expected = item.oid.removesuffix(".dir")
    return None if actual == expected else f"its content has MD5 {actual}"


def _corrupt(root: Path, item: CacheObject, why: str, fix: bool, whole_folder: bool) -> Finding:
    copies, intact = _workspace_state(item)
    kind = "the listing of folder" if whole_folder else "the object of"
    places = ", ".join(_show(root, place) for place in item.workspace) or "(no workspace path)"
    parts = [f"damaged: {kind} {places} should have MD5 {item.oid.removesuffix('.dir')} but {why}"]
    if copies:
        parts.append(
            "the workspace file(s) "
            + ", ".join(_show(root, place) for place in copies)
            + " are copies of the damaged object"
        )
    if intact:
        parts.append(
            "the workspace file(s) "
            + ", ".join(_show(root, place) for place in intact)
            + " are intact (`dvc commit --force` would put them back in the cache)"
        )
    if fix:
        item.path.unlink(missing_ok=True)
        for place in copies:
            place.unlink(missing_ok=True)
        parts.append("removed the object and its copies: `dvc pull` fetches them again")
    else:
        parts.append(
            "`vcat doctor --fix` removes the object and its copies, then `dvc pull` fetches them"
        )
    return Finding(item.path, 1, "; ".join(parts), fixable=True, fixed=fix)


def _workspace_state(item: CacheObject) -> tuple[list[Path], list[Path]]:
    """The workspace files that hold the damaged object's bytes, and those that hold the
    right ones (hashing only files of the damaged object's size)."""
    if item.is_listing:
        return [], []
    copies: list[Path] = []
    intact: list[Path] = []
    try:
        damaged = content_md5(item.path, item.hash_name)
        size = item.path.stat().st_size
    except OSError:
        damaged, size = None, -1
    for place in item.workspace:
        try:
            if not place.is_file():
                continue
            same_size = place.stat().st_size == size
            actual = content_md5(place, item.hash_name)
        except OSError:
            continue
        if actual == item.oid:
            intact.append(place)
        elif same_size and actual == damaged:
            copies.append(place)
    return copies, intact


def _show(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --- everything -----------------------------------------------------------------------------


def diagnose(
    root: Path,
    fix: bool = False,
    progress: Progress | None = None,
    total: Callable[[int], None] | None = None,
) -> Report:
    """Check the checkout at ``root`` (and repair with ``fix``). Raises ``DoctorError`` when
    it is not a DVC checkout or DVC cannot load it."""
    if not (root / ".dvc").is_dir():
        raise DoctorError(f"{root} is not a DVC repository (no .dvc folder): run `dvc init`")
    report = Report()
    broken = []
    for path in dvc_files(root):
        finding = check_dvc_file(root, path, fix)
        if finding is not None:
            report.findings.append(finding)
            if not finding.fixed:
                broken.append(path)
    config = check_config(root, fix)
    report.findings += config
    unresolved_config = [finding for finding in config if not finding.fixed]
    if broken or unresolved_config:
        report.skipped_cache = (
            "the cache was not checked: DVC cannot load this checkout until the problems "
            "above are fixed; run `vcat doctor` again then"
        )
        return report
    findings, objects, size, missing, steps = check_cache(root, fix, progress, total)
    report.findings += findings
    report.objects_checked, report.bytes_checked = objects, size
    report.missing = missing
    report.next_steps += steps
    return report
