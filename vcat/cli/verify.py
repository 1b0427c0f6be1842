"""`vcat verify`: check data on disk against the catalog.

Where the data is: ``--root DIR``, else the root remembered in ``.vcat/settings.yaml``, else
``data/sources/<name>`` when it exists (where ``vcat fetch`` puts it). A root given to
``vcat verify --root`` is remembered only when the check passes, so a wrong folder never
becomes the default.

Exit codes: 0 the data passed, 1 it did not, 2 the command could not run (unknown entry, no
root, a malformed settings file or manifest). ``--json`` outputs are documented in
docs/cli-json.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from vcat.cli.common import load_entry, remember
from vcat.cli.entry_check import entry_checked
from vcat.cli.options import CatalogOption, JsonOption
from vcat.cli.trees import (
    NameArgument,
    RootOption,
    WorkersOption,
    dataset_folder,
    hash_progress,
)
from vcat.console import fail, stderr, stdout
from vcat.failures import FailureClass
from vcat.problems import CatalogError, display_path
from vcat.project import ProjectNotFound
from vcat.verify.manifest import (
    CHECK_ADVICE,
    STATUSES,
    CheckMode,
    FileResult,
    ManifestError,
    ManifestReport,
    TreeError,
    check_manifest,
)

if TYPE_CHECKING:  # the layout and fetch checks (and the schema) load only for a tree check
    from vcat.catalog.loader import Entry
    from vcat.fetch.integrity import EntryCheck
    from vcat.verify.layout import LayoutReport

LAYOUT_FORMAT = "vcat.verify.layout/1"
MANIFEST_FORMAT = "vcat.verify.manifest/1"
#: Failures printed per class; ``--json`` lists them all.
SHOWN_PER_CLASS = 20


def _remember(name: str, root: Path, given: bool, passed: bool) -> bool:
    """Record ``root`` for ``name`` when it was given and passed; True when this wrote it."""
    return given and passed and remember(name, root)


def _access(entry: Entry) -> dict[str, Any] | None:
    from vcat.catalog.schema import DatasetEntry

    spec = entry.spec
    if not isinstance(spec, DatasetEntry):
        return None
    return {
        "kind": spec.access.kind,
        "url": spec.access.url,
        "instructions": spec.access.instructions,
    }


def _print_access(name: str, access: dict[str, Any] | None) -> None:
    if access is None:
        return
    stderr.print(f"\n[bold]How to obtain {name}[/bold] (access: {access['kind']})")
    if access["instructions"]:
        from rich.markdown import Markdown

        stderr.print(Markdown(access["instructions"], hyperlinks=False))
    if access["url"]:
        stderr.print(f"See {access['url']}", markup=False, highlight=False)
    if access["kind"] == "public":
        stderr.print(f"`vcat fetch {name}` downloads its sources.", markup=False)


def verify(
    name: NameArgument,
    root: RootOption = None,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            help="Check every file's size and digest against this manifest instead of the layout.",
            dir_okay=False,
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Also fail when paths match no layout rule.")
    ] = False,
    full: Annotated[
        bool,
        typer.Option(
            "--full",
            help="Hash every fetched file, not only those whose size, times or inode changed.",
        ),
    ] = False,
    workers: WorkersOption = None,
    as_json: JsonOption = False,
    catalog_dir: CatalogOption = None,
) -> None:
    """Check a dataset's tree: its layout and the files its fetch placed, or every file
    against a manifest.

    Without --manifest: counts the paths each layout rule matches, and lists paths no rule
    accounts for (extras; they fail only with --strict); then compares every file `vcat
    fetch` placed with what it recorded: a file whose size, modification or change time or
    inode differs is hashed (--full: every file is), and one missing, added, replaced by a
    link, FIFO or device, or with other content fails, named. Links are never followed and
    nothing but regular files is opened. With --manifest: reports each file that is missing,
    unexpected, truncated, oversized, has another checksum, is not a file, or is a saved web
    page. Exits 0 when the data passes, 1 when not, 2 when the check cannot run. A --root
    that passes is remembered for later commands and pipeline stages.
    """
    if manifest is not None:
        _verify_manifest(name, catalog_dir, root, manifest, workers, as_json)
        return
    entry = load_entry(name, catalog_dir)
    folder, given = dataset_folder(name, root)
    _verify_tree(entry, folder, given, strict, "full" if full else "changed", workers, as_json)


def _verify_tree(
    entry: Entry,
    root: Path,
    given: bool,
    strict: bool,
    mode: CheckMode,
    workers: int | None,
    as_json: bool,
) -> None:
    from vcat.catalog.schema import DatasetEntry
    from vcat.verify.layout import NoLayout, check_layout

    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is not a folder"
        stderr.print(f"[red]error:[/red] {escape(str(root))} {what}", highlight=False)
        _print_access(entry.name, _access(entry))
        raise typer.Exit(1)
    files = _check_fetched(entry, root, mode, workers)
    report = None
    if isinstance(entry.spec, DatasetEntry):
        try:
            report = check_layout(root, entry.spec)
        except NoLayout as exc:
            if not files.recorded:
                fail(f"{entry.name}: {exc}; check its files with --manifest")
    elif not files.recorded:
        fail(
            f"{entry.name} is a model; models have no layout and no fetch of it is recorded "
            f"under {display_path(root)}: fetch it, or check its files with --manifest"
        )
    layout_passed = report is None or (report.ok and not (strict and report.extra_count))
    passed = layout_passed and files.ok
    remembered = _remember(entry.name, root, given, passed)
    if as_json:
        payload = _layout_json(entry, root, report, passed, remembered)
        payload["files"] = _fetched_json(files)
        typer.echo(json.dumps(payload, indent=2))
    else:
        if report is not None:
            _print_layout(entry, report, layout_passed)
        _print_fetched(entry, root, files)
    if not passed:
        _print_access(entry.name, _access(entry))
        raise typer.Exit(1)


def _check_fetched(entry: Entry, root: Path, mode: CheckMode, workers: int | None) -> EntryCheck:
    """The files of the entry's sources as its fetches recorded them (see ``check_entry``)."""
    from vcat.fetch.integrity import check_entry
    from vcat.fetch.workspace import Workspace

    try:
        with hash_progress("checking") as progress:
            return check_entry(
                entry.name, entry.spec.all_sources(), Workspace(root), mode, workers, progress
            )
    except TreeError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot read {exc.filename}: {exc.strerror}")


