"""The flickr-memmap stage, the stage contract around it, and the readers of its output."""

from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader
from typer.testing import CliRunner, Result

from stages import flickr_memmap
from stages.flickr_memmap import ListFormatError, convert, main
from vcat.cli import app
from vcat.demo.flickr import image_path
from vcat.lists.dataset import ImagePathDataset
from vcat.lists.memmap import PathList, PathListError
from vcat.stage import StageError, load_stage, stage_conf, stage_names


def flickr_line(index: int) -> str:
    """Line ``index`` of a Flickr-CC style list: id, image URL, bucketed relative path."""
    flickr_id = 3_000_000_000 + 7919 * index
    bucket = f"{flickr_id % 10_000:04d}"
    name = f"{flickr_id}_{index:010x}.jpg"
    relative = f"images/{bucket[0]}/{bucket[1]}/{bucket[2]}/{bucket}/{name}"
    return f"{flickr_id}\thttps://live.staticflickr.com/65535/{name}\t{relative}"


def numbered(paths: list[str]) -> list[str]:
    return [f"{i}\turl\t{p}" for i, p in enumerate(paths)]


def write_list(path: Path, lines: list[str], ending: str = "\n") -> Path:
    with gzip.open(path, "wb") as stream:
        stream.write("".join(line + ending for line in lines).encode("utf-8"))
    return path


def expected_bytes(paths: list[str], width: int = 120) -> bytes:
    return b"".join(p.encode("utf-8").ljust(width, b"\0") for p in paths)


def test_round_trip_gives_nul_padded_slots_of_120_bytes(tmp_path: Path) -> None:
    lines = [flickr_line(i) for i in range(50)]
    paths = [line.split("\t")[2] for line in lines]
    # the longest path that fits, a non-ASCII one, a CRLF line and a last line without newline
    paths += ["images/" + "x" * 113, "images/0/0/0/0000/café_ü.jpg", "images/crlf.jpg", "last.jpg"]
    text = "".join(f"{i}\turl\t{p}\n" for i, p in enumerate(paths[:-2]))
    text += f"98\turl\t{paths[-2]}\r\n99\turl\t{paths[-1]}"
    list_path = tmp_path / "flickr-0.1k.tsv.gz"
    list_path.write_bytes(gzip.compress(text.encode("utf-8")))

    output = main(None, list_path, tmp_path / "out" / "flickr-0.1k.memmap")

    data = output.read_bytes()
    assert len(data) == 120 * len(paths)
    assert data == expected_bytes(paths)
    mapped = np.memmap(output, dtype="S120", mode="r")
    assert [item.decode("utf-8") for item in mapped] == paths
    assert list(PathList(output)) == paths
    assert not list(output.parent.glob(".*partial"))


def test_blocks_split_anywhere_give_the_same_bytes(tmp_path: Path) -> None:
    list_path = write_list(tmp_path / "list.tsv.gz", [flickr_line(i) for i in range(300)])
    whole, pieces = tmp_path / "whole.memmap", tmp_path / "pieces.memmap"
    with whole.open("wb") as sink:
        assert convert(list_path, sink, column=2, width=120) == 300
    with pieces.open("wb") as sink:
        assert convert(list_path, sink, column=2, width=120, block_bytes=97) == 300
    assert whole.read_bytes() == pieces.read_bytes()


def test_plain_text_lists_and_other_columns_and_widths(tmp_path: Path) -> None:
    list_path = tmp_path / "paths.tsv"
    list_path.write_text("a.jpg\tx\nbb.jpg\ty\n")
    output = main({"column": 0, "width": 8}, list_path, tmp_path / "paths.memmap")
    assert output.read_bytes() == b"a.jpg\0\0\0bb.jpg\0\0"
    assert list(PathList(output, width=8)) == ["a.jpg", "bb.jpg"]


@pytest.mark.parametrize(
    ("bad_line", "message"),
    [
        ("123\turl\t" + "p" * 121, "the path is 121 bytes, longer than the 120-byte slots"),
        ("123\turl-only", "2 tab-separated fields where the path column needs 3"),
        ("", "an empty line"),
        ("123\turl\t", "the path (field 3) is empty"),
        ("123\turl\tnul\0.jpg", "holds a NUL byte"),
    ],
)
def test_a_bad_line_is_an_error_naming_file_and_line(
    tmp_path: Path, bad_line: str, message: str
) -> None:
    lines = [flickr_line(i) for i in range(40)]
    lines.insert(26, bad_line)
    list_path = write_list(tmp_path / "flickr.tsv.gz", lines)
    output = tmp_path / "flickr.memmap"
    # small blocks, so the bad line is found in a later block than the first
    with (tmp_path / "sink").open("wb") as sink, pytest.raises(ListFormatError) as caught:
        convert(list_path, sink, column=2, width=120, block_bytes=500)
    assert str(caught.value).startswith(f"{list_path}:27: ")
    assert message in str(caught.value)
    with pytest.raises(ListFormatError, match=":27: "):
        main(None, list_path, output)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bytes_that_are_not_utf8_are_an_error(tmp_path: Path) -> None:
    list_path = tmp_path / "list.tsv.gz"
    list_path.write_bytes(gzip.compress(b"1\tu\tok.jpg\n2\tu\tbad\xff.jpg\n"))
    with pytest.raises(ListFormatError, match=r"list\.tsv\.gz:2: holds bytes that are not UTF-8"):
        main(None, list_path, tmp_path / "out.memmap")


