"""VOP's overlap head: its shape, its loss and pair sampling against hand-worked cases, the
feature reader on HDF5 files in VOP's layout, and a synthetic world whose overlap is learnable.

The world (:func:`make_world`): each scene is a strip of 40 x 4 cells, each cell a random
latent vector; an image sees 8 x 4 cells from a random offset, so the overlap of two images
is ``max(0, 8 - |dx|) / 8``. A patch token is a fixed map ("the backbone", the same in every
scene) of its cell's latent vector, plus a strong per-image nuisance in another subspace
(light, exposure: shared by all the image's patches) and a little noise. The CLS token is the
patches' mean, so the nuisance swamps it; untrained patch embeddings are dominated by it too;
a head that learns to discard the nuisance subspace finds the shared cells.
"""

from __future__ import annotations

import itertools
import pickle
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from vcat.geometry.overlap import overlap_bytes
from vcat.training.overlap_data import PairDataset, epoch_pairs, read_scene
from vcat.training.overlap_features import FeatureError, FeatureStore
from vcat.training.overlap_head import (
    HeadConfig,
    OverlapHead,
    head_checkpoint,
    head_from_checkpoint,
    normalize_keypoints,
    overlap_labels,
    overlap_loss,
)
from vcat.training.overlap_pairs import OverlapBins, sample_pairs

WIDTH, HEIGHT, STRIP = 8, 4, 40  # an image's cells across and down; the scene's length
LATENT, DIM, NUISANCE = 12, 48, 6
PATCH = 14


@dataclass(frozen=True)
class WorldScene:
    name: str
    names: list[str]
    overlap: np.ndarray
    descriptors: np.ndarray  # (n, P, DIM)
    keypoints: np.ndarray  # (n, P, 2)
    global_descriptors: np.ndarray  # (n, DIM)
    image_size: np.ndarray  # (n, 2)


def grid_keypoints() -> np.ndarray:
    """VOP's patch centres (14 i + 7.5) of an 8 x 4 patch grid, row by row."""
    rows, cols = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing="ij")
    return np.stack([PATCH * cols + 7.5, PATCH * rows + 7.5], -1).reshape(-1, 2)


def make_world(seed: int, scenes: list[str], images: int = 24) -> list[WorldScene]:
    """Scenes of the module doc's world, every number drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    backbone = np.linalg.qr(rng.normal(size=(DIM, LATENT + NUISANCE)))[0]
    signal, nuisance = backbone[:, :LATENT], backbone[:, LATENT:]
    world = []
    for scene in scenes:
        cells = rng.normal(size=(HEIGHT, STRIP, LATENT))
        offsets = rng.integers(0, STRIP - WIDTH + 1, size=images)
        shift = np.abs(offsets[:, None] - offsets[None, :])
        overlap = np.maximum(0, WIDTH - shift) / WIDTH
        seen = np.stack([cells[:, x : x + WIDTH].reshape(-1, LATENT) for x in offsets])
        light = rng.normal(scale=3.0, size=(images, 1, NUISANCE))
        descriptors = seen @ signal.T + light @ nuisance.T
        descriptors += rng.normal(scale=0.3, size=descriptors.shape)
        names = [f"Undistorted_SfM/{scene}/images/{k:03d}.jpg" for k in range(images)]
        world.append(
            WorldScene(
                scene,
                names,
                overlap,
                descriptors.astype(np.float32),
                np.broadcast_to(grid_keypoints(), (images, WIDTH * HEIGHT, 2)).astype(np.float32),
                descriptors.mean(axis=1).astype(np.float32),
                np.tile(np.array([[PATCH * WIDTH, PATCH * HEIGHT]], np.float32), (images, 1)),
            )
        )
    return world


def write_features(path: Path, world: list[WorldScene], prefix: str = "") -> Path:
    """VOP's feature dump of ``world``: a group per image keyed by ``prefix + name``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for scene in world:
            for k, name in enumerate(scene.names):
                group = handle.create_group(prefix + name)
                group.create_dataset("keypoints", data=scene.keypoints[k])
                group.create_dataset("descriptors", data=scene.descriptors[k])
                group.create_dataset("global_descriptor", data=scene.global_descriptors[k])
                group.create_dataset("image_size", data=scene.image_size[k])
    return path