def _fetched_json(files: EntryCheck) -> dict[str, Any]:
    return {
        "recorded": files.recorded,
        "ok": files.ok,
        "sources": files.sources,
        "problems": files.problems,
        "counts": {str(status): files.counts[status] for status in STATUSES},
        "hashed": files.hashed,
        "bytes_hashed": files.bytes_hashed,
        "failures": [_failure_json(f) for f in files.failures],
        "advice": {str(c): CHECK_ADVICE[c] for c in STATUSES[1:] if files.counts[c]},
    }


def _print_fetched(entry: Entry, root: Path, files: EntryCheck) -> None:
    if not files.recorded:
        stdout.print(
            f"no fetch is recorded under {escape(display_path(root.resolve()))}, so only the "
            f"layout was checked; `vcat fetch {entry.name}` checks the files against the catalog",
            highlight=False,
        )
        return
    total = sum(files.counts.values())
    stdout.print(
        f"[bold]files[/bold] of {len(files.sources)} fetched source(s): {total:,} checked "
        f"against what the fetch recorded, {files.hashed:,} hashed "
        f"({files.bytes_hashed:,} bytes; the others unchanged since they were proven)",
        highlight=False,
    )
    for problem in files.problems:
        stdout.print(f"[red]problem:[/red] {escape(problem)}", highlight=False)
    _print_failures(files.counts, files.failures)
    if files.ok:
        stdout.print("[green]OK[/green]: every fetched file is as it was placed")
    elif files.failures:
        stdout.print(
            f"[red]FAILED[/red]: {len(files.failures):,} file(s) differ; "
            f"`vcat fetch {entry.name}` repairs them",
            highlight=False,
        )
    else:
        stdout.print("[red]FAILED[/red]: see the problems above")


