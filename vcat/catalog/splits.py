"""A dataset entry's splits as stages use them: the scenes of a split, and what is held out."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vcat.catalog.schema import DatasetEntry, Split


class SplitError(ValueError):
    """The entry or split cannot be used as asked; the message says what to change."""


@dataclass(frozen=True)
class EntrySplits:
    """The splits of dataset entry ``entry``, by name, in catalog order."""

    entry: str
    splits: dict[str, Split]

    def split(self, name: str) -> Split:
        """The split ``name``; SplitError listing the entry's splits when it has none such."""
        try:
            return self.splits[name]
        except KeyError:
            known = ", ".join(self.splits) or "none"
            raise SplitError(f"{self.entry} has no split {name!r} (it has {known})") from None

    def scenes(self, name: str) -> list[str]:
        """The sorted scenes of split ``name``; SplitError when it lists none."""
        scenes = sorted({str(scene) for scene in self.split(name).scenes})
        if not scenes:
            raise SplitError(f"split {name!r} of {self.entry} lists no scenes")
        return scenes

    def held_out_scenes(self) -> dict[str, str]:
        """Each scene of a held-out split -> that split's name."""
        return {
            scene: split.name
            for split in self.splits.values()
            if split.held_out
            for scene in split.scenes
        }

    def held_out_images(self) -> list[str]:
        """The images the held-out splits list, as paths under the entry's root."""
        return [
            str(image) for split in self.splits.values() if split.held_out for image in split.images
        ]


def entry_splits(entry: str, catalog: Path | None = None) -> EntrySplits:
    """The splits of the dataset entry ``entry`` in ``catalog`` (the project's by default)."""
    from vcat.catalog.loader import load_around
    from vcat.project import default_catalog_dir

    try:
        loaded = load_around(catalog or default_catalog_dir(), entry).get(entry)
    except KeyError as exc:
        raise SplitError(str(exc.args[0])) from None
    if not isinstance(loaded.spec, DatasetEntry):
        raise SplitError(f"{entry} is not a dataset entry; name the dataset whose splits to use")
    return EntrySplits(entry, {split.name: split for split in loaded.spec.splits})
