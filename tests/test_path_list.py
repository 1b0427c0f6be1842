"""The path-list stage: the guides' list formats to the S120 memmap list folder, its reader,
sharded runs and merges, and the errors for lines that cannot be used."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader
from typer.testing import CliRunner, Result

from stages import flickr_memmap, path_list
from stages.path_list import convert, made_from, main
from vcat.catalog.schema import ListFormat
from vcat.cli import app
from vcat.lists.folder import ListBuilder
from vcat.lists.labels import block_labels, combine
from vcat.lists.memmap import PathList, PathListError
from vcat.lists.parsing import FORMATS, parse_lines
from vcat.lists.reading import ListFormatError, count_items, cut_lines, read_blocks, within
from vcat.parts import PartsError, ShardSpec, part_folder, parts_root
from vcat.regular import NotRegularFile
from vcat.stage import StageError, load_stage

WIDTH = 120


def folder_bytes(folder: Path) -> dict[str, str]:
    """Every file of a folder with the MD5 of its bytes."""
    return {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def imagenet_paths(count: int) -> list[str]:
    """Full-ImageNet style paths over a few synsets, one with a non-ASCII name."""
    synsets = ["n01440764", "n02102040", "n00007846", "zürich", "n015"]
    rng = np.random.default_rng(5)
    return [
        f"{synsets[k]}/{synsets[k]}_{i}.JPEG"
        for i, k in enumerate(rng.integers(len(synsets), size=count))
    ]


def kinetics_lines(count: int) -> list[str]:
    rng = np.random.default_rng(9)
    return [f"vid_{i:05d}_{i * 7:06d} {n}" for i, n in enumerate(rng.integers(0, 400, count))]


def write_text(path: Path, lines: list[str], ending: str = "\n") -> Path:
    path.write_bytes("".join(line + ending for line in lines).encode("utf-8"))
    return path


def test_formats_are_the_catalog_list_formats() -> None:
    assert set(FORMATS) <= {kind.value for kind in ListFormat}


# --- the format: bit-compatible with the source project ------------------------------------


def test_a_flickr_list_gives_the_bytes_of_the_flickr_memmap_stage(tmp_path: Path) -> None:
    paths = [f"images/{i % 10}/{i % 7}/{i % 3}/{i:04d}/{9000 + i}_ab{i}.jpg" for i in range(40)]
    paths += ["images/" + "x" * 113, "images/0/café_ü.jpg"]
    text = "".join(f"{i}\thttps://x/{i}.jpg\t{p}\n" for i, p in enumerate(paths))
    listed = tmp_path / "flickr-x.tsv.gz"
    listed.write_bytes(gzip.compress(text.encode("utf-8")))

    output = main(None, listed, tmp_path / "out", list_format="flickr-tsv-gz")

    data = (output / "paths.memmap").read_bytes()
    assert data == b"".join(p.encode("utf-8").ljust(WIDTH, b"\0") for p in paths)
    memmap = flickr_memmap.main(None, listed, tmp_path / "flickr.memmap")
    assert memmap.read_bytes() == data
    # the source project's reader: np.memmap of S120 with the count, decode, strip
    mapped = np.memmap(output / "paths.memmap", dtype="S120", shape=(len(paths),), mode="r")
    assert [mapped[i].decode("utf-8").strip() for i in range(len(paths))] == paths
    assert list(PathList(output)) == paths == list(PathList(output / "paths.memmap"))
    meta = json.loads((output / "list.json").read_text())
    assert (meta["count"], meta["width"], meta["dtype"]) == (len(paths), 120, "S120")
    assert sorted(p.name for p in output.iterdir()) == ["list.json", "paths.memmap"]


def test_a_kinetics_list_keeps_its_frame_counts(tmp_path: Path) -> None:
    lines = [*kinetics_lines(30), "air drumming/clip 7", "last 0"]
    listed = write_text(tmp_path / "kinetics_filelist.txt", lines, ending="\r\n")
    output = main(None, listed, tmp_path / "kinetics", list_format="kinetics-frames")

    # the source project reads the text list as d.split(' ')[0] and int(d.split(' ')[1])
    expected = [(d.rsplit(" ", 1)[0], int(d.rsplit(" ", 1)[1])) for d in lines]
    assert [(d.split(" ")[0], int(d.split(" ")[1])) for d in lines[:30]] == expected[:30]
    frames = np.load(output / "n_frames.npy")
    assert frames.dtype == np.dtype("<i8")
    assert frames.tolist() == [n for _, n in expected]
    mapped = np.memmap(output / "paths.memmap", dtype="S120", mode="r")
    assert [p.decode("utf-8") for p in mapped] == [d for d, _ in expected]
    reader = PathList(output)
    assert list(reader) == expected
    assert reader.path_at(-1) == "last"
    assert reader.labels is None and reader.classes is None
    assert json.loads((output / "list.json").read_text())["frames"] == sum(frames.tolist())


def test_labels_are_the_sorted_parent_folders_as_the_source_project_has_them(
    tmp_path: Path,
) -> None:
    paths = imagenet_paths(60)
    listed = write_text(tmp_path / "filelist", paths)
    output = main(None, listed, tmp_path / "imagenet", labels=True)

    # ClassSequentialDataset: sorted(set(fn.split('/')[-2])) and the index into it
    names = [fn.split("/")[-2] for fn in paths]
    classes = sorted(set(names))
    assert (output / "classes.txt").read_text(encoding="utf-8") == "".join(
        f"{c}\n" for c in classes
    )
    labels = np.load(output / "labels.npy")
    assert labels.dtype == np.dtype("<i8")
    assert labels.tolist() == [classes.index(n) for n in names]
    reader = PathList(output)
    assert reader.classes == classes
    assert reader[3] == (paths[3], classes.index(names[3]))


def test_a_published_memmap_is_copied_and_can_be_labelled(tmp_path: Path) -> None:
    paths = imagenet_paths(25)
    published = tmp_path / "fullimagenet_0123.memmap"
    # as convert_to_mmaps.py writes one: assignment into a numpy.memmap of S120
    array = np.memmap(published, dtype="S120", mode="w+", shape=(len(paths),))
    for i, path in enumerate(paths):
        array[i] = path.encode("utf-8")
    array.flush()
    del array

    output = main(None, published, tmp_path / "out", list_format="memmap-s120", labels=True)
    assert (output / "paths.memmap").read_bytes() == published.read_bytes()
    from_text = main(None, write_text(tmp_path / "list", paths), tmp_path / "text", labels=True)
    assert (output / "labels.npy").read_bytes() == (from_text / "labels.npy").read_bytes()
    assert PathList(output)[0] == PathList(from_text)[0]


def test_blocks_cut_anywhere_give_the_same_folder(tmp_path: Path) -> None:
    paths = imagenet_paths(200)
    listed = write_text(tmp_path / "list", paths)
    source = made_from(listed, "path-list", WIDTH, 2, True)
    whole = convert(listed, tmp_path / "whole", "path-list", WIDTH, 2, True, source)
    pieces = convert(
        listed, tmp_path / "pieces", "path-list", WIDTH, 2, True, source, block_bytes=97
    )
    assert whole == pieces
    assert folder_bytes(tmp_path / "whole") == folder_bytes(tmp_path / "pieces")
    blocks = list(read_blocks(listed, block_bytes=97))
    assert len(blocks) > 10 and sum(b.count for b in blocks) == 200 == count_items(listed)
    middle = list(within(iter(blocks), range(33, 141), cut_lines))
    assert b"".join(b.data for b in middle).decode().splitlines() == paths[33:141]
    assert middle[0].first == 33


def test_labels_combine_across_pieces_as_over_the_whole() -> None:
    paths = imagenet_paths(50)
    block = "".join(f"{p}\n" for p in paths).encode()
    rows = parse_lines(block, "path-list", WIDTH, Path("x"))
    whole = block_labels(rows.rows, rows.lengths, str)
    cut = [block_labels(rows.rows[a:b], rows.lengths[a:b], str) for a, b in [(0, 7), (7, 50)]]
    merged = combine(cut)
    assert merged[0] == whole[0]
    assert merged[1].tolist() == whole[1].tolist()


# --- the reader in DataLoader workers -------------------------------------------------------


def test_dataloader_workers_map_the_list_themselves(tmp_path: Path) -> None:
    lines = kinetics_lines(50)
    output = main(
        None, write_text(tmp_path / "k.txt", lines), tmp_path / "k", list_format="kinetics-frames"
    )
    reader = PathList(output)
    loader = DataLoader(reader, batch_size=8, num_workers=2)
    paths, frames = [], []
    for batch_paths, batch_frames in loader:
        paths += list(batch_paths)
        frames += batch_frames.tolist()
    assert [f"{p} {n}" for p, n in zip(paths, frames, strict=True)] == lines
    # the parent never mapped anything: each worker mapped the files itself
    assert reader._paths is None and reader._n_frames is None
    state = pickle.dumps(reader)
    assert len(state) < 1000
    copy = pickle.loads(state)
    assert copy._paths is None and copy[7] == reader[7]


def test_the_reader_refuses_what_is_not_a_finished_list(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "paths.memmap").write_bytes(b"a" * 120)
    with pytest.raises(PathListError, match=r"half: a folder without a finished list\.json"):
        PathList(tmp_path / "half")
    output = main(None, write_text(tmp_path / "l", ["a/b.jpg"]), tmp_path / "ok")
    with pytest.raises(PathListError, match="a list of 120-byte paths, not 64-byte ones"):
        PathList(output, width=64)
    with pytest.raises(IndexError, match="index 1 out of range for 1 paths"):
        PathList(output)[1]


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("list_format", "bad_line", "message"),
    [
        ("path-list", "p" * 121, "the path is 121 bytes, longer than the 120-byte slots"),
        ("path-list", "", "an empty line where a path is needed"),
        ("path-list", "a/b\x1bc.jpg", "the path holds the control character 0x1b"),
        ("path-list", "a/b.jpg ", "the path begins or ends with white space"),
        ("path-list", " a/b.jpg", "the path begins or ends with white space"),
        ("path-list", "a/b\0.jpg", "holds a NUL byte"),
        ("kinetics-frames", "clip", "one field where `<frame_dir> <n_frames>` needs two"),
        ("kinetics-frames", "", "an empty line where `<frame_dir> <n_frames>` is needed"),
        ("kinetics-frames", "clip abc", "the frame count 'abc' after the last space is not"),
        ("kinetics-frames", "clip -3", "the frame count '-3' after the last space is not"),
        ("kinetics-frames", "clip ", "the frame count '' after the last space is not"),
        ("kinetics-frames", "clip  12", "the path begins or ends with white space"),
        ("kinetics-frames", "c" * 121 + " 5", "the path is 121 bytes"),
        ("flickr-tsv-gz", "1\turl-only", "2 tab-separated fields where the path column needs 3"),
        ("flickr-tsv-gz", "1\turl\t", "the path (field 3) is empty"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(
    tmp_path: Path, list_format: str, bad_line: str, message: str
) -> None:
    good = {
        "path-list": "n01/a.jpg",
        "kinetics-frames": "clip_a 10",
        "flickr-tsv-gz": "1\turl\tn01/a.jpg",
    }[list_format]
    listed = write_text(tmp_path / "list.txt", [good, good, bad_line, good])
    with pytest.raises(ListFormatError) as caught:
        main(None, listed, tmp_path / "out", list_format=list_format)
    assert str(caught.value).startswith(f"{listed}:3: ")
    assert message in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["list.txt"]  # nothing left behind


def test_other_bad_lists_name_file_and_line(tmp_path: Path) -> None:
    listed = tmp_path / "list.txt"
    listed.write_bytes(b"n01/a.jpg\nn01/b\xff.jpg\n")
    with pytest.raises(ListFormatError, match=r"list\.txt:2: holds bytes that are not UTF-8"):
        main(None, listed, tmp_path / "out")
    write_text(listed, ["n01/a.jpg", "b.jpg"])
    with pytest.raises(ListFormatError, match=r"list\.txt:2: the path has no parent folder"):
        main(None, listed, tmp_path / "out", labels=True)
    whole = gzip.compress("".join(f"{p}\n" for p in imagenet_paths(2000)).encode())
    listed.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ListFormatError, match=r"not a complete gzip file .* fetch it again"):
        main(None, listed, tmp_path / "out")


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([b"a/1.jpg", b"", b"a/3.jpg"], "entry 2: the entry is empty"),
        ([b"a/1.jpg", b"a/2.jpg", b"a\0b.jpg"], "entry 3: the path holds a NUL byte before"),
        ([b"a/1.jpg", b"a/\xff.jpg"], "entry 2: holds bytes that are not UTF-8"),
        ([b"a/1.jpg", b"a/2.jpg "], "entry 2: the path begins or ends with white space"),
    ],
)
def test_a_bad_memmap_entry_is_named(tmp_path: Path, entries: list[bytes], message: str) -> None:
    published = tmp_path / "list.memmap"
    published.write_bytes(b"".join(e.ljust(WIDTH, b"\0") for e in entries))
    with pytest.raises(ListFormatError, match=f"list.memmap: {message}"):
        main(None, published, tmp_path / "out", list_format="memmap-s120")


def test_a_memmap_of_another_width_is_refused(tmp_path: Path) -> None:
    published = tmp_path / "list.memmap"
    published.write_bytes(b"a" * 250)
    with pytest.raises(ListFormatError, match=r"250 bytes is not a whole number of 120-byte"):
        main(None, published, tmp_path / "out", list_format="memmap-s120")
    with pytest.raises(ListFormatError, match=r"250 bytes is not a whole number of 120-byte"):
        main(None, published, tmp_path / "out", list_format="memmap-s120", shard=ShardSpec(1, 2))


def test_a_fifo_is_refused_without_waiting(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "list")
    with pytest.raises(NotRegularFile, match=r"list: a FIFO \(named pipe\), not a regular file"):
        main(None, tmp_path / "list", tmp_path / "out")


def test_settings_are_checked(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "list", ["a/b.jpg"])
    with pytest.raises(StageError, match="conf of stage path-list: colunm is not a setting"):
        main({"colunm": 1}, listed, tmp_path / "out")
    with pytest.raises(StageError, match="'csv' is not a list format"):
        main(None, listed, tmp_path / "out", list_format="csv")
    with pytest.raises(StageError, match="width must be >= 1"):
        main({"width": 0}, listed, tmp_path / "out")


# --- sizes, idempotence, interruption -------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1])
def test_empty_and_one_line_lists(tmp_path: Path, count: int) -> None:
    listed = write_text(tmp_path / "k.txt", kinetics_lines(count))
    output = main(
        None, listed, tmp_path / "out", list_format="kinetics-frames", metrics=tmp_path / "m.json"
    )
    reader = PathList(output)
    assert len(reader) == count
    assert (output / "paths.memmap").stat().st_size == 120 * count
    assert np.load(output / "n_frames.npy").shape == (count,)
    assert list(reader) == [(d, int(n)) for d, n in (x.split(" ") for x in kinetics_lines(count))]
    counts = json.loads((tmp_path / "m.json").read_text())
    assert counts["paths"] == count and counts["bytes"] == 120 * count


def test_a_rerun_changes_nothing_and_a_changed_list_is_converted_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = write_text(tmp_path / "list", imagenet_paths(20))
    output = main(None, listed, tmp_path / "out", labels=True)
    before = folder_bytes(output)
    stamp = (output / "list.json").stat().st_mtime_ns
    capsys.readouterr()
    main(None, listed, output, labels=True)
    assert "up to date" in capsys.readouterr().err
    assert (output / "list.json").stat().st_mtime_ns == stamp
    main(None, listed, output, labels=True, overwrite=True)
    assert folder_bytes(output) == before
    main(None, listed, output, labels=False)  # other settings: converted again
    assert not (output / "labels.npy").exists()
    write_text(listed, imagenet_paths(21))
    main(None, listed, output, labels=True)
    assert len(PathList(output)) == 21


def test_a_run_stopped_midway_leaves_nothing_and_the_next_run_finishes(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "list", imagenet_paths(30))
    clean = main(None, listed, tmp_path / "clean", labels=True)
    output = tmp_path / "out"
    # what a kill leaves: a half-built folder beside the output, and an old output in place
    (tmp_path / ".out.partial").mkdir()
    (tmp_path / ".out.partial" / "paths.memmap").write_bytes(b"x" * 7)
    output.mkdir()
    (output / "paths.memmap").write_bytes(b"y" * 120)

    def stop(*args: object) -> None:
        raise KeyboardInterrupt

    builder_finish = ListBuilder.finish
    ListBuilder.finish = stop  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            main(None, listed, output, labels=True)
    finally:
        ListBuilder.finish = builder_finish  # type: ignore[method-assign]
    assert not (tmp_path / ".out.partial").exists()
    assert (output / "paths.memmap").read_bytes() == b"y" * 120  # untouched until complete
    main(None, listed, output, labels=True)
    assert folder_bytes(output) == folder_bytes(clean)


@pytest.mark.slow  # about 10 s: a list long enough to be killed in the middle
def test_a_killed_run_is_finished_by_the_next_one(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "filelist", imagenet_paths(600_000))
    output = tmp_path / "out"
    vcat = str(Path(sys.executable).with_name("vcat"))
    args = [vcat, "stage", "path-list", str(listed), str(output), "--labels", "parent-folder"]
    partial = tmp_path / ".out.partial" / "paths.memmap"
    with subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.DEVNULL) as running:
        deadline = time.monotonic() + 60
        while not (partial.is_file() and partial.stat().st_size) and running.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        running.send_signal(signal.SIGKILL)
    assert running.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not output.exists()
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert not partial.parent.exists()
    clean = main(None, listed, tmp_path / "clean", labels=True)
    assert folder_bytes(output) == folder_bytes(clean)


# --- sharded runs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("list_format", "labels", "lines"),
    [
        ("path-list", True, imagenet_paths(13)),
        ("kinetics-frames", False, kinetics_lines(13)),
        ("flickr-tsv-gz", False, [f"{i}\tu\tim/{i}.jpg" for i in range(13)]),
        ("path-list", True, imagenet_paths(1)),
    ],
)
def test_shards_merged_equal_the_single_run(
    tmp_path: Path, list_format: str, labels: bool, lines: list[str]
) -> None:
    listed = write_text(tmp_path / "list", lines)
    single = main(None, listed, tmp_path / "single", list_format=list_format, labels=labels)
    for count in (1, 2, 3, 20):  # 20: more shards than lines
        output = tmp_path / f"merged-{count}"
        for index in reversed(range(count)):
            spec = ShardSpec(index, count)
            part = main(None, listed, output, False, None, list_format, labels, spec)
            # shard 0/1 is the whole run, written straight into the output
            assert part == (output if count == 1 else part_folder(output, spec))
        main(None, listed, output, list_format=list_format, labels=labels, merge=count)
        assert folder_bytes(output) == folder_bytes(single), count
        assert not parts_root(output).exists()


def test_a_merge_names_the_parts_still_to_run(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "list", imagenet_paths(10))
    output = tmp_path / "out"
    main(None, listed, output, labels=True, shard=ShardSpec(1, 3))
    with pytest.raises(PartsError, match=r"part\(s\) 0, 2 of 3 are not finished"):
        main(None, listed, output, labels=True, merge=3)
    main(None, listed, output, labels=False, shard=ShardSpec(0, 3))  # other settings
    main(None, listed, output, labels=True, shard=ShardSpec(2, 3))
    with pytest.raises(PartsError, match=r"part\(s\) 0 of 3 are not finished"):
        main(None, listed, output, labels=True, merge=3)
    assert not output.exists()


def test_a_bad_line_fails_only_the_shard_that_holds_it(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "list", [*imagenet_paths(8), "n0/" + "x" * 130])
    output = tmp_path / "out"
    main(None, listed, output, shard=ShardSpec(0, 2))
    with pytest.raises(ListFormatError, match=r"list:9: the path is 133 bytes"):
        main(None, listed, output, shard=ShardSpec(1, 2))


# --- the command ----------------------------------------------------------------------------


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, ["stage", "path-list", *args])


def test_the_command_runs_shards_merges_and_reports_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # outside any project: no params.yaml but the one given
    assert load_stage("path-list").main is main
    assert load_stage("path-list").pipeline_keys == ("lists",) == path_list.pipeline_keys
    listed = write_text(tmp_path / "k.txt", kinetics_lines(9))
    params = tmp_path / "params.yaml"
    params.write_text("path-list:\n  lists: {demo: {}}\n  width: 64\n")
    common = ["--format", "kinetics-frames", "--params", str(params)]
    single = invoke(str(listed), str(tmp_path / "single"), *common, "--metrics", "m.json")
    assert single.exit_code == 0, single.output
    assert json.loads((tmp_path / "m.json").read_text()) == {
        "paths": 9,
        "bytes": 9 * 64,
        "width": 64,
        "format": "kinetics-frames",
        "frames": sum(int(x.split(" ")[1]) for x in kinetics_lines(9)),
    }
    for index in range(2):
        result = invoke(str(listed), str(tmp_path / "merged"), *common, "--shard", f"{index}/2")
        assert result.exit_code == 0, result.output
    result = invoke(str(listed), str(tmp_path / "merged"), *common, "--merge", "2")
    assert result.exit_code == 0, result.output
    assert folder_bytes(tmp_path / "merged") == folder_bytes(tmp_path / "single")

    result = invoke(str(listed), str(tmp_path / "x"), *common, "--merge", "3")
    assert result.exit_code == 2
    assert "part(s) 0, 1, 2 of 3 are not finished" in result.stderr
    result = invoke(str(listed), str(tmp_path / "x"), *common, "--shard", "0/2", "--merge", "2")
    assert result.exit_code == 2
    result = invoke(str(listed), str(tmp_path / "x"), *common, "--shard", "2/2")
    assert result.exit_code == 2 and "shard 2/2 does not exist" in result.output

    bad = write_text(tmp_path / "bad.txt", ["clip 1", "clip two"])
    result = invoke(str(bad), str(tmp_path / "bad"), "--format", "kinetics-frames")
    assert result.exit_code == 2
    assert f"error: {bad}:2: the frame count 'two'" in result.stderr
    assert "Traceback" not in result.output
    params.write_text("path-list:\n  widht: 64\n")
    result = invoke(str(listed), str(tmp_path / "y"), *common)
    assert result.exit_code == 2
    assert f"{params}:2: path-list.widht is not a setting" in result.stderr


def test_the_command_labels_by_parent_folder(tmp_path: Path) -> None:
    listed = write_text(tmp_path / "filelist", imagenet_paths(12))
    result = invoke(str(listed), str(tmp_path / "cli"), "--labels", "parent-folder")
    assert result.exit_code == 0, result.output
    expected = main(None, listed, tmp_path / "api", labels=True)
    assert folder_bytes(tmp_path / "cli") == folder_bytes(expected)
    result = invoke(str(listed), str(tmp_path / "none"), "--labels", "none")
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "none" / "labels.npy").exists()


def test_the_image_dataset_reads_a_list_folder(tmp_path: Path) -> None:
    from PIL import Image

    from vcat.lists.dataset import ImagePathDataset

    names = ["n01/a.jpg", "n02/b.jpg"]
    for index, name in enumerate(names):
        (tmp_path / "root" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8 + index, 6), (index * 90, 20, 30)).save(tmp_path / "root" / name)
    output = main(None, write_text(tmp_path / "list", names), tmp_path / "out", labels=True)
    dataset = ImagePathDataset(output, tmp_path / "root")
    assert [dataset[i].size for i in range(2)] == [(8, 6), (9, 6)]


def test_the_executor_passes_the_format_and_labels_options_to_its_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    listed = write_text(tmp_path / "filelist", imagenet_paths(12))
    params = tmp_path / "params.yaml"
    params.write_text("path-list:\n  width: 64\n")
    common = ["--format", "path-list", "--labels", "parent-folder", "--params", str(params)]
    single = invoke(str(listed), str(tmp_path / "single"), *common)
    assert single.exit_code == 0, single.output
    params.write_text("path-list:\n  width: 64\nexecutor:\n  kind: local\n  shards: 3\n")
    split = invoke(str(listed), str(tmp_path / "split"), *common)
    assert split.exit_code == 0, split.output
    assert "split: shard 2/3 done" in split.stderr
    assert folder_bytes(tmp_path / "split") == folder_bytes(tmp_path / "single")
