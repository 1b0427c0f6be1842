"""The features stage: VOP's overlap_feats.h5 from a catalog backbone, batched and resumable
to the same bytes; the layout read the way VOP's loader reads it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from stages import features as stage
from vcat.catalog.loader import load_around
from vcat.features import run as run_module
from vcat.features.extract import keypoints
from vcat.features.images import Geometry, InputError, Item, nearest_resize, prepare
from vcat.models.factory import build_model
from vcat.stage import StageError

ARCH = "vit_tiny_patch16_224"
SIZES = [(40, 30), (30, 40), (32, 32), (50, 20), (24, 36), (36, 24), (44, 33)]  # (w, h)


def add_backbone(project: Path, name: str, kwargs: dict, seed: int = 0, size: int = 32) -> None:
    """A tiny timm ViT entry with seeded weights, checked against the project's dvc.lock."""
    import timm

    torch.manual_seed(seed)
    state = timm.create_model(ARCH, pretrained=False, **kwargs).state_dict()
    checkpoint = project / "models" / name / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state}, checkpoint)
    digest = hashlib.md5(checkpoint.read_bytes()).hexdigest()
    (project / "catalog" / "models" / f"{name}.yaml").write_text(
        f"""\
title: Tiny ViT
description: A one-block ViT for the features tests.
licence: {{name: CC0-1.0, redistribution: allowed}}
architecture:
  library: timm
  name: {ARCH}
  kwargs: {json.dumps(kwargs)}
input:
  width: {size}
  height: {size}
  mean: [0.5, 0.4, 0.3]
  std: [0.25, 0.2, 0.3]
produced_by:
  stage: pretrain
  checkpoint: models/{name}/checkpoint.pt
"""
    )
    lock_path = project / "dvc.lock"
    lock = json.loads(lock_path.read_text()) if lock_path.exists() else {"schema": "2.0"}
    lock.setdefault("stages", {})[f"pretrain@{name}"] = {
        "cmd": "x",
        "outs": [{"path": f"models/{name}/checkpoint.pt", "md5": digest, "size": 1}],
    }
    lock_path.write_text(json.dumps(lock))


CLS_VIT = {"img_size": 32, "patch_size": 8, "depth": 1, "num_classes": 0}
AVG_VIT = {**CLS_VIT, "class_token": False, "global_pool": "avg"}


def make_megadepth(root: Path, seed: int = 0) -> dict[str, dict[str, np.ndarray]]:
    """A one-scene MegaDepth root (images of SIZES, depth, cameras); truth per image path."""
    rng = np.random.default_rng(seed)
    truth: dict[str, dict[str, np.ndarray]] = {}
    paths, depths, Ks, poses = [], [], [], []
    for k, (w, h) in enumerate(SIZES):
        image_path = f"Undistorted_SfM/s1/images/img{k}.png"
        depth_path = f"depth_undistorted/s1/img{k}.h5"
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        depth = rng.uniform(1, 10, (h, w)).astype(np.float32)
        (root / image_path).parent.mkdir(parents=True, exist_ok=True)
        (root / depth_path).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / image_path), image[..., ::-1])
        with h5py.File(root / depth_path, "w") as file:
            file["depth"] = depth
        K = np.array([[50.0 + k, 0, w / 2], [0, 51.0 + k, h / 2], [0, 0, 1]])
        pose = np.eye(4)
        pose[:3, 3] = rng.normal(size=3)
        paths.append(image_path)
        depths.append(depth_path)
        Ks.append(K)
        poses.append(pose)
        truth[image_path] = {"image": image, "depth": depth, "K": K, "pose": pose}
    (root / "scene_info").mkdir(parents=True)
    np.savez(
        root / "scene_info" / "s1.npz",
        image_paths=np.array(paths),
        depth_paths=np.array(depths),
        intrinsics=np.stack(Ks),
        poses=np.stack(poses),
    )
    return truth


def run(
    project: Path, data: Path, model: str = "tiny", overwrite: bool = False, **conf: object
) -> Path:
    output = project / "out" / "overlap_feats.h5"
    return stage.main({"workers": 0, **conf}, data, model, output, overwrite, project=project)


