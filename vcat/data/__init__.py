"""One way to load prepared data, for the stages and for users' own training code.

``vcat.data.load(entry, artifact, split)`` is to vcat what ``tfds.load`` is to TFDS: a
catalog entry's prepared artifact (shards, memmap path lists, ``.npz`` or HDF5 files) as a
map-style torch Dataset, filtered by a split of the catalog, sharded across ranks, safe with
any number of DataLoader workers (each opens its files on first use; the item index is a
numpy array, and pickling carries only the folder and options)::

    from torch.utils.data import DataLoader
    import vcat.data

    pairs = vcat.data.load("demo-megadepth", "croco-crops", "train", decode="tensor")
    for batch in DataLoader(pairs, batch_size=32, num_workers=8, shuffle=True):
        first, second = batch["1.jpg"], batch["2.jpg"]
"""

from vcat.data.arrays import Hdf5Dataset, NpzFolderDataset
from vcat.data.base import ArtifactDataset, rank_positions
from vcat.data.errors import DataError
from vcat.data.lists import PathListDataset
from vcat.data.load import artifact_location, load, open_artifact
from vcat.data.shards import ShardDataset
from vcat.data.splits import SplitFilter

__all__ = [
    "ArtifactDataset",
    "DataError",
    "Hdf5Dataset",
    "NpzFolderDataset",
    "PathListDataset",
    "ShardDataset",
    "SplitFilter",
    "artifact_location",
    "load",
    "open_artifact",
    "rank_positions",
]
