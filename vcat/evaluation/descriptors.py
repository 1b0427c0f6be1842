"""Global descriptors of the images of a folder, for retrieval and copy-detection evaluation.

An evaluation folder (DISC21's ``references/`` or ``queries/``) holds its images directly; an
image's id is its file name without the extension (``R000036.jpg`` is ``R000036``), as
DISC21's ground truth names them. Files without an image extension and sub-folders are not
images of the set.

Each image is decoded (OpenCV, RGB), resized to the network's full input, ``size`` x
``size`` pixels, with Pillow's filter for the model entry's ``interpolation`` (the aspect
ratio is not kept: the whole picture fills the input, as the pretrain stage fed its crops),
and described by one or more :class:`~vcat.features.extract.Extractor` in the same pass: the
pixels are read once whatever the number of networks. Descriptors are the networks' global
descriptors, L2-normalised, so an inner product is a cosine. An image that cannot be decoded
is an error naming the file, never skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from vcat.features.extract import Extractor
from vcat.features.images import decode
from vcat.images import FORMATS_BY_SUFFIX
from vcat.processes import usable_cores

RESAMPLING = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
    "lanczos": Image.Resampling.LANCZOS,
}


class DescriptorError(ValueError):
    """An image folder or image that cannot be described; the message names the file."""


def image_files(folder: Path) -> dict[str, Path]:
    """The images directly in ``folder`` by id (module docstring), sorted by id;
    DescriptorError for a missing folder, one without images, or two files of one id."""
    if not folder.is_dir():
        raise DescriptorError(f"{folder}: no such folder; it must hold the set's images")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower().lstrip(".") not in FORMATS_BY_SUFFIX or not path.is_file():
            continue
        if path.stem in found:
            raise DescriptorError(
                f"{path}: id {path.stem!r} is also {found[path.stem].name}; keep one file per id"
            )
        found[path.stem] = path
    if not found:
        known = ", ".join(sorted(FORMATS_BY_SUFFIX))
        raise DescriptorError(f"{folder}: no image file ({known}) in the folder")
    return dict(sorted(found.items()))


def network_input(path: Path, size: int, interpolation: str) -> NDArray[np.uint8]:
    """The image file ``path`` as the network's ``size`` x ``size`` x 3 RGB input (module
    docstring); DescriptorError naming the file when it cannot be decoded."""
    if interpolation not in RESAMPLING:
        known = ", ".join(RESAMPLING)
        raise DescriptorError(f"interpolation {interpolation!r}: use one of {known}")
    try:
        pixels = decode(path)
    except ValueError as exc:
        raise DescriptorError(f"{path}: {exc}; replace or remove the image") from None
    image = Image.fromarray(pixels).resize((size, size), RESAMPLING[interpolation])
    return np.array(image, dtype=np.uint8)  # a writable copy, as torch wants


def unit_rows(descriptors: NDArray[np.float32], paths: Sequence[Path]) -> NDArray[np.float32]:
    """``descriptors`` with each row divided by its L2 norm; DescriptorError naming the image
    of a zero or non-finite row (it has no direction)."""
    norms = np.linalg.norm(descriptors, axis=1, keepdims=True)
    bad = np.flatnonzero(~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0))
    if len(bad):
        raise DescriptorError(
            f"{paths[int(bad[0])]}: its descriptor is zero or not finite ({len(bad)} image(s)); "
            "are the weights finite?"
        )
    return (descriptors / norms).astype(np.float32)


class _Inputs(Dataset):
    def __init__(self, paths: Sequence[Path], size: int, interpolation: str) -> None:
        self.paths = paths
        self.size = size
        self.interpolation = interpolation

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[NDArray[np.uint8] | None, str | None]:
        # the reason travels back as text: a worker's exception would reach the caller
        # wrapped in a traceback
        try:
            return network_input(self.paths[index], self.size, self.interpolation), None
        except DescriptorError as exc:
            return None, str(exc)


def _collate(
    items: list[tuple[NDArray[np.uint8] | None, str | None]],
) -> torch.Tensor | str:
    for _, failure in items:
        if failure is not None:
            return failure
    return torch.from_numpy(np.stack([image for image, _ in items if image is not None]))


def describe(
    paths: Sequence[Path],
    networks: Sequence[Extractor],
    *,
    interpolation: str,
    batch_size: int,
    workers: int,
    step: Callable[[int], None] = lambda _: None,
) -> list[NDArray[np.float32]]:
    """The unit global descriptors of ``paths`` by each of ``networks`` (all of one input
    size), one (images x D) matrix per network in the order of ``paths``; ``batch_size``
    images per forward, read by ``workers`` DataLoader processes; ``step(n)`` after each batch.
    DescriptorError naming the first image that cannot be read."""
    if not networks or not paths:
        raise ValueError("give at least one network and one image")
    sizes = {network.size for network in networks}
    if len(sizes) != 1:
        raise ValueError(f"the networks take inputs of sizes {sorted(sizes)}; give one size")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    loader = DataLoader(
        _Inputs(paths, sizes.pop(), interpolation),
        batch_size=batch_size,
        shuffle=False,
        num_workers=min(workers, usable_cores()),  # more only compete
        collate_fn=_collate,
        pin_memory=any(network.cuda for network in networks),
    )
    parts: list[list[NDArray[np.float32]]] = [[] for _ in networks]
    for batch in loader:
        if isinstance(batch, str):
            raise DescriptorError(batch)
        for part, network in zip(parts, networks, strict=True):
            part.append(network(batch).global_descriptor)
        step(len(batch))
    return [unit_rows(np.concatenate(part), paths) for part in parts]