def image_groups(path: Path) -> list[str]:
    names: list[str] = []
    with h5py.File(path, "r") as file:
        file.visititems(
            lambda name, obj: (
                names.append(name.rpartition("/")[0])
                if isinstance(obj, h5py.Dataset) and name.endswith("/keypoints")
                else None
            )
        )
    return sorted(names)


def test_keypoints_are_vop_patch_centres() -> None:
    # VOP's grid for 14-pixel patches: 14*i + 7.5 on each axis, row by row, (x, y)
    expected = [[7.5, 7.5], [21.5, 7.5], [7.5, 21.5], [21.5, 21.5]]
    assert keypoints(2, 14).tolist() == expected
    assert keypoints(3, 8)[5].tolist() == [2 * 8 + 4.5, 1 * 8 + 4.5]


def test_prepare_resizes_pads_scales_the_camera_and_takes_depth_by_nearest(
    tmp_path: Path,
) -> None:
    truth = make_megadepth(tmp_path)
    name = "Undistorted_SfM/s1/images/img0.png"  # 40 x 30 -> 32 x 24
    depth_file = tmp_path / "depth_undistorted/s1/img0.h5"
    geometry = Geometry(truth[name]["K"], truth[name]["pose"], depth_file)
    prepared = prepare(Item(name, tmp_path / name, geometry), 32, "area", True)
    assert prepared.failure is None and prepared.image is not None
    arrays = prepared.arrays
    assert arrays["image_size"].tolist() == [32, 24]
    assert arrays["original_image_size"].tolist() == [40, 30]
    assert arrays["scales"].tolist() == [0.800000011920929, 0.800000011920929]  # float32 0.8
    # fx 50 * 0.8, cx 20 * 0.8 ... (VOP: diag(scales, 1) @ K)
    assert np.allclose(arrays["K"], [[40, 0, 16], [0, 40.8, 12], [0, 0, 1]])
    assert arrays["K"].dtype == np.float32 and arrays["original_K"].dtype == np.float64
    assert arrays["T_w2cam"].dtype == np.float32 and arrays["T_w2cam"].shape == (4, 4)
    image = prepared.image
    assert image.shape == (32, 32, 3) and not image[24:].any()
    expected = cv2.resize(truth[name]["image"], (32, 24), interpolation=cv2.INTER_AREA)
    assert np.array_equal(image[:24], expected)
    depth = arrays["depth"]
    assert depth.shape == (32, 32) and depth.dtype == np.float32 and not depth[24:].any()
    # row i of the resized depth is source row floor(i * 30 / 24), column j floor(j * 40 / 32)
    assert depth[5, 7] == truth[name]["depth"][6, 8]
    assert depth[23, 31] == truth[name]["depth"][28, 38]
    assert np.array_equal(nearest_resize(np.arange(4).reshape(2, 2), 4, 4)[:, 0], [0, 0, 2, 2])


def test_megadepth_groups_hold_vops_datasets_with_the_backbones_outputs(
    project: Path,
) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    truth = make_megadepth(project / "data")
    metrics = project / "metrics.json"
    output = stage.main(
        {"workers": 0, "batch_size": 3},
        project / "data",
        "tiny",
        project / "out" / "f.h5",
        metrics=metrics,
        project=project,
    )
    assert image_groups(output) == sorted(truth)
    assert json.loads(metrics.read_text()) == {
        "images": 7,
        "dims": 192,
        "patches": 16,
        "failures": 0,
    }
    entry = load_around(project / "catalog", "tiny").get("tiny")
    model = build_model(entry, project)
    mean = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1)
    std = torch.tensor([0.25, 0.2, 0.3]).view(1, 3, 1, 1)
    with h5py.File(output, "r") as file:
        name = "Undistorted_SfM/s1/images/img3.png"  # 50 x 20 -> 32 x 13
        group = file[name]
        shapes = {key: (group[key].shape, group[key].dtype.str) for key in group}
        assert shapes == {
            "keypoints": ((16, 2), "<f4"),
            "descriptors": ((16, 192), "<f4"),
            "global_descriptor": ((192,), "<f4"),
            "image_size": ((2,), "<i8"),
            "original_image_size": ((2,), "<i8"),
            "scales": ((2,), "<f4"),
            "K": ((3, 3), "<f4"),
            "original_K": ((3, 3), "<f8"),
            "T_w2cam": ((4, 4), "<f4"),
            "depth": ((32, 32), "<f4"),
        }
        assert group["image_size"][()].tolist() == [32, 13]
        assert np.array_equal(group["original_K"][()], truth[name]["K"])
        assert group["keypoints"][()].tolist() == keypoints(4, 8).tolist()
        # the network on the image as VOP feeds it: resized, black below, normalised
        canvas = np.zeros((32, 32, 3), np.uint8)
        canvas[:13] = cv2.resize(truth[name]["image"], (32, 13), interpolation=cv2.INTER_AREA)
        x = (torch.from_numpy(canvas).permute(2, 0, 1)[None].float() / 255 - mean) / std
        with torch.no_grad():
            tokens = model.forward_features(x)
        assert np.allclose(group["descriptors"][()], tokens[0, 1:].numpy(), atol=1e-5)
        assert np.allclose(group["global_descriptor"][()], tokens[0, 0].numpy(), atol=1e-5)