def _layout_json(
    entry: Entry, root: Path, report: LayoutReport | None, passed: bool, remembered: bool
) -> dict[str, Any]:
    if report is None:
        return {
            "format": LAYOUT_FORMAT,
            "name": entry.name,
            "root": display_path(root.resolve()),
            "ok": passed,
            "derived_from": None,
            "rules": [],
            "extras": {"count": 0, "listed": []},
            "errors": [],
            "scanned": {"files": 0, "dirs": 0},
            "remembered": remembered,
            "access": _access(entry),
        }
    return {
        "format": LAYOUT_FORMAT,
        "name": entry.name,
        "root": display_path(report.root.resolve()),
        "ok": passed,
        "derived_from": report.derived_from,
        "rules": [
            {
                "glob": r.spec.glob,
                "type": r.spec.type,
                "origin": r.spec.origin,
                "min": r.spec.min,
                "max": r.spec.max,
                "expected": r.spec.expected(),
                "found": r.found,
                "status": r.status,
                "description": r.spec.description,
            }
            for r in report.rules
        ],
        "extras": {
            "count": report.extra_count,
            "listed": [{"path": e.path, "type": e.type} for e in report.extras],
        },
        "errors": report.errors,
        "scanned": {"files": report.files, "dirs": report.dirs},
        "remembered": remembered,
        "access": _access(entry),
    }


_STATUS_STYLE = {  # by RuleStatus
    "ok": "[green]ok[/green]",
    "missing": "[red]missing[/red]",
    "too_few": "[red]too few[/red]",
    "too_many": "[red]too many[/red]",
}


def _print_layout(entry: Entry, report: LayoutReport, passed: bool) -> None:
    from rich.table import Column, Table

    source = "layout" if report.derived_from == "layout" else "sources (the entry has no layout)"
    stdout.print(
        f"[bold]{entry.name}[/bold] at {escape(display_path(report.root.resolve()))}: "
        f"{report.files:,} files and {report.dirs:,} folders checked against its {source}",
        highlight=False,
    )
    table = Table(
        "status",
        "type",
        Column("glob", overflow="fold", min_width=max(len(r.spec.glob) for r in report.rules)),
        Column("found", justify="right"),
        "expected",
        Column("description", ratio=1),
        box=None,
    )
    for result in report.rules:
        table.add_row(
            _STATUS_STYLE[result.status],
            result.spec.type,
            escape(result.spec.glob),
            f"{result.found:,}",
            result.spec.expected(),
            escape(result.spec.description or ""),
        )
    stdout.print(table)
    for error in report.errors:
        stdout.print(f"[red]problem:[/red] {escape(error)}", highlight=False)
    if report.extra_count:
        shown = len(report.extras)
        more = f", the first {shown} listed" if shown < report.extra_count else ""
        colour = "red" if not passed and report.ok else "yellow"
        stdout.print(
            f"[{colour}]{report.extra_count:,} path(s) match no rule (extras{more}):[/{colour}]"
        )
        for extra in report.extras:
            suffix = "/" if extra.type == "dir" else ""
            stdout.print(f"  {escape(extra.path)}{suffix}", highlight=False)
    hint = _nested_root_hint(report)
    if hint:
        stdout.print(f"[yellow]hint:[/yellow] {escape(hint)}", highlight=False)
    failed = sum(not r.ok for r in report.rules)
    if passed:
        stdout.print(f"[green]OK[/green]: {len(report.rules)} rule(s) met")
    elif failed:
        stdout.print(f"[red]FAILED[/red]: {failed} of {len(report.rules)} rule(s) not met")
    else:
        stdout.print("[red]FAILED[/red]: see the problems above")


def _nested_root_hint(report: LayoutReport) -> str | None:
    """A hint when nothing matched and the root holds a single folder: a level too high?"""
    if report.ok or any(r.found for r in report.rules):
        return None
    if report.extra_count == 1 and report.extras[0].type == "dir":
        inner = report.root / report.extras[0].path
        return f"nothing matched; is the data one level down? Try --root {inner}"
    return None


def _verify_manifest(
    name: str,
    catalog_dir: Path | None,
    root: Path | None,
    manifest: Path,
    workers: int | None,
    as_json: bool,
) -> None:
    """The manifest check, hashing while the entry is checked beside it (``entry_checked``)."""
    with entry_checked(name, catalog_dir, _manifest_facts) as check:
        folder, given = dataset_folder(name, root, check.result)
        try:
            with hash_progress("checking", check.poll) as progress:
                report = check_manifest(folder, manifest, workers, progress)
        except (ManifestError, TreeError) as exc:
            check.fail(str(exc))
        except OSError as exc:
            check.fail(f"cannot read {exc.filename}: {exc.strerror}")
        facts = check.result()
    known = facts["root"] == str(folder.resolve())
    remembered = not known and _remember(name, folder, given, report.ok)
    if as_json:
        typer.echo(json.dumps(_manifest_json(name, facts, report, remembered), indent=2))
    else:
        _print_manifest(name, report)
    if not report.ok:
        _print_access(name, facts["access"])
        raise typer.Exit(1)