def test_truncated_gzip_and_empty_lists_are_errors(tmp_path: Path) -> None:
    full = gzip.compress("".join(flickr_line(i) + "\n" for i in range(2000)).encode())
    truncated = tmp_path / "truncated.tsv.gz"
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(ListFormatError, match=r"not a complete gzip file.*fetch it again"):
        main(None, truncated, tmp_path / "t.memmap")
    empty = tmp_path / "empty.tsv.gz"
    empty.write_bytes(gzip.compress(b""))
    with pytest.raises(ListFormatError, match=r"empty\.tsv\.gz: the list holds no lines"):
        main(None, empty, tmp_path / "e.memmap")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tsv.gz", "truncated.tsv.gz"]


def test_an_up_to_date_output_is_kept_unless_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    list_path = write_list(tmp_path / "list.tsv.gz", [flickr_line(i) for i in range(10)])
    output = main(None, list_path, tmp_path / "list.memmap")
    os.utime(output, (2_000_000_000, 2_000_000_000))  # newer than the list, and recognisable
    capsys.readouterr()

    main(None, list_path, output)
    assert output.stat().st_mtime == 2_000_000_000
    assert "up to date" in capsys.readouterr().err

    main(None, list_path, output, overwrite=True)
    assert output.stat().st_mtime != 2_000_000_000

    os.utime(output, (1_000_000_000, 1_000_000_000))  # older than the list: converted again
    main(None, list_path, output)
    assert output.stat().st_mtime != 1_000_000_000
    assert output.read_bytes() == expected_bytes([flickr_line(i).split("\t")[2] for i in range(10)])


def test_params_section_is_merged_in_struct_mode(tmp_path: Path) -> None:
    params = tmp_path / "params.yaml"
    params.write_text(
        "other-stage:\n  anything: 1\nflickr-memmap:\n  entry: demo-flickr\n"
        "  subsets: [0.1k]\n  width: 64\n"
    )
    conf = stage_conf("flickr-memmap", flickr_memmap.default_conf, params, ("entry", "subsets"))
    assert dict(conf) == {"width": 64, "column": 2}

    params.write_text("flickr-memmap:\n  width: 64\n  colunm: 1\n")
    with pytest.raises(StageError) as caught:
        stage_conf("flickr-memmap", flickr_memmap.default_conf, params)
    assert str(caught.value).startswith(f"{params}:3: flickr-memmap.colunm is not a setting")
    assert "known: width, column" in str(caught.value)

    params.write_text("flickr-memmap:\n  width: wide\n")
    with pytest.raises(StageError, match=r"params.yaml:2: flickr-memmap.width is 'wide' but must"):
        stage_conf("flickr-memmap", flickr_memmap.default_conf, params)

    with pytest.raises(StageError, match="conf of stage flickr-memmap: widht is not a setting"):
        main({"widht": 3}, tmp_path / "unused.tsv.gz", tmp_path / "unused.memmap")


def test_the_stage_is_registered_as_an_entry_point() -> None:
    assert "flickr-memmap" in stage_names()
    stage = load_stage("flickr-memmap")
    assert stage.main is main
    assert stage.pipeline_keys == ("entry", "subsets")
    with pytest.raises(StageError, match="no stage called 'nope'"):
        load_stage("nope")


def make_images(root: Path, count: int) -> list[str]:
    paths = []
    for index in range(count):
        rng = np.random.default_rng([11, index])
        pixels = rng.integers(0, 256, size=(24 + index, 32, 3), dtype=np.uint8)
        relative = image_path(4_000_000_000 + index, f"{index:010x}")
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(pixels)
        if index % 3 == 0:
            image = image.convert("L")  # grey JPEGs come back as RGB too
        image.save(root / relative, quality=95)
        paths.append(relative)
    return paths


def to_tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.resize((16, 16), Image.Resampling.BILINEAR))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def test_dataloader_workers_read_images_through_the_memmap(tmp_path: Path) -> None:
    root = tmp_path / "flickr"
    paths = make_images(root, 12)
    list_path = write_list(tmp_path / "list.tsv.gz", numbered(paths))
    memmap = main(None, list_path, tmp_path / "list.memmap")

    dataset = ImagePathDataset(memmap, root, transform=to_tensor)
    assert len(dataset) == 12
    loader = DataLoader(dataset, batch_size=5, num_workers=2)
    batches = list(loader)
    assert [tuple(b.shape) for b in batches] == [(5, 3, 16, 16), (5, 3, 16, 16), (2, 3, 16, 16)]
    expected = [to_tensor(Image.open(root / p).convert("RGB")) for p in paths]
    assert torch.equal(torch.cat(batches), torch.stack(expected))
    plain = ImagePathDataset(memmap, root)[0]
    assert plain.mode == "RGB"
    assert plain.size == (32, 24)


