"""The checkpoint gate (vcat.gates.kinds.checkpoint): weights that are not finite, that blew up
or collapsed, and a loss that did not fall, each fail their check naming the tensor or file;
declared in params.yaml's model_gates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner, Result

from vcat.cli import app

runner = CliRunner()


def checkpoint(path: Path, change: str | None = None) -> Path:
    torch.manual_seed(0)
    state = {
        "blocks.0.weight": torch.randn(8, 8) * 0.02,
        "blocks.0.bias": torch.zeros(8),  # zero biases are normal
        "head.weight": torch.randn(4, 8) * 0.02,
        "steps": torch.tensor(12),  # integers are not weights
    }
    if change == "nan":
        state["head.weight"][1, 2] = math.nan
    elif change == "huge":
        state["head.weight"][0, 0] = 3.0e6
    elif change == "zeros":
        state["blocks.0.weight"] = torch.zeros(8, 8)
    torch.save({"model": state}, path)
    return path


def training_metrics(path: Path, first: float, last: float) -> Path:
    path.write_text(json.dumps({"loss_first_epoch": first, "loss_last_epoch": last}))
    return path


def gate(tmp_path: Path, artifact: Path, metrics: Path | None) -> Result:
    checks = {"loss_fell": {"metrics": str(metrics)}} if metrics is not None else {}
    params = tmp_path / "params.yaml"
    declared = {"artifact": str(artifact), "kind": "checkpoint", "checks": checks}
    params.write_text(yaml.safe_dump({"model_gates": {"trained": declared}}))
    out = tmp_path / "gate"
    return runner.invoke(
        app, ["check", str(artifact), "--out", str(out), "--params", str(params), "--json"]
    )


def failed(result: Result) -> dict[str, list[str]]:
    document = json.loads(result.stdout)
    return {check["check"]: check["items"] for check in document["checks"] if not check["success"]}


def test_a_sound_checkpoint_whose_loss_fell_passes(tmp_path: Path) -> None:
    artifact = checkpoint(tmp_path / "model.pt")
    result = gate(tmp_path, artifact, training_metrics(tmp_path / "m.json", 1.2, 0.7))
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "checkpoint"
    assert {c["check"] for c in document["checks"]} >= {"finite_weights", "loss_fell"}


@pytest.mark.parametrize(
    ("change", "check", "tensor"),
    [
        ("nan", "finite_weights", "head.weight"),
        ("huge", "weights_bounded", "head.weight"),
        ("zeros", "weights_not_collapsed", "blocks.0.weight"),
    ],
)
def test_broken_weights_fail_their_check_naming_the_tensor(
    tmp_path: Path, change: str, check: str, tensor: str
) -> None:
    artifact = checkpoint(tmp_path / "model.pt", change)
    result = gate(tmp_path, artifact, training_metrics(tmp_path / "m.json", 1.2, 0.7))
    assert result.exit_code == 1, result.output
    assert failed(result) == {check: [tensor]}


def test_a_loss_that_did_not_fall_fails(tmp_path: Path) -> None:
    artifact = checkpoint(tmp_path / "model.pt")
    result = gate(tmp_path, artifact, training_metrics(tmp_path / "m.json", 0.7, 0.9))
    assert result.exit_code == 1
    assert set(failed(result)) == {"loss_fell"}


def test_missing_metrics_or_a_checkpoint_with_code_cannot_be_checked(tmp_path: Path) -> None:
    artifact = checkpoint(tmp_path / "model.pt")
    result = gate(tmp_path, artifact, tmp_path / "absent.json")
    assert result.exit_code == 2 and "no training metrics" in result.stderr

    class Payload:
        def __reduce__(self):  # would run on a plain unpickling
            return (print, ("owned",))

    torch.save({"model": Payload()}, tmp_path / "evil.pt")
    result = gate(tmp_path, tmp_path / "evil.pt", None)
    assert result.exit_code == 2 and "not a readable checkpoint" in result.stderr