def _manifest_facts(entry: Entry) -> dict[str, Any]:
    """What the manifest check needs of the entry: how to obtain it, and its remembered root
    (settings that cannot be read are reported when a root is to be remembered)."""
    from vcat.settings import load_settings

    try:
        root = load_settings().roots.get(entry.name)
    except (CatalogError, ProjectNotFound):
        root = None
    return {"access": _access(entry), "root": root}


def _manifest_json(
    name: str, facts: dict[str, Any], report: ManifestReport, remembered: bool
) -> dict[str, Any]:
    return {
        "format": MANIFEST_FORMAT,
        "name": name,
        "root": display_path(report.root.resolve()),
        "manifest": display_path(report.manifest.resolve()),
        "algorithm": report.algorithm,
        "ok": report.ok,
        "counts": {str(status): report.counts[status] for status in STATUSES},
        "bytes_hashed": report.bytes_hashed,
        "failures": [_failure_json(f) for f in report.failures],
        "advice": {str(c): CHECK_ADVICE[c] for c in STATUSES[1:] if report.counts[c]},
        "remembered": remembered,
        "access": facts["access"],
    }


def _failure_json(failure: FileResult) -> dict[str, Any]:
    return {
        "path": failure.path,
        "status": failure.failure,
        "expected_size": failure.expected_size,
        "actual_size": failure.actual_size,
        "expected_digest": failure.expected_digest,
        "actual_digest": failure.actual_digest,
        "detail": failure.detail,
    }


def _print_manifest(name: str, report: ManifestReport) -> None:
    total = sum(report.counts.values())
    stdout.print(
        f"[bold]{name}[/bold] at {escape(display_path(report.root.resolve()))}: "
        f"{total:,} files checked against {escape(display_path(report.manifest.resolve()))} "
        f"({report.algorithm}, {report.bytes_hashed:,} bytes hashed)",
        highlight=False,
    )
    _print_failures(report.counts, report.failures)
    if report.ok:
        stdout.print("[green]OK[/green]: every file matches the manifest")
    else:
        stdout.print(f"[red]FAILED[/red]: {len(report.failures):,} file(s) differ")


def _print_failures(counts: dict[str, int], failures: list[FileResult]) -> None:
    """The count of each class, then the failures of each class with what to do."""
    summary = ", ".join(f"{status} {counts[status]:,}" for status in STATUSES if counts[status])
    stdout.print(f"  {summary or 'no files'}", highlight=False)
    by_class: dict[FailureClass, list[str]] = {}
    for failure in failures:
        by_class.setdefault(failure.failure, []).append(_describe_failure(failure))
    for failure_class, lines in by_class.items():
        advice = CHECK_ADVICE[failure_class]
        stdout.print(f"[red]{failure_class}[/red] ({len(lines):,}): {escape(advice)}")
        for line in lines[:SHOWN_PER_CLASS]:
            stdout.print(f"  {escape(line)}", highlight=False)
        if len(lines) > SHOWN_PER_CLASS:
            stdout.print(f"  ... and {len(lines) - SHOWN_PER_CLASS:,} more (--json lists all)")


def _describe_failure(failure: FileResult) -> str:
    if failure.detail is not None:
        return f"{failure.path} ({failure.detail})"
    if failure.failure == FailureClass.MISSING:
        return f"{failure.path} ({failure.expected_size:,} bytes expected)"
    if failure.failure == FailureClass.UNEXPECTED:
        return f"{failure.path} ({failure.actual_size:,} bytes)"
    if failure.expected_size != failure.actual_size:
        return f"{failure.path} ({failure.actual_size:,} bytes, {failure.expected_size:,} expected)"
    return f"{failure.path} ({failure.actual_digest}, {failure.expected_digest} expected)"
