"""Which torch device a stage runs on.

A stage's ``device`` param (``auto``, ``cpu`` or ``cuda``) is the default; the environment
variable ``VCAT_DEVICE`` overrides it for one run (``vcat run --device`` sets it). The device
is not a DVC param: the same weights and metrics are expected on either, so switching the
machine does not make DVC think the outputs are stale.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DEVICE_ENV = "VCAT_DEVICE"
DEVICE_CHOICES = ("auto", "cpu", "cuda")


class DeviceError(ValueError):
    """The device asked for is unknown or absent; the message says where it was asked."""


def requested_device(param: str) -> str:
    """The device asked for: ``VCAT_DEVICE`` when set and not empty, else ``param``."""
    override = os.environ.get(DEVICE_ENV, "").strip()
    return override or str(param)


def resolve_device(param: str) -> torch.device:
    """The device for ``param`` (module doc): ``auto`` is CUDA when torch sees a GPU, else the
    CPU. Raises DeviceError for an unknown name or ``cuda`` without a GPU, naming where the
    request came from."""
    import torch  # only when a stage runs: the CLI stays light

    name = requested_device(param)
    source = (
        f"{DEVICE_ENV}={name}" if os.environ.get(DEVICE_ENV, "").strip() else f"device {name!r}"
    )
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in DEVICE_CHOICES:
        raise DeviceError(f"{source}: use one of {', '.join(DEVICE_CHOICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"{source}: torch sees no CUDA device; use auto or cpu")
    return torch.device(name)
