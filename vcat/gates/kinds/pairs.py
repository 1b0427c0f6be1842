"""Pair shards: CroCo's crop pairs, two images per sample (``<stem>.1.jpg``, ``<stem>.2.jpg``).

The ``images`` table and its checks are those of ``vcat.gates.kinds.images``; the ``pairs``
table has one row per sample: whether both halves are there, and the smallest and largest
side over both halves, which must both be CroCo's ``imsize`` (224 by default).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vcat.croco.tree import LISTING_NAME
from vcat.gates.checks import Check, Expect, Params, mostly_of, values_true
from vcat.gates.kinds import images
from vcat.gates.profile import Profile, Table
from vcat.shards import INDEX_NAME

KIND = "pairs"
DESCRIPTION = "shards of image pairs (CroCo crops: a shard folder with listing.txt)"
HALVES = ("1.jpg", "2.jpg")


def _square(params: Params) -> list[Expect]:
    size = params.get("imsize")
    if size is None:
        return []
    bounds = {"min_value": size, "max_value": size, **mostly_of(params)}
    return [
        Expect("ExpectColumnValuesToBeBetween", {"column": column, **bounds})
        for column in ("min_side", "max_side")
    ]


CHECKS: list[Check] = [
    *images.CHECKS,
    values_true("complete", "pairs", "complete", "both halves of every pair are there"),
    Check(
        "imsize",
        "pairs",
        "both halves of every pair are {imsize}x{imsize}",
        {"imsize": 224, "max_bad_fraction": 0.0},
        _square,
        "min_side",
    ),
]


def detect(artifact: Path) -> bool:
    return (artifact / INDEX_NAME).is_file() and (artifact / LISTING_NAME).is_file()


def pair_rows(artifact: Path, image_table: Any) -> Any:
    """One row per sample of the shard index: both halves present, sides over both."""
    import pandas as pd

    index = images.load_index(artifact)
    halves = pd.DataFrame.from_records(
        [
            (key, f"{key}.{half}")
            for key, location in index.samples.items()
            for half in HALVES
            if half in location.members
        ],
        columns=["key", "item"],
    )
    sides = halves.merge(image_table[["item", "width", "height"]], on="item", how="left")
    sides["short"] = sides[["width", "height"]].min(axis=1, skipna=False)
    sides["long"] = sides[["width", "height"]].max(axis=1, skipna=False)
    grouped = sides.groupby("key", sort=False).agg(
        halves=("item", "size"), min_side=("short", "min"), max_side=("long", "max")
    )
    keys = pd.Index(list(index.samples), name="key")
    pairs = grouped.reindex(keys)
    return pd.DataFrame(
        {
            "item": keys,
            "complete": (pairs["halves"].fillna(0) == len(HALVES)).to_numpy(),
            "min_side": pairs["min_side"].to_numpy(dtype=float),
            "max_side": pairs["max_side"].to_numpy(dtype=float),
        }
    )


def profile(
    artifact: Path, workers: int | None = None, params: Mapping[str, Any] | None = None
) -> Profile:
    found = images.tables(artifact, workers)
    found["pairs"] = Table(pair_rows(artifact, found["images"].frame), "item")
    facts = {"failures": images.failure_counts(found["images"].frame)}
    return Profile(KIND, artifact, found, facts)