def test_a_model_without_class_token_gives_the_mean_of_its_patch_tokens(
    project: Path, tmp_path: Path
) -> None:
    add_backbone(project, "avg", AVG_VIT)
    folder = project / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    output = run(project, folder, "avg")
    model = build_model(load_around(project / "catalog", "avg").get("avg"), project)
    with h5py.File(output, "r") as file:
        tokens = torch.from_numpy(file["a.png/descriptors"][()])[None]
        pooled = file["a.png/global_descriptor"][()]
    # timm's avg pool: the mean of the patch tokens, then its fc_norm
    with torch.no_grad():
        expected = model.fc_norm(tokens.mean(dim=1))[0].numpy()
    assert np.allclose(pooled, expected, atol=1e-5)


def vop_sample(file: h5py.File, name: str) -> dict[str, torch.Tensor]:
    """What VOP's SampleDataset gives for one image: every dataset of its group as a tensor,
    the keys suffixed 0 and 1 (reimplemented from datasets.py of weitong8591/vop)."""
    data = {key: torch.Tensor(file[name][key].__array__()) for key in file[name]}
    return {**{k + "0": v for k, v in data.items()}, **{k + "1": v for k, v in data.items()}}


def test_vops_loader_reads_the_file_and_batches_it(project: Path) -> None:
    from torch.utils.data import default_collate

    add_backbone(project, "tiny", CLS_VIT)
    make_megadepth(project / "data")
    output = run(project, project / "data")
    with h5py.File(output, "r") as file:
        names = image_groups(output)
        batch = default_collate([vop_sample(file, name) for name in names])
    assert batch["descriptors0"].shape == (7, 16, 192)
    assert batch["global_descriptor1"].shape == (7, 192)
    assert batch["keypoints0"].shape == (7, 16, 2)
    # VOP's overlap head normalises keypoints by image_size, its pose code scales K
    size = batch["image_size0"]
    assert size.shape == (7, 2) and float(size.max()) == 32.0
    scaled = batch["scales0"][:, :, None] * batch["original_K0"][:, :2]
    assert torch.allclose(batch["K0"][:, :2], scaled, atol=1e-4)
    # relative pose as VOP's evaluation composes it
    relative = batch["T_w2cam1"][1] @ torch.linalg.inv(batch["T_w2cam0"][0])
    assert relative.shape == (4, 4)


