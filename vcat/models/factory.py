"""Networks from model entries: timm builds the architecture, the weights come from a local,
verified file (``vcat.models.weights``), never from a hub."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vcat.catalog.loader import Entry
from vcat.catalog.schema import ModelEntry
from vcat.models.weights import WeightsError, verified_weights

#: Keys under which training scripts commonly nest the weights in a checkpoint file.
_NESTED = ("model", "state_dict", "model_state_dict", "module")


class ModelError(Exception):
    """The entry cannot be built: not a timm architecture, or an unknown name or argument."""


@dataclass(frozen=True)
class InputConfig:
    """How images reach the network: size, normalisation and resampling from the entry."""

    width: int
    height: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str


def model_spec(entry: Entry) -> ModelEntry:
    if not isinstance(entry.spec, ModelEntry):
        raise ModelError(f"{entry.name} is a dataset, not a model")
    return entry.spec


def input_config(entry: Entry) -> InputConfig:
    """The entry's ``input``, with ImageNet's mean and std and bicubic where it says none."""
    spec = model_spec(entry)
    if spec.input is None:
        raise ModelError(f"{entry.name} has no 'input' (width, height, mean, std): add it")
    return InputConfig(
        width=spec.input.width,
        height=spec.input.height,
        mean=tuple(float(v) for v in spec.input.mean or (0.485, 0.456, 0.406)),  # type: ignore[arg-type]
        std=tuple(float(v) for v in spec.input.std or (0.229, 0.224, 0.225)),  # type: ignore[arg-type]
        interpolation=spec.input.interpolation or "bicubic",
    )


def model_entry(name: str, project: Path | None = None) -> Entry:
    """The catalog entry ``name`` of the project (default: the enclosing one); ``ModelError``
    when there is none (or it is invalid: its problems are in `vcat catalog lint`), or when it
    is not a model."""
    from vcat.catalog.loader import load_around
    from vcat.project import find_project_root

    catalog = load_around((project or find_project_root()) / "catalog", name)
    try:
        entry = catalog.get(name)
    except KeyError as exc:
        raise ModelError(str(exc.args[0])) from None
    model_spec(entry)
    return entry


def load_model(name: str, project: Path | None = None, *, load_weights: bool = True) -> nn.Module:
    """``build_model`` of the project's catalog entry ``name``."""
    return build_model(model_entry(name, project), project, load_weights=load_weights)


def build_model(
    entry: Entry, project: Path | None = None, *, load_weights: bool = True
) -> nn.Module:
    """The network of the model ``entry``, in eval mode on the CPU.

    With ``load_weights`` (the default), its weights come from the verified local file
    (``verified_weights``); a file whose keys or shapes do not fit the architecture is an
    error naming them. Raises ``ModelError`` or ``WeightsError``.
    """
    spec = model_spec(entry)
    model = create(
        entry.name, spec.architecture.library, spec.architecture.name, spec.architecture.kwargs
    )
    if load_weights:
        if project is None:
            from vcat.project import find_project_root

            project = find_project_root()
        weights = verified_weights(entry, project)
        load_state(model, read_state(weights.path), weights.path)
    return model.eval()


def create(name: str, library: str, architecture: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``timm.create_model(architecture, pretrained=False, **kwargs)`` with errors that name
    the entry ``name``."""
    import timm

    if library != "timm":
        raise ModelError(
            f"{name} is an external architecture ({architecture}); vcat builds timm "
            "architectures, and its own stages build the others"
        )
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ModelError(f"{name}: timm has no architecture {architecture!r}{hint}")
    try:
        return timm.create_model(architecture, pretrained=False, **dict(kwargs))
    except TypeError as exc:
        raise ModelError(f"{name}: {architecture} does not take these kwargs: {exc}") from None


def read_state(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file (``torch.save`` formats or safetensors), unwrapped
    from a ``{"model": ...}``-style container; nothing but tensors and plain data is loaded."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(path)
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise WeightsError(f"{path} is not a readable checkpoint: {exc}") from None
    while isinstance(state, Mapping):
        nested = next((state[k] for k in _NESTED if isinstance(state.get(k), Mapping)), None)
        if nested is None:
            break
        state = nested
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise WeightsError(f"{path} holds no mapping of parameter names to tensors")
    return dict(state)


def load_state(model: nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Load ``state`` into ``model`` exactly, through the architecture's own checkpoint
    filter where timm has one (e.g. DINOv2's original keys to timm's)."""
    import sys

    filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    wanted = model.state_dict()
    missing = sorted(set(wanted) - set(state))
    unexpected = sorted(set(state) - set(wanted))
    misshapen = sorted(
        k for k in set(wanted) & set(state) if tuple(wanted[k].shape) != tuple(state[k].shape)
    )
    if missing or unexpected or misshapen:
        parts = [
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''})"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", misshapen),
            )
            if keys
        ]
        raise WeightsError(
            f"{path} does not fit {type(model).__name__}: {'; '.join(parts)}; is it the "
            "checkpoint of this architecture and kwargs?"
        )
    model.load_state_dict(state, strict=True)
