"""WebDataset shards with an index: layout, random access, resuming, and webdataset reading them."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.no_hang import no_hang
from vcat.shards import (
    INDEX_NAME,
    PROGRESS_NAME,
    ShardError,
    ShardReader,
    ShardWriter,
    list_keys,
    pack_tree,
    read_sample,
    unpack_shards,
)


def make_samples(count: int, seed: int = 7) -> dict[str, dict[str, bytes]]:
    """Samples ``<dir>/<index>`` with a .jpg-like payload of 1-6 KB and a small .json."""
    samples = {}
    for index in range(count):
        rng = np.random.default_rng([seed, index])
        payload = rng.integers(0, 256, int(rng.integers(1_000, 6_000)), dtype=np.uint8)
        key = f"{index // 10:02d}/{index:05d}"
        samples[key] = {
            "jpg": payload.tobytes(),
            "json": json.dumps({"index": index}).encode(),
        }
    return samples


def write(out: Path, samples: dict[str, dict[str, bytes]], **limits: int) -> None:
    with ShardWriter(out, **limits) as writer:
        for key, sample in samples.items():
            writer.add(key, sample)


def folder_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


LIMITS = {"max_count": 16, "max_bytes": 64 * 1024}


def test_shards_hold_every_sample_within_the_limits(tmp_path: Path) -> None:
    samples = make_samples(100)
    write(tmp_path / "out", samples, **LIMITS)
    names = sorted(path.name for path in (tmp_path / "out").iterdir())
    assert names[0] == INDEX_NAME and all(n.startswith("shard-") for n in names[1:])
    with ShardReader(tmp_path / "out") as reader:
        assert reader.keys() == list(samples)
        assert len(reader) == 100 and "00/00003" in reader and "nope" not in reader
        for key, sample in samples.items():
            assert reader.read(key) == sample
        assert reader.read_member("09/00093", "jpg") == samples["09/00093"]["jpg"]
        for shard in reader.index.shards:
            size = (tmp_path / "out" / shard.name).stat().st_size
            assert size == shard.bytes <= LIMITS["max_bytes"]
            assert shard.samples <= LIMITS["max_count"]
        counts = [shard.samples for shard in reader.index.shards]
        assert sum(counts) == 100 and len(counts) > 100 // LIMITS["max_count"]
    document = json.loads((tmp_path / "out" / INDEX_NAME).read_text())
    assert document["format"] == "vcat.shards/1"
    assert document["counts"]["samples"] == 100 and document["counts"]["members"] == 200
    shard, offset, size, members = document["samples"]["00/00000"]
    assert (shard, offset) == (0, 0) and set(members) == {"jpg", "json"}
    with pytest.raises(KeyError, match="no sample 'nope'"):
        read_sample(tmp_path / "out", "nope")


def test_tar_members_are_normalised_and_bytes_reproducible(tmp_path: Path) -> None:
    samples = make_samples(40)
    write(tmp_path / "a", samples, **LIMITS)
    write(tmp_path / "b", samples, **LIMITS)
    assert folder_bytes(tmp_path / "a") == folder_bytes(tmp_path / "b")
    with tarfile.open(tmp_path / "a" / "shard-000000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:4]] == [
        "00/00000.jpg",
        "00/00000.json",
        "00/00001.jpg",
        "00/00001.json",
    ]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o644)
    }


def test_webdataset_reads_the_shards_as_ordinary_samples(tmp_path: Path) -> None:
    import webdataset as wds

    samples = make_samples(50)
    samples["long/" + "é" * 120] = {"txt": b"a name longer than a ustar header holds"}
    write(tmp_path / "out", samples, **LIMITS)
    reader = ShardReader(tmp_path / "out")
    assert reader.read("long/" + "é" * 120) == samples["long/" + "é" * 120]
    urls = [str(path) for path in reader.shard_paths]
    loaded = list(wds.WebDataset(urls, shardshuffle=False))
    assert [sample["__key__"] for sample in loaded] == list(samples)
    for sample in loaded:
        files = {name: data for name, data in sample.items() if not name.startswith("__")}
        assert files == samples[sample["__key__"]]


def test_a_sample_larger_than_max_bytes_gets_a_shard_of_its_own(tmp_path: Path) -> None:
    big = b"x" * 100_000
    write(tmp_path / "out", {"a": {"bin": b"1"}, "b": {"bin": big}, "c": {"bin": b"3"}},
          max_bytes=20_480)  # fmt: skip
    index = ShardReader(tmp_path / "out").index
    assert [shard.samples for shard in index.shards] == [1, 1, 1]
    assert read_sample(tmp_path / "out", "b") == {"bin": big}


class Interrupt(Exception):
    pass


def produce(
    samples: dict[str, dict[str, bytes]], calls: list[str], fail_at: str | None = None
) -> Callable[[str], Callable[[], dict[str, bytes]]]:
    """A factory of callables that record the keys they produce and fail at ``fail_at``."""

    def make(key: str) -> Callable[[], dict[str, bytes]]:
        def sample() -> dict[str, bytes]:
            if key == fail_at:
                raise Interrupt(key)
            calls.append(key)
            return samples[key]

        return sample

    return make


def test_a_rerun_after_a_crash_writes_only_unfinished_shards(tmp_path: Path) -> None:
    samples = make_samples(100)
    keys = list(samples)
    write(tmp_path / "reference", samples, **LIMITS)
    reference = ShardReader(tmp_path / "reference").index
    out = tmp_path / "out"

    crash_key = keys[reference.shards[0].samples + reference.shards[1].samples + 5]  # in shard 2
    calls: list[str] = []
    make = produce(samples, calls, fail_at=crash_key)
    with pytest.raises(Interrupt), ShardWriter(out, **LIMITS) as writer:
        for key in keys:
            writer.add(key, make(key))
    left = sorted(path.name for path in out.iterdir())
    assert left == [PROGRESS_NAME, "shard-000000.tar", "shard-000001.tar"]  # nothing partial
    sealed = {name: (out / name).stat() for name in left if name.endswith(".tar")}
    with (out / PROGRESS_NAME).open("a") as journal:
        journal.write('{"shard": {"name": "shard-0000')  # a record cut short is ignored

    calls.clear()
    make = produce(samples, calls)
    with ShardWriter(out, **LIMITS) as writer:
        assert writer.resumed_samples == reference.shards[0].samples + reference.shards[1].samples
        for key in keys:
            writer.add(key, make(key))
    assert calls == keys[writer.resumed_samples :]  # finished samples were not produced again
    for name, before in sealed.items():
        after = (out / name).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert folder_bytes(out) == folder_bytes(tmp_path / "reference")


def test_a_rerun_of_a_complete_folder_changes_nothing(tmp_path: Path) -> None:
    samples = make_samples(30)
    write(tmp_path / "out", samples, **LIMITS)
    before = folder_bytes(tmp_path / "out")
    calls: list[str] = []
    make = produce(samples, calls)
    with ShardWriter(tmp_path / "out", **LIMITS) as writer:
        for key in samples:
            writer.add(key, make(key))
    assert calls == [] and folder_bytes(tmp_path / "out") == before
    with (
        pytest.raises(ShardError, match="more are given"),
        ShardWriter(tmp_path / "out", **LIMITS) as writer,
    ):
        for key in samples:
            writer.add(key, samples[key])
        writer.add("99/99999", {"jpg": b"new"})


def test_changed_samples_or_limits_are_refused_on_resume(tmp_path: Path) -> None:
    samples = make_samples(40)
    write(tmp_path / "out", samples, **LIMITS)
    with pytest.raises(ShardError, match="max_count=16"):
        ShardWriter(tmp_path / "out", max_count=8, max_bytes=LIMITS["max_bytes"])
    first = next(iter(samples))
    with pytest.raises(ShardError, match="sample 0 is 'zz' here but was"):
        ShardWriter(tmp_path / "out", **LIMITS).add("zz", samples[first])
    with pytest.raises(ShardError, match="other files or sizes"):
        ShardWriter(tmp_path / "out", **LIMITS).add(first, {"jpg": b"short"})
    with pytest.raises(ShardError, match="this one gives 1"):
        writer = ShardWriter(tmp_path / "out", **LIMITS)
        writer.add(first, samples[first])
        writer.close()
    write(tmp_path / "out", {"other": {"txt": b"x"}}, overwrite=True, **LIMITS)
    assert list_keys(tmp_path / "out") == ["other"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [INDEX_NAME, "shard-000000.tar"]


@pytest.mark.parametrize(
    ("key", "ext", "message"),
    [
        ("a.b", "jpg", "last part has a '.'"),
        ("../a", "jpg", "relative path"),
        ("/a", "jpg", "relative path"),
        ("a//b", "jpg", "relative path"),
        ("a", "", "does not split"),
        ("a", "x/y", "does not split"),
        ("a\nb", "jpg", "control characters"),
        ("a\\b", "jpg", "control characters"),
    ],
)
def test_names_webdataset_cannot_split_are_refused(
    tmp_path: Path, key: str, ext: str, message: str
) -> None:
    with pytest.raises(ShardError, match=message), ShardWriter(tmp_path / "out") as writer:
        writer.add(key, {ext: b"data"})
    assert not (tmp_path / "out" / INDEX_NAME).exists()


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match="given twice"), ShardWriter(tmp_path / "out") as writer:
        writer.add("a", {"txt": b"1"})
        writer.add("a", {"txt": b"2"})


def test_pack_a_tree_and_unpack_it_again(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    files = {
        "b/41/1e240_1.jpg": b"first crop",
        "b/41/1e240_2.jpg": b"second crop",
        "b/41/1e240_1.json": b"{}",
        "listing.txt": b"# pair_path\nb/41/1e240\n",
        "dotted.dir/x.seg.png": b"png",
    }
    for name, data in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    index = pack_tree(tree, tmp_path / "shards", max_count=2)
    assert list(index.samples) == [
        "b/41/1e240_1",
        "b/41/1e240_2",
        "dotted.dir/x",
        "listing",
    ]
    assert read_sample(tmp_path / "shards", "b/41/1e240_1") == {"jpg": b"first crop", "json": b"{}"}
    assert read_sample(tmp_path / "shards", "dotted.dir/x") == {"seg.png": b"png"}

    dest = tmp_path / "unpacked"
    assert unpack_shards(tmp_path / "shards", dest) == len(files)
    unpacked = {
        p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()
    }
    assert unpacked == files
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    with pytest.raises(ShardError, match="exists"):
        unpack_shards(tmp_path / "shards", dest)
    (dest / "listing.txt").write_bytes(b"edited")
    unpack_shards(tmp_path / "shards", dest, overwrite=True)
    assert (dest / "listing.txt").read_bytes() == files["listing.txt"]


def test_a_file_without_extension_is_named(tmp_path: Path) -> None:
    (tmp_path / "tree").mkdir()
    (tmp_path / "tree" / "README").write_text("x")
    with pytest.raises(ShardError, match=r"tree/README: .*<key>\.<ext>"):
        pack_tree(tmp_path / "tree", tmp_path / "shards")


def test_an_incomplete_or_damaged_folder_is_refused_by_the_reader(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ShardError, match=r"no index\.json"):
        ShardReader(tmp_path / "empty")
    write(tmp_path / "out", make_samples(10))
    shard = tmp_path / "out" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:-10240])
    with pytest.raises(ShardError, match=r"shard-000000\.tar is \d+ bytes, the index says"):
        read_sample(tmp_path / "out", "00/00001")


def test_cli_lists_and_unpacks_a_shard_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vcat.cli import app

    tree = tmp_path / "tree"
    for name in ("a/x.jpg", "a/y.jpg", "b/z.png"):
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(name.encode() * 10)
    pack_tree(tree, tmp_path / "shards", max_count=2, max_bytes=1 << 20)
    runner = CliRunner()
    listed = runner.invoke(app, ["shards", "list", str(tmp_path / "shards")])
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.split() == ["a/x", "a/y", "b/z"]
    unpacked = runner.invoke(
        app, ["shards", "unpack", str(tmp_path / "shards"), str(tmp_path / "u")]
    )
    assert unpacked.exit_code == 0, unpacked.output
    assert (tmp_path / "u" / "b" / "z.png").read_bytes() == b"b/z.png" * 10
    again = runner.invoke(app, ["shards", "unpack", str(tmp_path / "shards"), str(tmp_path / "u")])
    assert again.exit_code == 2 and "exists" in again.stderr


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda path: os.mkfifo(path), r"x\.jpg: a FIFO \(named pipe\); only regular files"),
        (lambda path: path.symlink_to("/dev/zero"), r"x\.jpg: a symbolic link; only regular"),
        (lambda path: path.symlink_to(path.parent / "a.jpg"), r"x\.jpg: a symbolic link"),
        (lambda path: path.symlink_to(path.parent.parent), r"x\.jpg: a symbolic link"),
        (lambda path: os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 5)), r"character dev"),
    ],
    ids=["fifo", "link-to-dev-zero", "link-to-file", "link-to-folder", "device"],
)
def test_pack_tree_refuses_what_is_not_a_regular_file_unopened(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    tree = tmp_path / "tree"
    (tree / "d").mkdir(parents=True)
    (tree / "d" / "a.jpg").write_bytes(b"a")
    try:
        make(tree / "d" / "x.jpg")
    except PermissionError:  # mknod without CAP_MKNOD: the FIFO and link cases cover the rest
        os.mkfifo(tree / "d" / "x.jpg")
        message = r"x\.jpg: a FIFO"
    with no_hang(), pytest.raises(ShardError, match=message):
        pack_tree(tree, tmp_path / "shards")
    assert not (tmp_path / "shards" / "index.json").exists()