def test_stopped_run_resumes_to_the_same_bytes_with_any_batch_size(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    make_megadepth(project / "data")
    whole = run(project, project / "data", batch_size=2).read_bytes()
    assert run(project, project / "data", batch_size=7, overwrite=True).read_bytes() == whole

    real_write = run_module.write_part
    calls = {"writes": 0, "images": 0}

    def stop_after_two(*args):
        calls["writes"] += 1
        if calls["writes"] == 3:
            raise KeyboardInterrupt  # the run stops while writing its third batch
        return real_write(*args)

    monkeypatch.setattr(run_module, "write_part", stop_after_two)
    output = project / "out" / "overlap_feats.h5"
    output.unlink()
    with pytest.raises(KeyboardInterrupt):
        run(project, project / "data", batch_size=2, overwrite=True)
    assert not output.exists()
    partial = output.with_name("overlap_feats.h5.partial")
    assert len(list(partial.glob("part-*.npz"))) == 2  # 4 images kept
    # what a kill during a write leaves: a temporary file, never a part; and a part that
    # cannot be read (a damaged disk) is dropped, not trusted
    (partial / ".part-00000002.npz.tmp").write_bytes(b"PK half")
    (partial / "part-00000007.npz").write_bytes(b"PK damaged")
    monkeypatch.setattr(run_module, "write_part", real_write)
    real_call = run_module.Extractor.__call__

    def counting(self, images):
        calls["images"] += len(images)
        return real_call(self, images)

    monkeypatch.setattr(run_module.Extractor, "__call__", counting)
    assert run(project, project / "data", batch_size=3).read_bytes() == whole
    # batches of 3 over 7: [0-2] done, [3-5] recomputed whole (3 not done), [6]
    assert calls["images"] == 4
    assert not partial.exists()


def test_unchanged_output_is_left_alone_and_other_settings_redo_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    make_megadepth(project / "data")
    output = run(project, project / "data")
    before = output.stat().st_mtime_ns

    def no_model(*args, **kwargs):
        raise AssertionError("an up-to-date output must not build the model")

    monkeypatch.setattr("vcat.models.factory.build_model", no_model)
    assert run(project, project / "data").stat().st_mtime_ns == before
    monkeypatch.undo()
    run(project, project / "data", store_depth=False)
    with h5py.File(output, "r") as file:
        assert "depth" not in file["Undistorted_SfM/s1/images/img0.png"]
        record = json.loads(file.attrs["vcat_features"])
    assert record["model"] == "tiny" and record["store_depth"] is False


def test_plain_folder_has_no_geometry_and_reports_unreadable_images(project: Path) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    folder = project / "images"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(1)
    cv2.imwrite(str(folder / "sub" / "b.jpg"), rng.integers(0, 256, (20, 60, 3), dtype=np.uint8))
    cv2.imwrite(str(folder / "a.png"), rng.integers(0, 256, (64, 16, 3), dtype=np.uint8))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("not an image")
    with pytest.raises(stage.TooManyFailed, match=r"1 of 3 image\(s\).*broken\.jpg"):
        run(project, folder)
    metrics = project / "m.json"
    output = stage.main(
        {"workers": 0, "max_failed_fraction": 0.5},
        folder,
        "tiny",
        project / "out" / "overlap_feats.h5",
        metrics=metrics,
        project=project,
    )
    assert json.loads(metrics.read_text())["failures"] == 1
    assert image_groups(output) == ["a.png", "sub/b.jpg"]
    with h5py.File(output, "r") as file:
        assert sorted(file["sub/b.jpg"]) == [
            "descriptors",
            "global_descriptor",
            "image_size",
            "keypoints",
            "original_image_size",
        ]
        assert file["sub/b.jpg/image_size"][()].tolist() == [32, 11]  # 60 x 20, long side 32
        assert file["a.png/image_size"][()].tolist() == [8, 32]
        failed = json.loads(file.attrs["vcat_failures"])
    assert [name for name, _ in failed] == ["broken.jpg"]


def test_bad_settings_and_inputs_are_errors_that_say_what_to_fix(project: Path) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    (project / "empty").mkdir()
    with pytest.raises(InputError, match="no image file"):
        run(project, project / "empty")
    with pytest.raises(StageError, match="interpolation 'lanczos'"):
        run(project, project / "empty", interpolation="lanczos")
    with pytest.raises(StageError, match="batch_size"):
        run(project, project / "empty", batch_size=0)
    with pytest.raises(StageError, match="not a setting"):
        run(project, project / "empty", resize=3)


def test_command_runs_the_stage_and_reports_a_missing_model(project: Path) -> None:
    add_backbone(project, "tiny", CLS_VIT)
    make_megadepth(project / "data")
    app = typer.Typer()
    app.command()(stage.command)
    output = project / "out" / "f.h5"
    args = [str(project / "data"), str(output), "--metrics", str(project / "m.json")]
    result = CliRunner().invoke(app, [*args, "--model", "tiny"])
    assert result.exit_code == 0, result.output
    assert len(image_groups(output)) == 7
    result = CliRunner().invoke(app, [*args, "--model", "nonesuch"])
    assert result.exit_code == 2
    assert "nonesuch" in result.output
