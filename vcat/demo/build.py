"""Building the demo world and checking it against the ``demo-*`` catalog entries.

The demo world lives in ``<project>/.vcat/demo-world/`` (git-ignored) and plays the part of
the upstream servers: each part is a folder of published files, and every published file
is a source of a catalog entry, which records its size and md5. The catalog is the
reference; a build that gives other bytes is reported, never silently accepted.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from vcat.catalog.fields import parse_checksum
from vcat.catalog.loader import Catalog
from vcat.hashing import hash_file
from vcat.processes import ordered_map

DEMO_WORLD = Path(".vcat") / "demo-world"


@dataclass(frozen=True)
class Published:
    """One file of a part, as the catalog knows it: ``entry``'s source ``source``."""

    path: str  # relative to the part's folder
    entry: str
    source: str


@dataclass(frozen=True)
class Part:
    """A folder of the demo world, built by ``build(folder, url_prefix)`` into an empty folder.

    ``url_prefix`` is the ``file:`` URL of the folder relative to the project root, for parts
    whose files point at each other by URL (the Flickr lists name their images).
    """

    name: str
    build: Callable[[Path, str], None]
    files: tuple[Published, ...]


@dataclass(frozen=True)
class FileReport:
    """A published file after a build: what it is and what the catalog expects."""

    published: Published
    path: Path
    size: int
    md5: str
    expected_size: int | None
    expected_md5: str | None

    @property
    def matches(self) -> bool:
        return self.size == self.expected_size and self.md5 == self.expected_md5


def _packed(builder: Callable[[Path], None], pack: Callable[[Path, Path], None], name: str):
    """A part builder that builds a tree with ``builder`` and publishes it packed as ``name``."""

    def build(folder: Path, url_prefix: str) -> None:
        with tempfile.TemporaryDirectory(dir=folder.parent) as scratch:
            tree = Path(scratch) / "tree"
            tree.mkdir()
            builder(tree)
            pack(tree, folder / name)

    return build


def demo_parts() -> list[Part]:
    """The parts of the demo world, in build order."""
    from vcat.demo.copydetect import build_copydetect
    from vcat.demo.croco import build_croco_metadata
    from vcat.demo.flickr import build_flickr
    from vcat.demo.matterport import build_matterport
    from vcat.demo.megadepth import build_megadepth
    from vcat.demo.publish import pack_tar, pack_zip
    from vcat.demo.video import build_video

    def tar_gz(tree: Path, archive: Path) -> None:
        pack_tar(tree, archive, "gz")

    return [
        Part(
            "megadepth",
            _packed(build_megadepth, tar_gz, "demo-megadepth.tar.gz"),
            (Published("demo-megadepth.tar.gz", "demo-megadepth", "scenes"),),
        ),
        Part(
            "croco",
            _packed(build_croco_metadata, pack_zip, "crop_metadata.zip"),
            (Published("crop_metadata.zip", "demo-croco-crops", "crop-metadata"),),
        ),
        Part(
            "matterport",
            _packed(build_matterport, tar_gz, "demo-matterport.tar.gz"),
            (Published("demo-matterport.tar.gz", "demo-matterport", "scans"),),
        ),
        Part(
            "video",
            lambda folder, _: build_video(folder / "demo-flythrough.mp4"),
            (Published("demo-flythrough.mp4", "demo-video", "flythrough"),),
        ),
        Part(
            "flickr",
            build_flickr,
            tuple(
                Published(f"lists/flickr-{n}.tsv.gz", "demo-flickr", f"list-{n}")
                for n in ("0.1k", "0.2k", "0.5k")
            ),
        ),
        Part(
            "copydetect",
            _packed(build_copydetect, tar_gz, "demo-copydetect.tar.gz"),
            (Published("demo-copydetect.tar.gz", "demo-copydetect", "reference-set"),),
        ),
    ]


def expected_of(catalog: Catalog, published: Published) -> tuple[int | None, str | None]:
    """The size and md5 the catalog records for ``published``; None where it records none."""
    try:
        entry = catalog.get(published.entry).spec
    except KeyError:
        return None, None
    for source in entry.all_sources():
        if source.name == published.source:
            checksum = parse_checksum(source.checksum)
            md5 = checksum.hexdigest if checksum and checksum.algorithm == "md5" else None
            return source.size, md5
    return None, None


def report_part(folder: Path, part: Part, catalog: Catalog) -> list[FileReport]:
    """Each published file of ``part`` (built in ``folder``) against the catalog."""
    reports = []
    for published in part.files:
        path = folder / published.path
        size = path.stat().st_size
        md5 = hash_file(path, ["md5"])["md5"]
        expected_size, expected_md5 = expected_of(catalog, published)
        reports.append(FileReport(published, path, size, md5, expected_size, expected_md5))
    return reports


def part_is_current(folder: Path, part: Part, catalog: Catalog) -> bool:
    """True when every file of an already built part matches the catalog."""
    if not all((folder / published.path).is_file() for published in part.files):
        return False
    return all(report.matches for report in report_part(folder, part, catalog))


def build_part(world: Path, part: Part, project_root: Path) -> Path:
    """Build ``part`` into ``world/<name>``, replacing what was there only once complete."""
    final = world / part.name
    staging = world / f".{part.name}.building"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    url_prefix = f"file:{final.relative_to(project_root).as_posix()}/"
    part.build(staging, url_prefix)
    missing = [p.path for p in part.files if not (staging / p.path).is_file()]
    if missing:
        raise RuntimeError(f"demo part {part.name!r} did not write {', '.join(missing)}")
    retired = world / f".{part.name}.old"
    shutil.rmtree(retired, ignore_errors=True)
    if final.exists():
        final.rename(retired)
    staging.rename(final)
    shutil.rmtree(retired, ignore_errors=True)
    return final


def build_demo_world(
    project_root: Path,
    catalog: Catalog,
    force: bool = False,
    parts: Iterable[Part] | None = None,
    on_part: Callable[[Part, bool], None] | None = None,
    jobs: int = 1,
) -> list[FileReport]:
    """Build every part not already matching the catalog (all with ``force``); report each file.

    ``on_part(part, built)`` is called after each part, in order, ``built`` False when it was
    skipped. The default parts are built side by side on ``jobs`` processes (each part's bytes
    never depend on it); given ``parts`` are built here, one after another. An interrupted
    build leaves only ``.<part>.building`` folders, which the next run replaces.
    """
    world = project_root / DEMO_WORLD
    chosen = list(parts) if parts is not None else demo_parts()
    stale = [
        part for part in chosen if force or not part_is_current(world / part.name, part, catalog)
    ]
    folders: Iterator[Path]
    if parts is None and jobs > 1:
        build = functools.partial(_build_default_part, world, project_root)
        names = [part.name for part in stale]
        folders = ordered_map(build, names, min(jobs, len(names)), advice="run it again")
    else:
        folders = (build_part(world, part, project_root) for part in stale)
    reports: list[FileReport] = []
    for part in chosen:
        built = part in stale
        folder = next(folders) if built else world / part.name
        reports += report_part(folder, part, catalog)
        if on_part is not None:
            on_part(part, built)
    return reports


def _build_default_part(world: Path, project_root: Path, name: str) -> Path:
    """``build_part`` of the default part ``name``, in a worker process."""
    (part,) = [part for part in demo_parts() if part.name == name]
    return build_part(world, part, project_root)
