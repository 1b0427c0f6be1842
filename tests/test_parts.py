"""Sharded runs: shard blocks cover the items exactly once, and merged parts equal one run."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from vcat.parts import (
    WHOLE,
    PartsError,
    ShardSpec,
    concatenate,
    finished_parts,
    merge_samples,
    part_folder,
    parts_root,
    remove_parts,
    shard_spec,
)
from vcat.shards import ShardWriter

LIMITS = {"max_count": 3, "max_bytes": 10_000}


def samples(total: int) -> list[tuple[str, dict[str, bytes]]]:
    return [
        (f"{index:04x}", {"1.jpg": bytes([index % 256]) * (100 + index)}) for index in range(total)
    ]


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def single_run(items: list[tuple[str, dict[str, bytes]]], output: Path) -> None:
    with ShardWriter(output, **LIMITS) as writer:
        for key, sample in items:
            writer.add(key, sample)


def sharded_run(items: list[tuple[str, dict[str, bytes]]], output: Path, count: int) -> None:
    for index in range(count):
        spec = ShardSpec(index, count)
        with ShardWriter(part_folder(output, spec), **LIMITS) as writer:
            for position in spec.block(len(items)):
                key, sample = items[position]
                writer.add(key, sample)
    merge_samples(finished_parts(output, count), output, **LIMITS)


@pytest.mark.parametrize("total", [0, 1, 2, 7, 100])
@pytest.mark.parametrize("count", [1, 2, 3, 8])
def test_blocks_cover_every_item_once_in_order(total: int, count: int) -> None:
    covered = [i for index in range(count) for i in ShardSpec(index, count).block(total)]
    assert covered == list(range(total))


@pytest.mark.parametrize("count", [1, 2, 3, 12])
def test_merged_parts_are_byte_identical_to_a_single_run(tmp_path: Path, count: int) -> None:
    items = samples(10)
    single_run(items, tmp_path / "single")
    sharded_run(items, tmp_path / "merged", count)
    assert folder_bytes(tmp_path / "merged") == folder_bytes(tmp_path / "single")
    assert parts_root(tmp_path / "merged").is_dir()
    remove_parts(tmp_path / "merged")
    assert not parts_root(tmp_path / "merged").exists()


def test_a_merge_of_no_items_gives_an_empty_complete_folder(tmp_path: Path) -> None:
    single_run([], tmp_path / "single")
    sharded_run([], tmp_path / "merged", 3)
    assert folder_bytes(tmp_path / "merged") == folder_bytes(tmp_path / "single")


def test_a_missing_part_is_named_with_the_command_to_run(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with ShardWriter(part_folder(output, ShardSpec(0, 3)), **LIMITS):
        pass
    with pytest.raises(PartsError, match=r"part\(s\) 1, 2 of 3 are not finished.*--shard I/3"):
        finished_parts(output, 3)


def test_parts_of_another_split_are_pointed_out(tmp_path: Path) -> None:
    output = tmp_path / "out"
    with ShardWriter(part_folder(output, ShardSpec(0, 2)), **LIMITS):
        pass
    with pytest.raises(PartsError, match="parts of other splits are there: 00000-of-00002"):
        finished_parts(output, 4)


def test_concatenate_joins_part_files_in_order_and_skips_absent_ones(tmp_path: Path) -> None:
    parts = [tmp_path / f"p{index}" for index in range(3)]
    for part in parts:
        part.mkdir()
    (parts[0] / "failures.tsv").write_text("a\n")
    (parts[2] / "failures.tsv").write_text("c\n")
    concatenate(parts, "failures.tsv", tmp_path / "out" / "failures.tsv")
    assert (tmp_path / "out" / "failures.tsv").read_text() == "a\nc\n"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["failures.tsv"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("0/1", WHOLE), ("2/4", ShardSpec(2, 4)), (" 3 / 5 ", ShardSpec(3, 5)), (None, WHOLE)],
)
def test_shard_option_values(text: str | None, expected: ShardSpec) -> None:
    assert shard_spec(text) == expected


@pytest.mark.parametrize("text", ["4/4", "1/0", "-1/3", "a/b", "1", "1/2/3", "0/100001"])
def test_bad_shard_option_values_say_how_to_write_one(text: str) -> None:
    with pytest.raises(typer.BadParameter, match="I/N"):
        shard_spec(text)


def test_part_folders_sort_in_shard_order(tmp_path: Path) -> None:
    names = [part_folder(tmp_path / "o", ShardSpec(index, 12)).name for index in range(12)]
    assert names == sorted(names)
    assert str(ShardSpec(3, 12)) == "3/12"
