"""vcat.devices: the device param, the VCAT_DEVICE override and their refusals."""

from __future__ import annotations

import pytest
import torch

from vcat.devices import DEVICE_ENV, DeviceError, requested_device, resolve_device


def test_param_is_used_without_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    assert requested_device("cpu") == "cpu"
    assert resolve_device("cpu") == torch.device("cpu")


def test_environment_overrides_param(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert requested_device("cuda") == "cpu"
    assert resolve_device("cuda") == torch.device("cpu")


def test_empty_override_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV, "  ")
    assert requested_device("auto") == "auto"


def test_auto_follows_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected


def test_unknown_name_names_its_source(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEVICE_ENV, "tpu")
    with pytest.raises(DeviceError, match=r"VCAT_DEVICE=tpu: use one of auto, cpu, cuda"):
        resolve_device("cpu")
    monkeypatch.delenv(DEVICE_ENV)
    with pytest.raises(ValueError, match=r"device 'gpu'"):
        resolve_device("gpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal needs a machine without CUDA")
def test_cuda_without_gpu_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device("cuda")
