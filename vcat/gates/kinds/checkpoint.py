"""Checkpoints: a trained model's weights file (``torch.save`` or safetensors), with the
metrics its training stage wrote.

The ``tensors`` table has one row per floating-point tensor of the weights (item: its name):
its element count, whether every value is finite, its largest absolute value and its root
mean square (for matrices and kernels; vectors such as biases may rightly be all zero). The
``training`` table has one row, from the training stage's metrics JSON that the ``loss_fell``
check names (``metrics``: a path, relative to the project or absolute): the first and last
epoch's loss and whether it fell. The tensors are those ``vcat.models.factory.read_state``
reads (no code in the file is run).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vcat.gates.checks import Check, Expect, Params, values_between, values_true
from vcat.gates.profile import Profile, ProfileError, Table

KIND = "checkpoint"
DESCRIPTION = "trained weights (.pt, .pth, .safetensors) and their training metrics"
SUFFIXES = (".pt", ".pth", ".safetensors")


def _loss_fell(params: Params) -> list[Expect]:
    if params.get("metrics") is None:
        return []
    return [Expect("ExpectColumnValuesToBeInSet", {"column": "loss_fell", "value_set": [True]})]


CHECKS: list[Check] = [
    values_true("finite_weights", "tensors", "finite", "every weight is a finite number"),
    values_between(
        "weights_bounded",
        "tensors",
        "max_abs",
        "no tensor holds a value beyond {max} in absolute value (a diverged run)",
        None,
        "max",
        {"max": 1.0e4},
    ),
    values_between(
        "weights_not_collapsed",
        "tensors",
        "rms",
        "no weight matrix or kernel has collapsed to zeros (rms below {min})",
        "min",
        None,
        {"min": 1.0e-8},
    ),
    Check(
        "loss_fell",
        "training",
        "the training loss fell from the first epoch to the last (metrics: {metrics})",
        {"metrics": None},
        _loss_fell,
        "loss_fell",
    ),
]


def detect(artifact: Path) -> bool:
    return artifact.is_file() and artifact.suffix in SUFFIXES


def profile(artifact: Path, workers: int, params: Mapping[str, Params]) -> Profile:
    import pandas as pd

    from vcat.models.factory import read_state
    from vcat.models.weights import WeightsError

    if not artifact.is_file():
        raise ProfileError(f"{artifact}: no such checkpoint file; run the stage that trains it")
    try:
        state = read_state(artifact)
    except WeightsError as exc:
        raise ProfileError(str(exc)) from None
    rows = [_tensor_row(name, tensor) for name, tensor in sorted(state.items())]
    rows = [row for row in rows if row is not None]
    if not rows:
        raise ProfileError(f"{artifact} holds no floating-point tensor")
    tables = {"tensors": Table(pd.DataFrame(rows), "tensor")}
    facts: dict[str, Any] = {"tensors": len(rows), "parameters": sum(r["numel"] for r in rows)}
    metrics = params.get("loss_fell", {}).get("metrics")
    if metrics is not None:
        training = _training_row(Path(metrics))
        tables["training"] = Table(pd.DataFrame([training]), "metrics")
        facts["loss_first_epoch"] = training["loss_first"]
        facts["loss_last_epoch"] = training["loss_last"]
    return Profile(KIND, artifact, tables, facts)


def _tensor_row(name: str, tensor: Any) -> dict[str, Any] | None:
    import torch

    if not torch.is_floating_point(tensor):
        return None
    values = tensor.detach().to(torch.float64)
    finite = bool(torch.isfinite(values).all())
    numel = values.numel()
    clean = values[torch.isfinite(values)]
    max_abs = float(clean.abs().max()) if clean.numel() else math.inf
    rms = float(clean.pow(2).mean().sqrt()) if clean.numel() else 0.0
    return {
        "tensor": name,
        "numel": numel,
        "finite": finite,
        "max_abs": max_abs,
        # biases and norm shifts (one dimension) may rightly be all zero: not a collapse
        "rms": rms if values.dim() >= 2 else math.inf,
    }


def _training_row(path: Path) -> dict[str, Any]:
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
        first, last = float(values["loss_first_epoch"]), float(values["loss_last_epoch"])
    except FileNotFoundError:
        raise ProfileError(f"{path}: no training metrics; run the training stage") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ProfileError(
            f"{path}: cannot read loss_first_epoch and loss_last_epoch ({exc})"
        ) from None
    fell = math.isfinite(last) and last < first
    return {"metrics": str(path), "loss_first": first, "loss_last": last, "loss_fell": fell}
