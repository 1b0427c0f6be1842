"""vcat.data: prepared artifacts as torch Datasets, with DataLoader workers, ranks and splits."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, get_worker_info

import vcat.data
from vcat.data import (
    DataError,
    Hdf5Dataset,
    NpzFolderDataset,
    PathListDataset,
    ShardDataset,
    open_artifact,
)
from vcat.shards import ShardWriter

WIDTH = 120


def make_samples(count: int, seed: int = 0) -> dict[str, dict[str, bytes]]:
    """``count`` samples over scenes s0..s2 with random payloads of random sizes."""
    rng = np.random.default_rng(seed)
    return {
        f"s{i % 3}/{i:05d}": {
            "bin": rng.bytes(int(rng.integers(1, 3000))),
            "txt": f"item {i}".encode(),
        }
        for i in range(count)
    }


def write_shards(folder: Path, samples: dict[str, dict[str, bytes]], max_count: int = 7) -> Path:
    with ShardWriter(folder, max_count=max_count) as writer:
        for key, members in samples.items():
            writer.add(key, members)
    return folder


def write_memmap(path: Path, paths: list[str]) -> Path:
    np.asarray([p.encode() for p in paths], dtype=f"S{WIDTH}").tofile(path)
    return path


def fresh_worker(worker_id: int) -> None:
    """A worker must start with no file of the artifact open, even when its parent read."""
    info = get_worker_info()
    assert info is not None
    assert not info.dataset.opened_here(), f"worker {worker_id} inherited open files"


def with_pid(item: dict[str, Any]) -> dict[str, Any]:
    return {**item, "pid": os.getpid()}


def drain(dataset: Any, context: str) -> list[dict[str, Any]]:
    loader = DataLoader(
        dataset,
        batch_size=None,
        num_workers=2,
        worker_init_fn=fresh_worker,
        multiprocessing_context=context,
    )
    return list(loader)


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_shards_through_two_workers_give_every_sample_once(tmp_path: Path, context: str) -> None:
    samples = make_samples(40)
    dataset = ShardDataset(write_shards(tmp_path / "shards", samples), transform=with_pid)
    assert not dataset.opened_here()  # __init__ reads index.json only
    assert dataset[0]["__key__"] == "s0/00000" and dataset.opened_here()  # the parent reads too
    # a worker that used the parent's handles would read from these closed descriptors
    inherited = dict(dataset._descriptors or {})
    assert inherited
    for descriptor in inherited.values():
        os.close(descriptor)

    items = drain(dataset, context)
    dataset._descriptors = None  # closed above

    assert sorted(item["__key__"] for item in items) == sorted(samples)
    for item in items:
        assert item["bin"] == samples[item["__key__"]]["bin"]
        assert item["txt"] == samples[item["__key__"]]["txt"]
    assert len({item["pid"] for item in items}) == 2
    assert os.getpid() not in {item["pid"] for item in items}


def test_path_list_through_two_workers_gives_every_path_once(tmp_path: Path) -> None:
    paths = [f"images/{i % 5}/{i:04d}.jpg" for i in range(33)]
    dataset = PathListDataset(write_memmap(tmp_path / "list.memmap", paths), transform=with_pid)
    assert not dataset.opened_here()
    assert dataset[32]["path"] == paths[32]

    items = drain(dataset, "fork")

    assert sorted(item["path"] for item in items) == sorted(paths)
    assert all(item["__key__"] == item["path"] for item in items)
    assert len({item["pid"] for item in items}) == 2


def test_path_list_pickles_small_for_100k_paths(tmp_path: Path) -> None:
    paths = [f"images/{i % 997}/{i:08d}.jpg" for i in range(100_000)]
    dataset = PathListDataset(write_memmap(tmp_path / "big.memmap", paths), rank=1, world_size=3)
    assert isinstance(dataset.positions, np.ndarray) and dataset.positions.dtype == np.int64
    assert dataset[0]["path"] == paths[1]

    state = pickle.dumps(dataset)

    assert len(state) < 64 * 1024
    again = pickle.loads(state)
    assert len(again) == len(dataset) == 33_333
    assert again[-1]["path"] == paths[99_997]


def test_shard_dataset_pickle_does_not_grow_with_the_samples(tmp_path: Path) -> None:
    small = ShardDataset(write_shards(tmp_path / "small", make_samples(10)))
    large = ShardDataset(write_shards(tmp_path / "large", make_samples(3000), max_count=500))
    large[2999]  # opens a shard file in this process

    sizes = [len(pickle.dumps(dataset)) for dataset in (small, large)]

    assert abs(sizes[1] - sizes[0]) <= 8  # only the folder name differs
    assert isinstance(large.positions, np.ndarray)
    again = pickle.loads(pickle.dumps(large))
    assert not again.opened_here()
    assert again[2999]["txt"] == b"item 2999"


@pytest.mark.slow
def test_shard_dataset_pickles_small_for_100k_samples(tmp_path: Path) -> None:
    folder = tmp_path / "shards"
    with ShardWriter(folder, max_count=20_000) as writer:
        for i in range(100_000):
            writer.add(f"s{i % 3}/{i:06d}", {"txt": str(i).encode()})
    dataset = ShardDataset(folder)
    assert len(pickle.dumps(dataset)) < 64 * 1024
    assert pickle.loads(pickle.dumps(dataset))[99_999]["txt"] == b"99999"


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_ranks_split_the_items_disjointly_and_deterministically(
    tmp_path: Path, world_size: int
) -> None:
    samples = make_samples(20)
    folder = write_shards(tmp_path / "shards", samples)
    parts = [
        [item["__key__"] for item in ShardDataset(folder, rank=rank, world_size=world_size)]
        for rank in range(world_size)
    ]
    again = [
        [item["__key__"] for item in ShardDataset(folder, rank=rank, world_size=world_size)]
        for rank in range(world_size)
    ]

    assert parts == again
    every = [key for part in parts for key in part]
    assert len(every) == len(set(every)) == 20
    assert set(every) == set(samples)
    assert max(map(len, parts)) - min(map(len, parts)) <= 1
    # rank r takes items r, r + N, r + 2N, ... in shard order
    assert parts[world_size - 1][0] == list(samples)[world_size - 1]


def test_bad_rank_and_decode_are_errors(tmp_path: Path) -> None:
    folder = write_shards(tmp_path / "shards", make_samples(3))
    with pytest.raises(DataError, match="rank 2 of world_size 2"):
        ShardDataset(folder, rank=2, world_size=2)
    with pytest.raises(DataError, match="decode is 'jpeg'"):
        ShardDataset(folder, decode="jpeg")
    with pytest.raises(DataError, match=r"no index\.json"):
        ShardDataset(tmp_path)


def png_bytes(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_decoding_images_json_and_arrays_with_a_transform(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
    array_bytes = io.BytesIO()
    np.save(array_bytes, matrix)
    sample = {
        "1.png": png_bytes(pixels),
        "json": b'{"scene": "s0", "k": 3}',
        "npy": array_bytes.getvalue(),
    }
    folder = write_shards(tmp_path / "shards", {"s0/a": sample})

    raw = open_artifact(folder)[0]
    assert raw == {"__key__": "s0/a", **sample}
    as_numpy = open_artifact(folder, decode="numpy")[0]
    assert np.array_equal(as_numpy["1.png"], pixels)
    assert as_numpy["json"] == {"scene": "s0", "k": 3}
    assert np.array_equal(as_numpy["npy"], matrix)
    as_pil = open_artifact(folder, decode="pil")[0]["1.png"]
    assert as_pil.size == (7, 5) and np.array_equal(np.asarray(as_pil), pixels)

    def flip(item: dict[str, Any]) -> torch.Tensor:
        return item["1.png"].flip(-1)

    flipped = open_artifact(folder, decode="tensor", transform=flip)[0]
    assert flipped.dtype == torch.uint8 and flipped.shape == (3, 5, 7)
    assert torch.equal(flipped, torch.from_numpy(pixels).permute(2, 0, 1).flip(-1))


def test_npz_folder_and_hdf5_groups(tmp_path: Path) -> None:
    folder = tmp_path / "overlap"
    folder.mkdir()
    for number in (2, 0, 1):
        np.savez(folder / f"s{number}.npz", overlap=np.full((2, 2), number, np.float32))
    scenes = NpzFolderDataset(folder, decode="tensor")
    assert [item["__key__"] for item in scenes] == ["s0", "s1", "s2"]
    assert torch.equal(scenes[2]["overlap"], torch.full((2, 2), 2.0))

    path = tmp_path / "feats.h5"
    with h5py.File(path, "w") as handle:
        for name in ("b/img1.jpg", "a/img0.jpg"):
            group = handle.create_group(name.split("/")[0])
            group.create_dataset("descriptors", data=np.ones((4, 2)) * len(name))
            group.create_dataset("meta/size", data=np.array([224, 224]))
    groups = Hdf5Dataset(path)
    assert not groups.opened_here()
    first = groups[0]
    assert first["__key__"] == "a"
    assert first["descriptors"].shape == (4, 2)
    assert first["meta/size"].tolist() == [224, 224]
    assert pickle.loads(pickle.dumps(groups))[1]["__key__"] == "b"
    groups.close()


# -- load(): the project layout and the catalog's splits -----------------------------------

ENTRY = """\
title: Toy scenes
description: Three scenes for the loader's tests.
licence:
  name: CC0-1.0
  redistribution: allowed
