"""Which items of an artifact belong to a catalog split.

An item is identified by its *sources*: the paths it was made from, as the artifact names
them (a shard sample's key, a list's path, a CroCo pair's two source images from
``provenance.tsv``, an overlap file's scene). A source's **scene** is component
``scene_component`` of its path; its **image** is ``under/<path>`` (a path under the entry's
root) without the file extension. An item is in a split when every one of its sources is in
it: its scene is one of the split's ``scenes`` or its image one of the split's ``images``
(compared without extension, since shard keys carry none).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
from numpy.typing import NDArray

from vcat.data.errors import DataError


def _stem_path(path: str) -> str:
    pure = PurePosixPath(path)
    return str(pure.with_suffix("")) if pure.suffix else str(pure)


@dataclass(frozen=True)
class SplitFilter:
    """The scenes and images of one split, and how to find them in source paths."""

    name: str
    scenes: frozenset[str] = frozenset()
    images: frozenset[str] = frozenset()
    scene_component: int = 0
    under: str = ""

    @classmethod
    def of(
        cls,
        name: str,
        scenes: Iterable[str] = (),
        images: Iterable[str] = (),
        *,
        scene_component: int = 0,
        under: str = "",
    ) -> SplitFilter:
        if scene_component < 0:
            raise DataError(f"scene_component is {scene_component}; it cannot be negative")
        return cls(
            name,
            frozenset(scenes),
            frozenset(_stem_path(image) for image in images),
            scene_component,
            under.strip("/"),
        )

    def holds(self, source: str) -> bool:
        """Whether the source path ``source`` is of this split's scenes or images."""
        parts = PurePosixPath(source).parts
        component = self.scene_component
        if self.scenes and len(parts) > component and parts[component] in self.scenes:
            return True
        if self.images:
            image = str(PurePosixPath(self.under, source)) if self.under else source
            return _stem_path(image) in self.images
        return False

    def positions(self, sources: Iterable[Sequence[str]]) -> NDArray[np.int64]:
        """The positions of the items (given by their sources, in order) in this split."""
        kept = [
            position
            for position, item in enumerate(sources)
            if item and all(self.holds(source) for source in item)
        ]
        return np.asarray(kept, dtype=np.int64)