def write_overlaps(folder: Path, world: list[WorldScene]) -> Path:
    """The overlap stage's ``<scene>.npz`` for every scene of ``world``."""
    folder.mkdir(parents=True, exist_ok=True)
    for scene in world:
        valid = np.full(len(scene.names), WIDTH * HEIGHT, dtype=np.int64)
        (folder / f"{scene.name}.npz").write_bytes(overlap_bytes(scene.names, scene.overlap, valid))
    return folder


# ---------------------------------------------------------------------------- the head


def test_keypoints_are_centred_and_scaled_by_half_the_longer_side() -> None:
    keypoints = torch.tensor([[[0.0, 0.0], [112.0, 56.0], [56.0, 28.0]]])
    normalized = normalize_keypoints(keypoints, torch.tensor([[112.0, 56.0]]))
    expected = torch.tensor([[[-1.0, -0.5], [1.0, 0.5], [0.0, 0.0]]])
    assert torch.allclose(normalized, expected)


def test_the_head_maps_tokens_to_embeddings_and_rebuilds_from_its_checkpoint() -> None:
    torch.manual_seed(0)
    head = OverlapHead(HeadConfig(input_dim=DIM, embedding_dim=16, dropout=0.5)).eval()
    descriptors = torch.randn(3, 32, DIM)
    keypoints = torch.from_numpy(np.broadcast_to(grid_keypoints(), (3, 32, 2)).copy())
    size = torch.tensor([[112.0, 56.0]]).repeat(3, 1)
    out = head(descriptors, keypoints, size)
    assert out.shape == (3, 32, 16)
    dropout = [m for m in head.keypoint_encoder if isinstance(m, torch.nn.Dropout)]
    assert [m.p for m in dropout] == [0.5]
    state = pickle.loads(pickle.dumps(head_checkpoint(head, scenes=["a"])))
    again = head_from_checkpoint(state)
    assert torch.equal(again(descriptors, keypoints, size), out)
    with pytest.raises(ValueError, match="48"):
        head(torch.randn(3, 32, 40), keypoints, size)
    with pytest.raises(ValueError, match="not an overlap-head checkpoint"):
        head_from_checkpoint({"model": {}})


def test_labels_take_the_overlap_share_of_best_matched_patches() -> None:
    # 4 patches each; patch p of the first image matches patch p of the second with
    # similarity 0.9, 0.7, 0.5, 0.3 and everything else lower
    similarity = torch.full((2, 4, 4), -0.1)
    for p, value in enumerate([0.9, 0.7, 0.5, 0.3]):
        similarity[:, p, p] = value
    labels = overlap_labels(similarity, torch.tensor([0.5, 0.0]))
    expected = torch.zeros(4, 4, dtype=torch.bool)
    expected[0, 0] = expected[1, 1] = True  # round(0.5 * 4) = 2 patches, the two best
    assert torch.equal(labels[0], expected)
    assert not labels[1].any()  # no overlap, no positive
    # a tiny overlap still names one patch
    assert int(overlap_labels(similarity[:1], torch.tensor([0.01])).sum()) == 1


def test_the_loss_is_vop_contrastive_form_on_those_labels() -> None:
    first = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    second = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    # similarities [[1, 0.6], [0, 0.8]]; overlap 0.5 -> one patch: patch 0 with its best (1.0)
    # positive (1 - 1)^2 = 0; negatives 0.6^2, 0^2, 0.8^2 averaged over 3
    loss = overlap_loss(first, second, torch.tensor([0.5]))
    assert loss.item() == pytest.approx((0.36 + 0.0 + 0.64) / (3 + 1e-4), rel=1e-6)
    # no overlap: every pair a negative, mean of squares over 4
    loss = overlap_loss(first, second, torch.tensor([0.0]))
    assert loss.item() == pytest.approx((1.0 + 0.36 + 0.0 + 0.64) / (4 + 1e-4), rel=1e-6)
    with pytest.raises(ValueError, match="fractions"):
        overlap_loss(first, second, torch.tensor([1.5]))


# ---------------------------------------------------------------------------- pair sampling


