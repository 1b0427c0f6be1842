"""Recording a built file's size and md5 in its catalog entry, in place."""

from __future__ import annotations

from pathlib import Path

import pytest

from vcat.catalog.loader import load_catalog
from vcat.demo.record import RecordError, record_source

ENTRY = """# yaml-language-server: $schema=../schema/dataset.schema.json
title: Demo
description: A demo entry.
licence: {name: CC0-1.0, redistribution: allowed}
access: {kind: public}
sources:
  - name: first
    url: file:upstream/a.bin
    filename: a.bin
    checksum: unpublished  # filled by vcat demo build --record
  - name: second
    url: file:upstream/b.bin
    filename: b.bin
    size: 3
    checksum: md5:00000000000000000000000000000000
"""


@pytest.fixture
def catalog_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog"
    (folder / "datasets").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "datasets" / "demo-x.yaml").write_text(ENTRY)
    return folder


def test_record_inserts_size_and_replaces_checksum(catalog_dir: Path) -> None:
    path = record_source(load_catalog([catalog_dir]), "demo-x", "first", 12, "a" * 32)
    text = path.read_text()
    # the line's comment stays; every other line is as it was
    assert "    size: 12\n    checksum: md5:" + "a" * 32 + " # filled by vcat demo" in text
    assert text.startswith("# yaml-language-server")
    old, new = ENTRY.splitlines(), text.splitlines()
    assert [line for line in new if line not in old] == [
        "    size: 12",
        "    checksum: md5:" + "a" * 32 + " # filled by vcat demo build --record",
    ]
    assert [line for line in old if line not in new] == [
        "    checksum: unpublished  # filled by vcat demo build --record"
    ]
    source = load_catalog([catalog_dir]).get("demo-x").spec.sources[0]
    assert (source.size, source.checksum) == (12, "md5:" + "a" * 32)


def test_record_replaces_an_existing_size(catalog_dir: Path) -> None:
    record_source(load_catalog([catalog_dir]), "demo-x", "second", 7, "b" * 32)
    catalog = load_catalog([catalog_dir])
    assert not catalog.problems
    source = catalog.get("demo-x").spec.sources[1]
    assert (source.size, source.checksum) == (7, "md5:" + "b" * 32)
    assert catalog.get("demo-x").spec.sources[0].checksum == "unpublished"


def test_record_of_an_unknown_source_names_the_file(catalog_dir: Path) -> None:
    with pytest.raises(RecordError, match=r"demo-x\.yaml: no source named 'third'"):
        record_source(load_catalog([catalog_dir]), "demo-x", "third", 1, "c" * 32)


def test_recording_two_sources_of_one_entry_in_turn(catalog_dir: Path) -> None:
    catalog = load_catalog([catalog_dir])
    record_source(catalog, "demo-x", "first", 12, "a" * 32)
    record_source(catalog, "demo-x", "second", 7, "b" * 32)
    first, second = load_catalog([catalog_dir]).get("demo-x").spec.sources
    assert (first.size, first.checksum, second.size, second.checksum) == (
        12,
        "md5:" + "a" * 32,
        7,
        "md5:" + "b" * 32,
    )
