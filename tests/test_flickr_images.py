"""The flickr-images stage against a real HTTP server: shards, missing images, resuming."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image
from typer.testing import CliRunner

from stages.flickr_images import MISSING_NAME, ListFormatError, main, read_rows
from tests.bad_images import broken_images, png_bomb
from tests.http_server import MisbehavingServer, Route
from vcat.cli import app
from vcat.fetch.small import fetch_bytes
from vcat.parts import ShardSpec
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
    """Settings for the tests; images are stored as served unless a test resizes them."""
    return {
        "short_side": 0,
        "shard_max_count": 5,
        "jobs": 3,
        "attempts": 2,
        "allowed_hosts": ["127.0.0.1"],  # the test server; lists may name public hosts only
        **settings,
    }


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
    params.write_text(
        "flickr-images:\n  entry: demo-flickr\n  shard_max_count: 4\n  allowed_hosts: [127.0.0.1]\n"
    )
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


VCAT = str(Path(sys.executable).with_name("vcat"))


def write_rows(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A list of (url, relative path) rows, numbered from 9000."""
    text = "".join(f"{9000 + i}\t{url}\t{rel}\n" for i, (url, rel) in enumerate(rows))
    path.write_bytes(gzip.compress(text.encode()))
    return path


def test_images_that_do_not_decode_are_missing_with_their_class(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    rows = [(server.url("/" + relative(i)), relative(i)) for i in range(4)]
    for name, (data, _) in broken_images().items():
        rows.append((server.add(f"/bad/{name}", Route(data)), f"images/bad/{name}"))
    listed = write_rows(tmp_path / "flickr-x.tsv.gz", rows)

    with pytest.raises(StageError, match=r"1 images missing, more than the 0 .*missing\.tsv"):
        main(conf(), listed, tmp_path / "strict")
    output = main(conf(max_missing_fraction=1.0), listed, tmp_path / "out", metrics=tmp_path / "m")

    recorded = [line.split("\t") for line in (output / MISSING_NAME).read_text().splitlines()[1:]]
    expected = [failure for _, failure in broken_images().values()]
    assert [(row[0], row[3]) for row in recorded] == [
        (str(5 + i), failure) for i, failure in enumerate(expected)
    ]
    assert all(row[4] for row in recorded)  # each with its reason
    with ShardReader(output) as shards:
        assert shards.keys() == [relative(i).removesuffix(".jpg") for i in range(4)]
    counts = json.loads((tmp_path / "m").read_text())
    assert counts == {
        "listed": 4 + len(expected),
        "stored": 4,
        "missing": len(expected),
        "shards": 1,
    }


def test_the_stage_command_stops_on_a_bomb_with_one_line(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    url = server.add("/bomb.png", Route(png_bomb()))
    listed = write_rows(tmp_path / "flickr-x.tsv.gz", [(url, "images/bomb.png")])
    params = tmp_path / "params.yaml"
    params.write_text("flickr-images:\n  allowed_hosts: [127.0.0.1]\n")
    done = subprocess.run(
        [VCAT, "stage", "flickr-images", str(listed), str(tmp_path / "out"), "--params", params],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "Warning" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {listed}: 1 images missing, more than the 0 that "
        "flickr-images.max_missing_fraction=0.0 allows; see "
        f"{tmp_path}/out/missing.tsv. The images stored so far are kept: run the stage again "
        "to retry the rest"
    ]
    assert "\tdecompression_bomb\t" in (tmp_path / "out" / MISSING_NAME).read_text()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\tfile:///tmp/a%00.jpg\timages/a.jpg", r"bad\.tsv:1: the URL holds .* NUL"),
        ("1\thttp://x/a b.jpg\timages/a.jpg", r"bad\.tsv:1: the URL holds a space"),
        ("1\thttp://x/a\x1b[2J.jpg\timages/a.jpg", r"bad\.tsv:1: the URL holds"),
        ("1\thttp://x/a.jpg\timages/a\x00.jpg", r"bad\.tsv:1: member .*control characters"),
        (f"1\thttp://x/a.jpg\timages/{'a' * 300}.jpg", r"bad\.tsv:1: member .*255 bytes per name"),
        (f"1\thttp://x/a.jpg\t{'a/' * 2100}a.jpg", r"bad\.tsv:1: member .*4000 per path"),
    ],
)
def test_names_that_cannot_be_files_are_refused_with_file_and_line(
    tmp_path: Path, line: str, message: str
) -> None:
    listed = tmp_path / "bad.tsv"
    listed.write_text(line + "\n")
    with pytest.raises(ListFormatError, match=message):
        read_rows(listed)


