"""The pretrain stage on the demo crop pairs: the loss falls, the checkpoint is the demo
backbone, and a run killed half-way resumes to the same bytes as one never stopped."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vcat.catalog.loader import load_around
from vcat.models.factory import build_model, load_state, read_state

PAIRS = Path("data/prepared/croco-crops/demo-megadepth")
VCAT = str(Path(sys.executable).with_name("vcat"))


def params(tmp_path: Path, epochs: int) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(
        "pretrain:\n"
        f"  schedule: {{epochs: {epochs}, warmup_epochs: 1, cosine_epochs: {epochs}}}\n"
        "  batch_size: 32\n"
        "  lr: 2.0e-3\n"
    )
    return path


def pretrain(root: Path, tmp_path: Path, out: Path, epochs: int) -> subprocess.Popen[str]:
    args = [VCAT, "stage", "pretrain", str(root / PAIRS), "demo-croco-vit", str(out)]
    args += ["--live", str(out.parent / "live"), "--metrics", str(out.parent / "m.json")]
    args += ["--params", str(params(tmp_path, epochs))]
    env = {**os.environ, "VCAT_CATALOG": str(root / "catalog")}
    return subprocess.Popen(args, cwd=root, env=env, stderr=subprocess.PIPE, text=True)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.slow  # about 40 s of training on two cores
def test_the_loss_falls_and_the_checkpoint_is_the_backbone(demo_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run" / "checkpoint.pt"
    process = pretrain(demo_root, tmp_path, out, epochs=4)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    summary = json.loads((out.parent / "m.json").read_text())
    assert summary["pairs"] == 236 and summary["epochs"] == 4
    assert summary["loss_last_epoch"] < 0.9 * summary["loss_first_epoch"], summary
    curve = (out.parent / "live" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert len(curve) == 5
    entry = load_around(demo_root / "catalog", "demo-croco-vit").get("demo-croco-vit")
    backbone = build_model(entry, demo_root, load_weights=False)
    load_state(backbone, read_state(out), out)  # the encoder's weights, nothing else
    features = backbone(torch.zeros(2, 3, 64, 64))
    assert features.shape == (2, 192) and torch.isfinite(features).all()
    assert not out.with_name(f".{out.name}.resume.pt").exists()
    again = pretrain(demo_root, tmp_path, out, epochs=4)
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0 and "is up to date" in err


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_bytes(demo_root: Path, tmp_path: Path) -> None:
    whole = tmp_path / "whole" / "checkpoint.pt"
    process = pretrain(demo_root, tmp_path, whole, epochs=3)
    assert process.communicate(timeout=600)[1] is not None and process.returncode == 0
    killed = tmp_path / "killed" / "checkpoint.pt"
    process = pretrain(demo_root, tmp_path, killed, epochs=3)
    assert process.stderr is not None
    for line in process.stderr:  # the first epoch is done and its resume file written
        if line.startswith("epoch 1/3"):
            break
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert not killed.exists()
    assert killed.with_name(f".{killed.name}.resume.pt").exists()
    resumed = pretrain(demo_root, tmp_path, killed, epochs=3)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "epoch 1/3" not in err  # it started at epoch 2
    assert md5(killed) == md5(whole)
    curve = (killed.parent / "live" / "plots" / "metrics" / "loss.tsv").read_text()
    assert curve == (whole.parent / "live" / "plots" / "metrics" / "loss.tsv").read_text()


def test_the_schedule_is_stretched_by_the_catalogs_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stages.pretrain import PretrainError, _counts

    catalog = tmp_path / "catalog" / "datasets"
    catalog.mkdir(parents=True)
    (catalog / "crops.yaml").write_text(
        "title: Crops\ndescription: Pairs.\n"
        "licence: {name: CC0-1.0, redistribution: allowed}\n"
        "access: {kind: manual, instructions: By hand.}\n"
        "subsets:\n"
        "  - name: indoor\n"
        "    include: ['indoor/**']\n"
        "    count: {unit: pairs, published: 1593689, released: 144228}\n"
        "  - {name: outdoor, include: ['outdoor/**'], count: {unit: pairs, published: 1070414}}\n"
        "  - {name: uncounted, include: ['other/**']}\n"
    )
    monkeypatch.setenv("VCAT_CATALOG", str(tmp_path / "catalog"))
    assert _counts(["crops:indoor", "crops:outdoor"]) == (2664103, 1214642)
    for bad in ("crops:uncounted", "crops:nosuch", "nosuch:indoor"):
        with pytest.raises(PretrainError):
            _counts([bad])