def first_error(loader: DataLoader) -> BaseException:
    """The error a pass over ``loader`` raises, its workers already stopped.

    Dropping the traceback frees the iterator at once; left to the garbage collector, torch
    takes 5 s per worker to stop them.
    """
    iterator = iter(loader)
    try:
        for _ in iterator:
            pass
    except Exception as exc:
        exc.__traceback__ = None
        return exc
    finally:
        del iterator
    raise AssertionError("the pass raised nothing")


def test_a_missing_image_names_file_index_and_list(tmp_path: Path) -> None:
    root = tmp_path / "flickr"
    paths = make_images(root, 6)
    (root / paths[4]).unlink()
    list_path = write_list(tmp_path / "list.tsv.gz", numbered(paths))
    memmap = main(None, list_path, tmp_path / "list.memmap")
    loader = DataLoader(ImagePathDataset(memmap, root, transform=to_tensor), num_workers=2)
    error = first_error(loader)
    assert isinstance(error, FileNotFoundError)
    assert f"{root / paths[4]}: missing (item 4 of {memmap})" in str(error)


def test_path_list_pickles_without_its_mapping(tmp_path: Path) -> None:
    list_path = write_list(tmp_path / "list.tsv.gz", [flickr_line(i) for i in range(5000)])
    memmap = main(None, list_path, tmp_path / "list.memmap")
    paths = PathList(memmap)
    assert paths[-1] == paths[4999] == flickr_line(4999).split("\t")[2]
    assert paths[1:3] == [flickr_line(i).split("\t")[2] for i in (1, 2)]
    with pytest.raises(IndexError, match="index 5000 out of range for 5000 paths"):
        paths[5000]
    state = pickle.dumps(paths)
    assert len(state) < 1000  # 600,000 bytes of paths stay in the file
    copy = pickle.loads(state)
    assert copy._paths is None
    assert len(copy) == 5000
    assert copy[123] == paths[123]


def test_a_file_of_the_wrong_size_is_not_a_path_list(tmp_path: Path) -> None:
    bad = tmp_path / "bad.memmap"
    bad.write_bytes(b"x" * 250)
    with pytest.raises(PathListError, match=r"bad\.memmap: 250 bytes is not a whole number"):
        PathList(bad)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_vcat_stage_runs_flickr_memmap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # outside any project: no params.yaml but the one given
    result = invoke("stage", "--help")
    assert result.exit_code == 0, result.output
    assert "flickr-memmap" in result.output

    list_path = write_list(tmp_path / "list.tsv.gz", [flickr_line(i) for i in range(20)])
    params = tmp_path / "params.yaml"
    params.write_text("flickr-memmap:\n  entry: demo-flickr\n  width: 100\n")
    output = tmp_path / "data" / "list.memmap"
    args = ("stage", "flickr-memmap", str(list_path), str(output), "--params", str(params))
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert output.stat().st_size == 20 * 100
    assert "20 paths of 100 bytes" in result.stderr

    result = invoke(*args, "--metrics", str(tmp_path / "metrics" / "list.json"))
    assert result.exit_code == 0, result.output
    assert "up to date" in result.stderr
    counted = json.loads((tmp_path / "metrics" / "list.json").read_text())
    assert counted == {"paths": 20, "bytes": 2000, "width": 100}

    params.write_text("flickr-memmap:\n  width: 100\n  colum: 2\n")
    result = invoke(*args, "--overwrite")
    assert result.exit_code == 2
    assert f"{params}:3: flickr-memmap.colum is not a setting" in result.stderr

    bad = write_list(tmp_path / "bad.tsv.gz", ["1\turl\tok.jpg", "2\tno-path"])
    result = invoke("stage", "flickr-memmap", str(bad), str(tmp_path / "bad.memmap"))
    assert result.exit_code == 2
    assert f"{bad}:2: 2 tab-separated fields" in result.stderr
    assert "Traceback" not in result.output


def test_paths_that_look_like_markup_are_printed_as_they_are(tmp_path: Path) -> None:
    folder = tmp_path / "runs [bold] [" / "["  # paths then hold '[/' like a closing tag
    folder.mkdir(parents=True)
    source = write_list(folder / "red].tsv.gz", [flickr_line(i) for i in range(3)])
    output = folder / "x].memmap"
    for _ in range(2):  # converted, then up to date
        result = CliRunner().invoke(app, ["stage", "flickr-memmap", str(source), str(output)])
        assert result.exit_code == 0, result.output
        printed = "".join(result.output.split())
        assert "[/x].memmap" in printed and "[/red].tsv.gz" in printed
        assert "runs[bold][" in printed
    assert output.stat().st_size == 3 * 120