def test_files_cut_short_by_a_kill_do_not_stop_the_next_run(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    server.routes[f"/{relative(3)}"].behaviour = "forbidden"
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    clean = main(conf(max_missing_fraction=0.5), listed, tmp_path / "clean")

    output = main(conf(max_missing_fraction=0.5), listed, tmp_path / "out")
    with (output / MISSING_NAME).open("a", encoding="utf-8") as log:
        log.write("10\t50")  # a record cut by a kill: line 10 was never recorded missing
    main(conf(max_missing_fraction=0.5), listed, output)
    assert digests(output) == digests(clean)

    (output / ".run.json").write_text('{"list_md5": "0f')  # cut while it was written
    main(conf(max_missing_fraction=0.5), listed, output)
    assert digests(output) == digests(clean)


# --- resizing to the source project's shorter side ------------------------------------------


def photo(size: tuple[int, int], seed: int = 3, kind: str = "JPEG") -> bytes:
    """A smooth seeded image of ``size`` (width, height), encoded as ``kind``."""
    rng = np.random.default_rng([seed, *size])
    small = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format=kind, **({"quality": 92} if kind == "JPEG" else {}))
    return buffer.getvalue()


def upstream_resize(data: bytes, size: int = 256) -> bytes:
    """What continuous_ssl_problem's download_subset.py stores: the shorter side scaled to
    ``size`` in floating point, Pillow's default filter, saved with Pillow's defaults."""
    image = Image.open(io.BytesIO(data))
    w, h = image.size
    factor = size / min(w, h)
    buffer = io.BytesIO()
    image.resize((int(w * factor), int(h * factor))).save(buffer, format="JPEG")
    return buffer.getvalue()


def stored(
    tmp_path: Path, server: MisbehavingServer, images: dict[str, bytes], **settings: object
) -> dict[str, dict[str, bytes]]:
    rows = [
        (server.add(f"/r/{name}", Route(data)), f"images/r/{name}") for name, data in images.items()
    ]
    listed = write_rows(tmp_path / "flickr-r.tsv.gz", rows)
    output = main(conf(**settings), listed, tmp_path / "out", overwrite=True)
    with ShardReader(output) as shards:
        keys = shards.keys()
        return {key.removeprefix("images/r/"): shards.read(key) for key in keys}


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # decodes to the end
        return image.size


