"""Decoding the members of an item.

``decode`` is one of:

``"bytes"`` (the default)
    Every member as it is stored: ``bytes`` for shard members, the stored values otherwise.
``"pil"``, ``"numpy"``, ``"tensor"``
    Image members (a name ending ``jpg``, ``jpeg``, ``png``, ``webp``, ``bmp``, ``ppm``,
    ``tif``, ``tiff``, e.g. ``jpg`` or a pair's ``1.jpg``) as an RGB ``PIL.Image``, an
    ``HxWx3`` uint8 array, or a ``3xHxW`` uint8 tensor; ``json`` members parsed; ``npy``
    members as arrays (tensors for ``"tensor"``); ``txt`` members as ``str``. Numeric numpy
    arrays of other readers become tensors for ``"tensor"`` (arrays of strings stay arrays).

Names that start with ``__`` (``__key__``) and other members are left as they are.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

DECODE_MODES = ("bytes", "pil", "numpy", "tensor")
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "ppm", "tif", "tiff"})


def _image(data: bytes, mode: str) -> Any:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as opened:
        image = opened.convert("RGB")
    if mode == "pil":
        return image
    array = np.asarray(image)
    if mode == "numpy":
        return array
    import torch

    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def _array(value: np.ndarray, mode: str) -> Any:
    if mode != "tensor" or value.dtype.kind not in "biufc":  # torch has no strings
        return value
    import torch

    return torch.from_numpy(np.ascontiguousarray(value))


def decode_value(name: str, value: Any, mode: str) -> Any:
    """Member ``name`` of an item decoded as ``mode`` says (see the module docstring)."""
    if mode == "bytes" or name.startswith("__"):
        return value
    if isinstance(value, np.ndarray):
        return _array(value, mode)
    if not isinstance(value, bytes | bytearray | memoryview):
        return value
    suffix = name.rsplit(".", 1)[-1].lower()
    if suffix in IMAGE_SUFFIXES:
        return _image(bytes(value), mode)
    if suffix == "json":
        return json.loads(bytes(value))
    if suffix == "npy":
        return _array(np.load(io.BytesIO(bytes(value)), allow_pickle=False), mode)
    if suffix == "txt":
        return bytes(value).decode("utf-8")
    return value


def decode_item(item: dict[str, Any], mode: str) -> dict[str, Any]:
    """Every member of ``item`` decoded as ``mode`` says."""
    if mode == "bytes":
        return item
    return {name: decode_value(name, value, mode) for name, value in item.items()}
