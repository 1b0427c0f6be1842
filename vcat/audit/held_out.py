"""What the catalog holds out: scene ids and image paths of every ``held_out`` split, and the
image files of those scenes and images found under each entry's data root.

A file belongs to a held-out scene when a folder of its path under the root is named like the
scene (``Undistorted_SfM/0015/images/x.jpg`` and ``phoenix/.../0015/dense0/imgs/x.jpg`` both
are scene 0015's); a declared image is a path under the root.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from vcat.audit import AuditError
from vcat.catalog.loader import Catalog
from vcat.catalog.schema import DatasetEntry
from vcat.images import FORMATS_BY_SUFFIX


@dataclass(frozen=True)
class HeldOutSplit:
    """One held-out split of one entry and the image files of it found on this machine."""

    entry: str
    split: str
    scenes: frozenset[str]
    images: frozenset[str]  # declared, relative to the entry's root
    root: Path | None  # None: the entry's data is not on this machine
    files: tuple[str, ...]  # image files (relative to root) of its scenes and images

    def path_of(self, relative: str) -> str:
        """Where ``relative`` (a path under the entry's root) lies, for a person to open."""
        return str(self.root / relative) if self.root is not None else f"{self.entry}:{relative}"


@dataclass(frozen=True)
class HeldOut:
    """Every held-out split of the catalog."""

    splits: tuple[HeldOutSplit, ...]
    #: (entry, split) of held-out splits that list neither scenes nor images: nothing to check
    undeclared: tuple[tuple[str, str], ...] = ()

    def of_entry(self, entry: str | None) -> list[HeldOutSplit]:
        """The splits of ``entry`` (all splits when None)."""
        return [split for split in self.splits if entry is None or split.entry == entry]


def is_image_name(name: str) -> bool:
    return PurePosixPath(name).suffix.lower().lstrip(".") in FORMATS_BY_SUFFIX


def _unlisted(error: OSError) -> None:
    # a folder that cannot be listed could hold held-out images: never skipped in silence
    raise AuditError(
        f"{error.filename}: cannot list the folder ({error.strerror}); make it readable, or "
        "point the entry's root elsewhere (--root NAME=DIR)"
    )


def image_files(root: Path, scenes: Iterable[str], images: Iterable[str]) -> tuple[str, ...]:
    """The image files under ``root`` (relative POSIX paths, sorted) that lie in a folder
    named like one of ``scenes`` or are one of ``images``."""
    scene_names = frozenset(scenes)
    found = {name for name in images if (root / name).is_file()}
    if scene_names:
        for folder, dirs, files in os.walk(root, onerror=_unlisted):
            dirs.sort()
            relative = PurePosixPath(Path(folder).relative_to(root).as_posix())
            if scene_names.isdisjoint(relative.parts):
                continue
            found.update(str(relative / name) for name in files if is_image_name(name))
    return tuple(sorted(name.removeprefix("./") for name in found))


def held_out(catalog: Catalog, root_of: Callable[[str], Path]) -> HeldOut:
    """The held-out splits of ``catalog``; ``root_of(entry)`` is where an entry's data is
    (its files are looked for only when that folder exists). AuditError when the catalog
    has problems (a broken entry could hide a held-out split) or declares no held-out split."""
    if catalog.problems:
        first = catalog.problems[0].format()
        raise AuditError(
            f"{first} ({len(catalog.problems)} catalog problem(s)); fix the catalog first: a "
            "broken entry could hide a held-out split (`vcat catalog lint` lists them)"
        )
    splits: list[HeldOutSplit] = []
    undeclared: list[tuple[str, str]] = []
    for entry in catalog.entries:
        if not isinstance(entry.spec, DatasetEntry):
            continue
        for split in entry.spec.splits:
            if not split.held_out:
                continue
            if not split.scenes and not split.images:
                undeclared.append((entry.name, split.name))
                continue
            root = root_of(entry.name)
            present = root if root.is_dir() else None
            files = image_files(root, split.scenes, split.images) if present else ()
            splits.append(
                HeldOutSplit(
                    entry=entry.name,
                    split=split.name,
                    scenes=frozenset(split.scenes),
                    images=frozenset(split.images),
                    root=present,
                    files=files,
                )
            )
    if not splits:
        told = ", ".join(f"{entry}/{split}" for entry, split in undeclared)
        raise AuditError(
            "the catalog declares no held-out split with scenes or images"
            + (f" ({told} are held out but list neither)" if told else "")
            + "; mark test and validation splits `held_out: true` and list their `scenes` "
            "or `images`"
        )
    return HeldOut(tuple(splits), tuple(undeclared))