def test_images_are_stored_with_the_shorter_side_of_the_source_downloader(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    served = {
        "wide.jpg": photo((600, 400)),
        "tall.jpg": photo((300, 512)),
        "small.jpg": photo((32, 24)),
        "exact.jpg": photo((256, 300)),
        "odd.jpg": photo((70, 49)),  # upstream's floating point gives a shorter side of 255
        "flat.png": photo((400, 300), kind="PNG"),
    }
    got = stored(tmp_path, server, served, short_side=256)
    assert {name: size_of(*sample.values()) for name, sample in got.items()} == {
        "wide": (384, 256),
        "tall": (256, 436),
        "small": (341, 256),  # enlarged, as upstream does
        "exact": (256, 300),
        "odd": (365, 256),
        "flat": (341, 256),
    }
    # byte for byte what the source project's downloader writes where its sizes are exact
    for name in ("wide", "tall", "small"):
        assert got[name]["jpg"] == upstream_resize(served[f"{name}.jpg"])
    assert size_of(upstream_resize(served["odd.jpg"])) == (365, 255)
    assert got["exact"]["jpg"] == served["exact.jpg"]  # already the right size: as served
    with Image.open(io.BytesIO(got["flat"]["png"])) as image:
        assert image.format == "PNG"


def test_the_original_size_and_no_enlarging_are_options(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    served = {"wide.jpg": photo((600, 400)), "small.jpg": photo((32, 24))}
    kept = stored(tmp_path, server, served, short_side=0)
    assert {name: sample["jpg"] for name, sample in kept.items()} == {
        "wide": served["wide.jpg"],
        "small": served["small.jpg"],
    }
    shrunk = stored(tmp_path, server, served, short_side=128, enlarge=False, jpeg_quality=95)
    assert size_of(shrunk["wide"]["jpg"]) == (192, 128)
    assert shrunk["small"]["jpg"] == served["small.jpg"]
    with pytest.raises(StageError, match="short_side must be >= 0"):
        stored(tmp_path, server, served, short_side=-1)


def test_a_changed_size_starts_the_shards_over(tmp_path: Path, server: MisbehavingServer) -> None:
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    output = main(conf(), listed, tmp_path / "out")
    main(conf(short_side=64), listed, output)
    with ShardReader(output) as shards:
        assert size_of(shards.read(relative(0).removesuffix(".jpg"))["jpg"]) == (85, 64)
    assert digests(output) == digests(main(conf(short_side=64), listed, tmp_path / "fresh"))


def test_shards_merge_to_the_single_runs_bytes_missing_images_included(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    server.routes[f"/{relative(2)}"].behaviour = "forbidden"
    server.routes[f"/{relative(9)}"].behaviour = "forbidden"
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    settings = conf(max_missing_fraction=0.2)
    single = main(settings, listed, tmp_path / "single", metrics=tmp_path / "single.json")
    out = tmp_path / "split"
    for index in range(3):
        main(settings, listed, out, shard=ShardSpec(index, 3))
    merged = main(settings, listed, out, merge=3, metrics=tmp_path / "split.json")
    assert digests(merged) == digests(single)
    assert (tmp_path / "split.json").read_text() == (tmp_path / "single.json").read_text()
    assert (merged / MISSING_NAME).read_text().count("\tforbidden\t") == 2

    # the executor does the same from the stage's command, its shards as processes
    params = tmp_path / "params.yaml"
    section = "".join(f"  {key}: {json.dumps(value)}\n" for key, value in settings.items())
    params.write_text(f"flickr-images:\n{section}executor:\n  kind: local\n  shards: 4\n")
    command = [sys.executable, "-m", "vcat", "stage", "flickr-images", str(listed)]
    result = subprocess.run(
        [*command, str(tmp_path / "executor"), "--params", str(params)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "shard 3/4 done" in result.stderr
    assert digests(tmp_path / "executor") == digests(single)


def test_a_shard_stops_only_on_what_would_stop_the_whole_list(
    tmp_path: Path, server: MisbehavingServer
) -> None:
    """Two missing images in the first third of the list: more than a third of the 2 allowed,
    fewer than the list allows."""
    for index in (0, 1):
        server.routes[f"/{relative(index)}"].behaviour = "forbidden"
    listed = write_list(tmp_path / "flickr-x.tsv.gz", server)
    settings = conf(max_missing_fraction=0.2)
    part = main(settings, listed, tmp_path / "out", shard=ShardSpec(0, 3))
    assert (part / MISSING_NAME).read_text().count("\tforbidden\t") == 2
    server.routes[f"/{relative(2)}"].behaviour = "forbidden"
    with pytest.raises(StageError, match=r"3 images missing, more than the 2"):
        main(settings, listed, tmp_path / "out", shard=ShardSpec(0, 3), overwrite=True)
