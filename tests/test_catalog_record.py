"""`vcat catalog record NAME`: a fetched file's size, md5 and ETag written back into its entry,
with where the checksum came from, every other byte of the entry kept; refusals change nothing.

Each test fetches real files from a real HTTP server on 127.0.0.1 with the real `vcat fetch`.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from tests.http_server import MisbehavingServer, Route
from vcat.catalog.loader import load_entry
from vcat.cli import app

DATA = bytes(range(256)) * 64
OTHER = b"another file\n" * 50
MD5 = hashlib.md5(DATA).hexdigest()

ENTRY = """\
# yaml-language-server: $schema=../schema/dataset.schema.json
# Written by hand: the comments, quoting and layout below must survive the edit.
title: "Recorded: a test"
description: >
  A folded description
  over two lines.
licence: {{name: CC0-1.0, redistribution: allowed}}  # flow style stays
access:
  kind: public
sources:
  # the file the test records
  - name: data
    url: {url}
    filename: data.bin
    size_published: 16KiB   # the guide's figure
    checksum: unpublished  # recorded after the first trusted download
    description: 'single-quoted text'
  - name: other
    url: {other_url}
    filename: other.bin
    checksum: unpublished
known_issues:
  - The second file is never recorded in these tests unless asked.
"""


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        yield running


@pytest.fixture
def urls(server: MisbehavingServer) -> dict[str, str]:
    return {
        "url": server.add("/data.bin", Route(DATA)),
        "other_url": server.add("/other.bin", Route(OTHER)),
    }


def invoke(*args: str) -> Result:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def write_entry(project: Path, text: str) -> Path:
    path = project / "catalog" / "datasets" / "rec.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def fetch(*extra: str) -> None:
    result = invoke("fetch", "rec", "--no-dvc", *extra)
    assert result.exit_code == 0, result.output


def changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts, in order."""
    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


def lints_clean() -> None:
    result = invoke("catalog", "lint")
    assert result.exit_code == 0, result.output
    assert ": error: " not in result.stdout


def test_record_writes_size_md5_etag_and_provenance_keeping_every_other_byte(
    project: Path, urls: dict[str, str], server: MisbehavingServer
) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    before = path.read_text()
    fetch()
    today = date.today().isoformat()

    result = invoke("catalog", "record", "rec", "--source", "data")

    assert result.exit_code == 0, result.output
    after = path.read_text()
    removed, added = changes(before, after)
    assert removed == ["    checksum: unpublished  # recorded after the first trusted download"]
    etag = Route(DATA).etag
    assert added == [
        "    size: 16384",
        f"    checksum: md5:{MD5} # recorded after the first trusted download",
        "    checksum_source:",
        "      kind: recorded",
        f"      date: '{today}'",  # quoted: YAML would read a bare date as a timestamp
        "      recorded_from: first trusted download",
        f"    etag: '{etag}'",
    ]
    # every line that was there is still there, in the same order
    assert [line for line in after.splitlines() if line not in added] == [
        line for line in before.splitlines() if line not in removed
    ]
    spec = load_entry(path).spec
    data, other = spec.sources
    assert (data.size, data.checksum, data.etag) == (len(DATA), f"md5:{MD5}", etag)
    assert data.checksum_source is not None
    assert (data.checksum_source.kind, data.checksum_source.date) == ("recorded", today)
    assert (other.checksum, other.size, other.checksum_source) == ("unpublished", None, None)
    lints_clean()
    # the recorded values verify the file: the next fetch checks it against them
    again = invoke("fetch", "rec", "--no-dvc")
    assert again.exit_code == 0, again.output
    assert "verified" in again.stdout
    assert not list(path.parent.glob(".rec.yaml.*"))


def test_record_of_every_source_and_a_second_run_changes_nothing(
    project: Path, urls: dict[str, str]
) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    fetch()
    first = invoke("catalog", "record", "rec", "--from", "download on the lab's network")
    assert first.exit_code == 0, first.output
    text = path.read_text()
    assert text.count("recorded_from: download on the lab's network") == 2
    assert f"md5:{hashlib.md5(OTHER).hexdigest()}" in text
    second = invoke("catalog", "record", "rec")
    assert second.exit_code == 0, second.output
    assert "already states it" in second.stderr
    assert path.read_text() == text
    lints_clean()


def test_a_matching_published_checksum_keeps_its_provenance(
    project: Path, urls: dict[str, str]
) -> None:
    published = ENTRY.format(**urls).replace(
        "    checksum: unpublished  # recorded after the first trusted download\n",
        f"    checksum: md5:{MD5.upper()}\n"
        "    checksum_source: {kind: published, where: the guide's table}\n",
    )
    path = write_entry(project, published)
    fetch("--source", "data")
    before = path.read_text()
    result = invoke("catalog", "record", "rec", "--source", "data")
    assert result.exit_code == 0, result.output
    removed, added = changes(before, path.read_text())
    assert removed == []
    assert added == ["    size: 16384", f"    etag: '{Route(DATA).etag}'"]
    source = load_entry(path).spec.sources[0]
    assert source.checksum_source is not None and source.checksum_source.kind == "published"
    lints_clean()


def refused(path: Path, *args: str, message: str) -> None:
    before = path.read_bytes()
    result = invoke("catalog", "record", "rec", *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert path.read_bytes() == before
    assert not list(path.parent.glob(".rec.yaml.*"))


def test_refuses_a_source_never_fetched(project: Path, urls: dict[str, str]) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    refused(path, message="source 'data' has not been fetched")


def test_refuses_an_unknown_source(project: Path, urls: dict[str, str]) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    fetch()
    refused(path, "--source", "nope", message="rec has no source named 'nope'")


def test_refuses_to_overwrite_a_different_published_checksum(
    project: Path, urls: dict[str, str]
) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    fetch()
    # the guide publishes a checksum after the fetch: another file's
    path.write_text(
        path.read_text().replace(
            "    checksum: unpublished  # recorded after the first trusted download\n",
            f"    checksum: md5:{'0' * 32}\n"
            "    checksum_source: {kind: published, where: the guide}\n",
        )
    )
    refused(path, message="a stated checksum is never overwritten")


def test_refuses_a_file_fetched_from_another_url(
    project: Path, urls: dict[str, str], server: MisbehavingServer
) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    fetch()
    moved = server.add("/moved/data.bin", Route(DATA))
    path.write_text(path.read_text().replace(urls["url"], moved))
    refused(path, "--source", "data", message="was fetched from")


def test_refuses_one_bad_source_without_writing_the_good_one(
    project: Path, urls: dict[str, str]
) -> None:
    path = write_entry(project, ENTRY.format(**urls))
    fetch("--source", "data")
    refused(path, message="source 'other' has not been fetched")


def test_refuses_an_entry_it_cannot_rewrite_exactly(project: Path, urls: dict[str, str]) -> None:
    # three-space indentation: re-writing would change lines the user did not ask to change
    odd = ENTRY.format(**urls).replace("\n  - name:", "\n   - name:").replace("\n    ", "\n     ")
    path = write_entry(project, odd)
    assert load_entry(path).spec.sources[0].name == "data"
    fetch()
    refused(path, message="cannot be rewritten without changing its layout")
