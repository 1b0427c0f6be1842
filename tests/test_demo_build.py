"""Building demo parts: skip what matches the catalog, replace only when complete."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from vcat.catalog.loader import load_catalog
from vcat.demo.build import DEMO_WORLD, Part, Published, build_demo_world

PAYLOAD = b"published bytes\n"


def entry_text(size: int | None, md5: str | None) -> str:
    recorded = (
        f"    size: {size}\n    checksum: md5:{md5}\n" if md5 else "    checksum: unpublished\n"
    )
    return (
        "title: Demo\ndescription: d\nlicence: {name: CC0-1.0, redistribution: allowed}\n"
        "access: {kind: public}\nsources:\n  - name: file\n"
        "    url: file:.vcat/demo-world/part/out.bin\n    filename: out.bin\n" + recorded
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "catalog" / "datasets").mkdir(parents=True)
    (tmp_path / "catalog" / "models").mkdir()
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    return tmp_path


def write_entry(project: Path, size: int | None, md5: str | None) -> None:
    (project / "catalog" / "datasets" / "demo-x.yaml").write_text(entry_text(size, md5))


class CountingPart:
    """A part whose builder counts its runs and can be told to fail half-way."""

    def __init__(self, payload: bytes = PAYLOAD) -> None:
        self.runs = 0
        self.payload = payload
        self.fail = False

    def build(self, folder: Path, url_prefix: str) -> None:
        self.runs += 1
        (folder / "out.bin").write_bytes(self.payload)
        (folder / "prefix.txt").write_text(url_prefix)
        if self.fail:
            raise KeyboardInterrupt

    def part(self) -> Part:
        return Part("part", self.build, (Published("out.bin", "demo-x", "file"),))


def test_a_part_matching_the_catalog_is_not_rebuilt(project: Path) -> None:
    write_entry(project, len(PAYLOAD), hashlib.md5(PAYLOAD).hexdigest())
    counting = CountingPart()
    catalog = load_catalog([project / "catalog"])
    (report,) = build_demo_world(project, catalog, parts=[counting.part()])
    assert report.matches and counting.runs == 1
    assert (project / DEMO_WORLD / "part" / "prefix.txt").read_text() == (
        "file:.vcat/demo-world/part/"
    )
    build_demo_world(project, catalog, parts=[counting.part()])
    assert counting.runs == 1
    build_demo_world(project, catalog, force=True, parts=[counting.part()])
    assert counting.runs == 2


def test_a_differing_build_is_reported_against_the_entry(project: Path) -> None:
    write_entry(project, len(PAYLOAD), "0" * 32)
    catalog = load_catalog([project / "catalog"])
    (report,) = build_demo_world(project, catalog, parts=[CountingPart().part()])
    assert not report.matches
    assert (report.expected_md5, report.md5) == ("0" * 32, hashlib.md5(PAYLOAD).hexdigest())


def test_an_unrecorded_file_has_no_expectation(project: Path) -> None:
    write_entry(project, None, None)
    catalog = load_catalog([project / "catalog"])
    (report,) = build_demo_world(project, catalog, parts=[CountingPart().part()])
    assert report.expected_md5 is None and not report.matches


def test_an_interrupted_rebuild_keeps_the_previous_part(project: Path) -> None:
    write_entry(project, None, None)
    catalog = load_catalog([project / "catalog"])
    build_demo_world(project, catalog, parts=[CountingPart().part()])
    broken = CountingPart(b"half-written")
    broken.fail = True
    with pytest.raises(KeyboardInterrupt):
        build_demo_world(project, catalog, force=True, parts=[broken.part()])
    world = project / DEMO_WORLD
    assert (world / "part" / "out.bin").read_bytes() == PAYLOAD
    build_demo_world(project, catalog, force=True, parts=[CountingPart(b"new").part()])
    assert (world / "part" / "out.bin").read_bytes() == b"new"
    assert sorted(p.name for p in world.iterdir()) == ["part"]