access:
  kind: public
splits:
  - name: train
    scenes: [s0, s1]
  - name: test
    scenes: [s2]
    held_out: true
  - name: picked
    images: [Undistorted/s0/images/a.jpg, Undistorted/s1/images/a.jpg]
  - name: counted
    count: {unit: scenes, published: 3}
"""

PARAMS = """\
croco-crops:
  scene_path_component: 0
  lists:
    toy-scenes:
      metadata: toy-metadata
      images: toy-scenes/Undistorted
"""

# pair stem -> its two source images, as the crop list names them
PAIRS = {
    "0": ("s0/images/a.jpg", "s0/images/b.jpg"),
    "1": ("s0/images/b.jpg", "s1/images/a.jpg"),  # spans two training scenes
    "2": ("s1/images/a.jpg", "s2/images/a.jpg"),  # spans train and test: in neither
    "3": ("s2/images/a.jpg", "s2/images/b.jpg"),
    "4": ("s0/images/a.jpg", "s1/images/a.jpg"),
}


@pytest.fixture
def toy(project: Path) -> Path:
    """A project with entry toy-scenes, its croco-crops pairs and a shard folder of frames."""
    (project / "catalog" / "datasets" / "toy-scenes.yaml").write_text(ENTRY)
    (project / "params.yaml").write_text(PARAMS)
    crops = project / "data" / "prepared" / "croco-crops" / "toy-scenes"
    write_shards(
        crops,
        {stem: {"1.jpg": f"{stem}a".encode(), "2.jpg": f"{stem}b".encode()} for stem in PAIRS},
        max_count=2,
    )
    lines = ["stem\tsource_1\tsource_2"] + [f"{s}\t{a}\t{b}" for s, (a, b) in PAIRS.items()]
    (crops / "provenance.tsv").write_text("\n".join(lines) + "\n")
    write_shards(project / "data" / "prepared" / "frames" / "toy-scenes" / "1fps", make_samples(9))
    return project


def keys(dataset: Any) -> list[str]:
    return [item["__key__"] for item in dataset]


def test_load_finds_the_artifact_and_filters_pairs_by_the_catalog_split(toy: Path) -> None:
    assert keys(vcat.data.load("toy-scenes", "croco-crops")) == list(PAIRS)
    assert keys(vcat.data.load("toy-scenes", "croco-crops", "train")) == ["0", "1", "4"]
    assert keys(vcat.data.load("toy-scenes", "croco-crops", "test")) == ["3"]
    # images of the split are paths under the entry's root: Undistorted/ + the list's path
    assert keys(vcat.data.load("toy-scenes", "croco-crops", "picked")) == ["4"]
    ranked = [
        keys(vcat.data.load("toy-scenes", "croco-crops", "train", rank=r, world_size=2))
        for r in (0, 1)
    ]
    assert ranked == [["0", "4"], ["1"]]


def test_load_filters_shard_keys_by_scene(toy: Path) -> None:
    train = vcat.data.load("toy-scenes", "frames/1fps", "train", project=toy)
    assert keys(train) == [f"s{i % 3}/{i:05d}" for i in range(9) if i % 3 != 2]
    test = vcat.data.load("toy-scenes", "frames/1fps", "test", decode="bytes")
    assert keys(test) == ["s2/00002", "s2/00005", "s2/00008"]


def test_load_errors_name_what_is_wrong(toy: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"'toy-scenes' has no split 'val'; its splits: train, "
        r"test, picked, counted",
    ):
        vcat.data.load("toy-scenes", "croco-crops", "val")
    with pytest.raises(DataError, match="lists no scenes or images"):
        vcat.data.load("toy-scenes", "croco-crops", "counted")
    with pytest.raises(DataError, match="several 'frames' artifacts: load one of frames/1fps"):
        vcat.data.load("toy-scenes", "frames")
    with pytest.raises(DataError, match=r"no artifact 'features' .* it has croco-crops, frames"):
        vcat.data.load("toy-scenes", "features")
    (toy / "data" / "prepared" / "croco-crops" / "toy-scene").mkdir()
    with pytest.raises(DataError, match="no catalog entry named 'toy-scene'"):
        vcat.data.load("toy-scene", "croco-crops", "train", project=toy)


def test_a_split_without_items_in_the_artifact_is_an_error(toy: Path) -> None:
    crops = toy / "data" / "prepared" / "croco-crops" / "toy-scenes"
    lines = ["stem\tsource_1\tsource_2"] + [f"{s}\ts0/x.jpg\ts0/y.jpg" for s in PAIRS]
    (crops / "provenance.tsv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="split 'test' selects none of the 5 items"):
        vcat.data.load("toy-scenes", "croco-crops", "test")


def test_demo_crop_pairs_of_the_train_split(
    demo_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's crop pairs (this checkout's, or the copy ``demo_root`` builds)."""
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    pairs = vcat.data.load(
        "demo-megadepth", "croco-crops", "train", project=demo_root, decode="tensor"
    )
    validation = vcat.data.load("demo-megadepth", "croco-crops", "val", project=demo_root)
    every = vcat.data.load("demo-megadepth", "croco-crops", project=demo_root)
    # the crops come from the train (demo01, demo02) and validation (demo03) scenes
    assert len(pairs) > 0 and len(validation) > 0
    assert len(pairs) + len(validation) == len(every)
    first = pairs[0]
    assert first["1.jpg"].shape == first["2.jpg"].shape == (3, 256, 256)
    batch = next(iter(DataLoader(pairs, batch_size=4, num_workers=2)))
    assert batch["1.jpg"].shape == (4, 3, 256, 256)
    # the held-out scene was excluded when the crops were cut
    with pytest.raises(DataError, match="split 'test' selects none"):
        vcat.data.load("demo-megadepth", "croco-crops", "test", project=demo_root)
