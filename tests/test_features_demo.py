"""The features stage with the demo backbone (demo-croco-vit, trained by `dvc repro pretrain`)
on the demo MegaDepth images (of this checkout, or of the copy ``demo_trained_root`` builds;
slow: the copy runs the training chain)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from stages import features as stage
from vcat.features.extract import keypoints
from vcat.models.factory import load_model


def one_scene_root(tmp_path: Path, demo: Path, scene: str) -> Path:
    """A MegaDepth root over the demo's files with only ``scene``'s scene file."""
    sources = demo / "data" / "sources" / "demo-megadepth"
    root = tmp_path / "megadepth"
    (root / "scene_info").mkdir(parents=True)
    shutil.copy(sources / "scene_info" / f"{scene}.npz", root / "scene_info")
    for folder in ("Undistorted_SfM", "depth_undistorted"):
        (root / folder).symlink_to(sources / folder)
    return root


@pytest.mark.slow
def test_demo_backbone_describes_a_demo_scene_in_vops_layout(
    tmp_path: Path, demo_trained_root: Path
) -> None:
    model = load_model("demo-croco-vit", demo_trained_root)
    root = one_scene_root(tmp_path, demo_trained_root, "demo01")
    metrics = tmp_path / "m.json"
    output = stage.main(
        {"workers": 2, "batch_size": 16},
        root,
        "demo-croco-vit",
        tmp_path / "overlap_feats.h5",
        metrics=metrics,
        project=demo_trained_root,
    )
    assert json.loads(metrics.read_text()) == {
        "images": 48,
        "dims": 192,
        "patches": 64,
        "failures": 0,
    }
    with np.load(root / "scene_info" / "demo01.npz") as info:
        name = str(info["image_paths"][0])
        original_K = info["intrinsics"][0]
    with h5py.File(output, "r") as file:
        group = file[name]
        assert group["keypoints"][()].tolist() == keypoints(8, 8).tolist()  # 8*i + 4.5
        assert group["image_size"][()].tolist() == [64, 48]  # 320 x 240 -> long side 64
        assert group["original_image_size"][()].tolist() == [320, 240]
        assert np.allclose(group["K"][()][:2], original_K[:2] * 0.2, atol=1e-4)
        depth = group["depth"][()]
        assert depth.shape == (64, 64) and not depth[48:].any() and depth[:48].any()
        tokens = torch.from_numpy(group["descriptors"][()])
        pooled = group["global_descriptor"][()]
    # global_pool avg without a class token: the patch tokens' mean, through timm's fc_norm
    with torch.no_grad():
        expected = model.fc_norm(tokens.mean(dim=0, keepdim=True))[0].numpy()
    assert np.allclose(pooled, expected, atol=1e-5)
