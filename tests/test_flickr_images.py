"""The flickr-images stage against a real HTTP server: shards, missing images, resuming."""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from stages.flickr_images import MISSING_NAME, ListFormatError, main, read_rows
from tests.http_server import MisbehavingServer, Route
from vcat.cli import app
from vcat.fetch.small import fetch_bytes
from vcat.shards import ShardReader
from vcat.stage import StageError

COUNT = 12


def jpeg(index: int) -> bytes:
    rng = np.random.default_rng([7, index])
    pixels = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def relative(index: int) -> str:
    return f"images/1/2/3/{1230 + index % 3}/{5000 + index}_abc{index}.jpg"


@pytest.fixture
def server() -> Iterator[MisbehavingServer]:
    with MisbehavingServer() as running:
        for index in range(COUNT):
            running.add(f"/{relative(index)}", Route(jpeg(index)))
        yield running


def write_list(path: Path, server: MisbehavingServer, count: int = COUNT) -> Path:
    lines = [f"{5000 + i}\t{server.url('/' + relative(i))}\t{relative(i)}\n" for i in range(count)]
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def conf(**settings: object) -> dict[str, object]:
    return {"shard_max_count": 5, "jobs": 3, "attempts": 2, **settings}


def digests(folder: Path) -> dict[str, str]:
    return {
        path.name: hashlib.md5(path.read_bytes()).hexdigest()
        for path in sorted(folder.iterdir())
        if path.is_file()
    }


def test_images_land_in_shards_that_webdataset_reads(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    output = main(conf(), listed, tmp_path / "out", metrics=tmp_path / "m.json")
    with ShardReader(output) as shards:
        assert shards.keys() == [relative(i).removesuffix(".jpg") for i in range(COUNT)]
        assert shards.read(relative(4).removesuffix(".jpg")) == {"jpg": jpeg(4)}
        assert len(shards.shard_paths) == 3
    shards = [str(p) for p in sorted(output.glob("shard-*.tar"))]
    samples = list(wds.WebDataset(shards, shardshuffle=False))
    assert [s["jpg"] for s in samples] == [jpeg(i) for i in range(COUNT)]
    assert (tmp_path / "m.json").read_text().count('"missing": 0') == 1
    assert (output / MISSING_NAME).read_text().splitlines() == [
        "line\tflickr_id\turl\tfailure\treason"
    ]


def test_missing_images_are_listed_and_limited(tmp_path: Path, server: MisbehavingServer) -> None:
    server.routes[f"/{relative(3)}"].behaviour = "forbidden"
    server.routes[f"/{relative(8)}"] = Route(b"<!DOCTYPE html><html>gone</html>")
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)

    with pytest.raises(StageError, match=r"2 images missing, more than the 1 .*missing\.tsv"):
        main(conf(max_missing_fraction=0.1), listed, tmp_path / "strict")

    output = main(conf(max_missing_fraction=0.2), listed, tmp_path / "lenient")
    rows = [line.split("\t") for line in (output / MISSING_NAME).read_text().splitlines()[1:]]
    assert [(r[0], r[1], r[3]) for r in rows] == [
        ("4", "5003", "forbidden"),
        ("9", "5008", "html_instead_of_file"),
    ]
    with ShardReader(output) as shards:
        assert len(shards) == COUNT - 2


def test_a_stopped_run_resumes_and_matches_an_uninterrupted_one(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    clean = main(conf(), listed, tmp_path / "clean")
    for route in server.routes.values():
        route.requests = 0

    server.routes[f"/{relative(11)}"].behaviour = "forbidden"
    with pytest.raises(StageError):
        main(conf(), listed, tmp_path / "resumed")
    server.routes[f"/{relative(11)}"].behaviour = "good"
    main(conf(), listed, tmp_path / "resumed")

    assert digests(tmp_path / "resumed") == digests(clean)
    # the two sealed shards (10 images) were not downloaded again
    assert [server.routes[f"/{relative(i)}"].requests for i in range(COUNT)] == [1] * 10 + [2, 2]


def test_a_changed_list_starts_over(tmp_path: Path, server: MisbehavingServer) -> None:
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server, count=6)
    main(conf(), listed, tmp_path / "out")
    write_list(listed, server, count=COUNT)
    main(conf(), listed, tmp_path / "out")
    with ShardReader(tmp_path / "out") as shards:
        assert len(shards) == COUNT


def test_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    listed = tmp_path / "bad.tsv"
    listed.write_text("1\thttp://x/a.jpg\timages/a.jpg\n2\thttp://x/b.jpg\n")
    with pytest.raises(ListFormatError, match=r"bad\.tsv:2: expected 3 tab-separated fields"):
        read_rows(listed)
    listed.write_text("1\thttp://x/a.jpg\timages/a.b.jpg\n")
    with pytest.raises(ListFormatError, match=r"bad\.tsv:1: "):
        read_rows(listed)


def test_vcat_stage_flickr_images(tmp_path: Path, server: MisbehavingServer) -> None:
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    params = tmp_path / "params.yaml"
    params.write_text("flickr-images:\n  entry: demo-flickr\n  shard_max_count: 4\n")
    args = ["stage", "flickr-images", str(listed), str(tmp_path / "out"), "--params", str(params)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "12 of 12 images in 3 shard(s), 0 missing" in result.stderr

    server.routes[f"/{relative(0)}"].behaviour = "forbidden"
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 1
    assert "1 images missing, more than the 0" in result.stderr
    assert "Traceback" not in result.output


def test_a_cut_transfer_is_asked_for_again(server: MisbehavingServer) -> None:
    route = Route(jpeg(0), behaviour="truncate", cut=100, times=1)
    url = server.add("/cut.jpg", route)
    assert fetch_bytes(url, sleep=lambda seconds: None) == jpeg(0)
    assert route.requests == 2