def test_pairs_fill_the_bins_and_negatives_have_no_overlap() -> None:
    world = make_world(3, ["demo01"], images=24)[0]
    bins = OverlapBins(0.1, 0.7, 3)
    pairs = sample_pairs(world.overlap, bins, 30, 20, np.random.default_rng(0))
    values = world.overlap[pairs[:, 0], pairs[:, 1]]
    assert (pairs[:, 0] != pairs[:, 1]).all()
    positives, negatives = values[:30], values[30:]
    assert len(negatives) == 20 and (negatives == 0).all()
    assert ((positives > 0.1) & (positives <= 0.7)).all()
    edges = bins.edges()  # bins are (low, high], as VOP's
    in_bin = [(positives > lo) & (positives <= hi) for lo, hi in itertools.pairwise(edges)]
    counts = [int(mask.sum()) for mask in in_bin]
    assert counts == [10, 10, 10]
    again = sample_pairs(world.overlap, bins, 30, 20, np.random.default_rng(0))
    assert np.array_equal(pairs, again)


def test_a_bin_with_too_few_pairs_is_skipped_and_its_share_goes_to_the_others() -> None:
    # 5 images: overlaps 0.2 (bin 1) between many pairs, a single pair at 0.6 (bin 3)
    overlap = np.full((5, 5), 0.2)
    np.fill_diagonal(overlap, 1.0)
    overlap[0, 1] = 0.6
    pairs = sample_pairs(overlap, OverlapBins(0.1, 0.7, 3), 6, 0, np.random.default_rng(1))
    # share 2 per bin; bin 3 holds 1 < 4 and bin 2 none: bin 1 alone gives 6 // 1 = 6
    assert len(pairs) == 6
    assert (overlap[pairs[:, 0], pairs[:, 1]] == 0.2).all()


def test_bins_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\(0\.1, 0\.7\]"):
        OverlapBins(0.7, 0.1, 3)


# ---------------------------------------------------------------------------- reading


def test_features_are_found_by_name_with_or_without_a_root_prefix(tmp_path: Path) -> None:
    world = make_world(0, ["demo01"], images=4)
    # the dump is keyed below Undistorted_SfM/, the overlap names include it
    write_features(tmp_path / "feats" / "a.h5", [world[0]], prefix="data/megadepth/")
    store = FeatureStore(tmp_path / "feats")
    key = store.key_of(world[0].names[2])
    assert key == "data/megadepth/" + world[0].names[2]
    read = pickle.loads(pickle.dumps(store)).read(key)  # a worker's copy opens its own file
    assert np.array_equal(read.descriptors, world[0].descriptors[2])
    assert read.image_size.tolist() == [112.0, 56.0]
    with pytest.raises(FeatureError, match="has no features"):
        store.key_of("Undistorted_SfM/demo09/images/000.jpg")
    # a key that is a suffix of the name (dump keyed relative to Undistorted_SfM/)
    short = tmp_path / "short.h5"
    with h5py.File(short, "w") as handle:
        group = handle.create_group("demo01/images/000.jpg")
        for name in ("keypoints", "descriptors", "global_descriptor"):
            data = {"keypoints": world[0].keypoints[0], "descriptors": world[0].descriptors[0]}
            group.create_dataset(name, data=data.get(name, world[0].global_descriptors[0]))
    store = FeatureStore(short)
    assert store.key_of(world[0].names[0]) == "demo01/images/000.jpg"
    with pytest.raises(FeatureError, match="lacks image_size"):
        store.read("demo01/images/000.jpg")


def test_scenes_pair_their_images_each_epoch_afresh(tmp_path: Path) -> None:
    world = make_world(1, ["demo01", "demo02"], images=12)
    store = FeatureStore(write_features(tmp_path / "f.h5", world))
    overlaps = write_overlaps(tmp_path / "overlap", world)
    scenes = [read_scene(overlaps / f"{s.name}.npz", store) for s in world]
    bins = OverlapBins()
    first = epoch_pairs(scenes, bins, 9, 9, seed=0, epoch=0)
    assert first == epoch_pairs(scenes, bins, 9, 9, seed=0, epoch=0)
    assert first != epoch_pairs(scenes, bins, 9, 9, seed=0, epoch=1)
    item = PairDataset(store, first)[0]
    assert item["descriptors0"].shape == (32, DIM) and item["overlap"].dtype == torch.float32
    held = read_scene(overlaps / "demo01.npz", store, exclude=lambda name: name.endswith("0.jpg"))
    assert len(held.keys) == 12 - 2  # 000.jpg and 010.jpg left out
