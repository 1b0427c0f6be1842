"""Local files named by data (catalog entries, subset lists): read only below the demo world
or an allowed root, never from .dvc/, .git/ or vcat's settings, however the URL is spelt.

Real files, real symlinks and a FIFO in temporary projects; the real flickr-images stage,
`vcat catalog lint` and `vcat fetch` through the CLI."""

from __future__ import annotations

import gzip
import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from stages.flickr_images import MISSING_NAME, ListFormatError, main, read_rows
from vcat.cli import app
from vcat.demo.build import DEMO_WORLD as BUILD_DEMO_WORLD
from vcat.failures import FailureClass, FetchFailure
from vcat.fetch.local import LocalTransport, path_of
from vcat.fetch.small import fetch_bytes
from vcat.localfiles import DEMO_WORLD, LOCAL_ROOTS_ENV
from vcat.settings import SETTINGS_ENV, set_local_root
from vcat.shards import INDEX_NAME, ShardError, ShardReader, ShardWriter, unpack_shards

runner = CliRunner()
SECRET = b"AKIA-test-secret-0123456789abcdef"
CONFIG_LOCAL = b"['remote \"demo\"']\n    secret_access_key = " + SECRET + b"\n"


def jpeg(index: int) -> bytes:
    rng = np.random.default_rng([11, index])
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project with a demo world, DVC credentials, settings, git data, and a folder outside
    it; the working directory is the project and no allow-list comes from the environment."""
    root = tmp_path / "project"
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / ".dvc").mkdir()
    (root / ".dvc" / "config.local").write_bytes(CONFIG_LOCAL)
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("[core]\n\tbare = false\n")
    world = root / DEMO_WORLD
    world.mkdir(parents=True)
    (world / "img0.jpg").write_bytes(jpeg(0))
    (root / ".vcat" / "settings.yaml").write_text("roots: {}\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(SECRET)
    monkeypatch.chdir(root)
    for variable in (SETTINGS_ENV, "VCAT_CATALOG", LOCAL_ROOTS_ENV):
        monkeypatch.delenv(variable, raising=False)
    return root


def refused(url: str, project: Path) -> FetchFailure:
    with pytest.raises(FetchFailure) as caught:
        path_of(url, project)
    assert caught.value.failure == FailureClass.FORBIDDEN, caught.value
    return caught.value


# --- the policy, URL by URL ----------------------------------------------------------------


def test_the_demo_world_is_where_the_demo_builds() -> None:
    assert Path(DEMO_WORLD) == BUILD_DEMO_WORLD


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:/etc/passwd",
        "file://localhost/etc/passwd",
        "file:.dvc/config.local",
        "file:.vcat/settings.yaml",
        "file:.git/config",
        "file:dvc.yaml",  # inside the project, but not below an allowed root
        "file:%2e%2e/outside/secret.jpg",
        "file:%2E%2E/outside/secret.jpg",
        "file:.vcat/demo-world/../settings.yaml",
        "file:.vcat/demo-world/%2e%2e/settings.yaml",
        "file:.vcat/demo-world/%2e%2e/%2e%2e/.dvc/config.local",
        "file:.vcat/demo-world/.%2e/.%2E/.dvc/config.local",
        "file:.vcat%2fsettings.yaml",
        "file:./.dvc/config.local",
        "file:.vcat/demo-world/.dvc/config.local",  # a .dvc folder is never read, anywhere
        "file:.vcat/demo-world/.DVC/config.local",  # nor on a case-insensitive disk
        "file:.VCAT/settings.yaml",
        "file://otherhost/etc/passwd",
        "file://otherhost/.vcat/demo-world/img0.jpg",
        "file:.vcat/demo-world/img0.jpg%00.png",
        "file:.vcat/demo-world/img0.jpg\x00",
    ],
)
def test_urls_outside_the_allowed_roots_are_forbidden(url: str, project: Path) -> None:
    failure = refused(url, project)
    assert url.split("\x00")[0] in failure.reason or repr(url) in failure.reason


def test_absolute_urls_into_the_project_are_refused_like_relative_ones(project: Path) -> None:
    for inside in (".dvc/config.local", ".vcat/settings.yaml", ".git/config"):
        refused((project / inside).as_uri(), project)
    world = (project / DEMO_WORLD).as_uri()
    refused(f"{world}/../settings.yaml", project)
    assert path_of(f"{world}/img0.jpg", project) == (project / DEMO_WORLD / "img0.jpg").resolve()


def test_the_refusal_names_url_resolved_path_and_how_to_allow(project: Path) -> None:
    failure = refused("file:%2e%2e/outside/secret.jpg", project)
    resolved = str((project.parent / "outside" / "secret.jpg").resolve())
    assert resolved in failure.reason
    assert "local_roots" in failure.reason and str(project / ".vcat" / "settings.yaml") in (
        failure.reason
    )
    assert failure.reason.count("\n") == 0
    hidden = refused("file:.dvc/config.local", project)
    assert str((project / ".dvc" / "config.local").resolve()) in hidden.reason
    assert "never reads" in hidden.reason


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("link-out.jpg", "../../../outside/secret.jpg"),
        ("link-to-credentials", "../../.dvc/config.local"),
        ("link-to-settings.yaml", "../settings.yaml"),
        ("absolute-link", "/etc/passwd"),
    ],
)
def test_symlinks_in_the_demo_world_cannot_lead_out(name: str, target: str, project: Path) -> None:
    link = project / DEMO_WORLD / name
    link.symlink_to(target)
    failure = refused(f"file:.vcat/demo-world/{name}", project)
    assert str(link.resolve()) in failure.reason  # the file it really names


def test_a_symlinked_folder_in_the_demo_world_cannot_lead_out(project: Path) -> None:
    (project / DEMO_WORLD / "nas").symlink_to(project.parent / "outside")
    refused("file:.vcat/demo-world/nas/secret.jpg", project)
    (project / DEMO_WORLD / "up").symlink_to(project / ".dvc")
    refused("file:.vcat/demo-world/up/config.local", project)


def test_a_symlink_that_stays_inside_is_followed(project: Path) -> None:
    (project / DEMO_WORLD / "alias.jpg").symlink_to("img0.jpg")
    assert (
        path_of("file:.vcat/demo-world/alias.jpg", project)
        == (project / DEMO_WORLD / "img0.jpg").resolve()
    )


def test_a_url_is_decoded_exactly_once(project: Path) -> None:
    """``%252e%252e`` is the folder literally named ``%2e%2e``, never a way up."""
    odd = project / DEMO_WORLD / "%2e%2e"
    odd.mkdir()
    (odd / "settings.yaml").write_bytes(b"demo data, not settings")
    url = "file:.vcat/demo-world/%252e%252e/settings.yaml"
    assert path_of(url, project) == (odd / "settings.yaml").resolve()
    assert fetch_bytes(url) == b"demo data, not settings"
    spaced = project / DEMO_WORLD / "a b.jpg"
    spaced.write_bytes(jpeg(1))
    assert fetch_bytes("file:.vcat/demo-world/a%20b.jpg") == jpeg(1)


def test_demo_world_files_are_read(project: Path) -> None:
    assert fetch_bytes("file:.vcat/demo-world/img0.jpg") == jpeg(0)
    assert fetch_bytes((project / DEMO_WORLD / "img0.jpg").as_uri()) == jpeg(0)


# --- allowed roots -------------------------------------------------------------------------


def test_a_root_allowed_in_the_settings_is_read(project: Path) -> None:
    url = (project.parent / "outside" / "secret.jpg").as_uri()
    refused(url, project)
    set_local_root(project, project.parent / "outside", allowed=True)
    assert fetch_bytes(url) == SECRET
    set_local_root(project, project.parent / "outside", allowed=False)
    refused(url, project)


def test_a_root_allowed_in_the_environment_is_read(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "file:%2e%2e/outside/secret.jpg"
    monkeypatch.setenv(LOCAL_ROOTS_ENV, f"/nonexistent{os.pathsep}{project.parent / 'outside'}")
    assert fetch_bytes(url) == SECRET
    monkeypatch.setenv(LOCAL_ROOTS_ENV, "relative/folder")
    assert "not an absolute path" in refused(url, project).reason


def test_allowing_the_project_still_hides_credentials_and_settings(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(LOCAL_ROOTS_ENV, str(project.parent))
    assert fetch_bytes("file:dvc.yaml") == b"stages: {}\n"
    assert fetch_bytes("file:%2e%2e/outside/secret.jpg") == SECRET
    for url in ("file:.dvc/config.local", "file:.vcat/settings.yaml", "file:.git/config"):
        refused(url, project)
    (project.parent / "outside" / "link").symlink_to(project / ".dvc" / "config.local")
    refused("file:%2e%2e/outside/link", project)


def test_an_invalid_settings_file_refuses_with_its_line(project: Path) -> None:
    (project / ".vcat" / "settings.yaml").write_text("roots: {}\nlocal_roots: [relative]\n")
    failure = refused("file:.vcat/demo-world/img0.jpg", project)
    assert "settings.yaml:2" in failure.reason and "not an absolute path" in failure.reason


def test_a_fifo_or_folder_is_refused_without_blocking(project: Path) -> None:
    fifo = project / DEMO_WORLD / "pipe.jpg"
    os.mkfifo(fifo)
    outcome: list[BaseException | bytes] = []
    worker = threading.Thread(
        target=lambda: outcome.append(_attempt("file:.vcat/demo-world/pipe.jpg")), daemon=True
    )
    worker.start()
    worker.join(timeout=30)
    assert not worker.is_alive(), "opening a FIFO blocked"
    [failure] = outcome
    assert isinstance(failure, FetchFailure) and failure.failure == FailureClass.FORBIDDEN
    assert "not a regular file" in failure.reason
    with pytest.raises(FetchFailure) as caught:
        LocalTransport().open("file:.vcat/demo-world", 0, None)
    assert caught.value.failure == FailureClass.NOT_FOUND


def _attempt(url: str) -> BaseException | bytes:
    try:
        return fetch_bytes(url)
    except FetchFailure as failure:
        return failure


# --- a subset list through the real flickr-images stage ------------------------------------


HOSTILE_LIST = [
    "file:.vcat/demo-world/img0.jpg",
    "file:///etc/passwd",
    "file:.dvc/config.local",
    "file:.vcat/settings.yaml",
    "file:%2e%2e/outside/secret.jpg",
    "file:.vcat/demo-world/%2e%2e/%2e%2e/.dvc/config.local",
    "file:.vcat/demo-world/escape.jpg",  # a symlink to ../../.dvc/config.local
    "file://otherhost/etc/passwd",
]


def write_list(path: Path, urls: list[str]) -> Path:
    lines = [f"{9000 + i}\t{url}\timages/{i}/{9000 + i}.jpg\n" for i, url in enumerate(urls)]
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def test_a_hostile_list_packs_nothing_but_the_demo_image(project: Path, tmp_path: Path) -> None:
    (project / DEMO_WORLD / "escape.jpg").symlink_to("../../.dvc/config.local")
    listed = write_list(tmp_path / "hostile.tsv.gz", HOSTILE_LIST)
    conf = {"jobs": 2, "attempts": 1, "max_missing_fraction": 1.0, "short_side": 0}
    output = main(conf, listed, project / "data" / "images")
    rows = [line.split("\t") for line in (output / MISSING_NAME).read_text().splitlines()[1:]]
    assert [(row[2], row[3]) for row in rows] == [(url, "forbidden") for url in HOSTILE_LIST[1:]]
    with ShardReader(output) as shards:
        assert shards.keys() == ["images/0/9000"]
        assert shards.read("images/0/9000") == {"jpg": jpeg(0)}
    for shard in output.glob("shard-*.tar"):
        data = shard.read_bytes()
        assert SECRET not in data and b"root:" not in data


def test_a_hostile_list_over_the_limit_fails_the_stage(project: Path, tmp_path: Path) -> None:
    listed = write_list(tmp_path / "hostile.tsv.gz", HOSTILE_LIST[:3])
    result = runner.invoke(
        app, ["stage", "flickr-images", str(listed), str(project / "data" / "x")]
    )
    assert result.exit_code == 1, result.output
    assert "1 images missing, more than the 0" in result.output
    missing = (project / "data" / "x" / MISSING_NAME).read_text().splitlines()
    assert missing[1].split("\t")[2:4] == ["file:///etc/passwd", "forbidden"]


# --- catalog entries: lint and fetch -------------------------------------------------------


ENTRY = """title: Local test data
description: Files read from this machine.
licence: {{name: CC0-1.0, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: file
    url: {url}
    filename: file.bin
    checksum: unpublished
"""


def write_entry(project: Path, url: str) -> None:
    (project / "catalog" / "datasets" / "local.yaml").write_text(ENTRY.format(url=url))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file:%2e%2e/outside/secret.jpg", "leaves the project"),
        ("file:.vcat/demo-world/%2e%2e/settings.yaml", "leaves the project"),
        ("file:.dvc/config.local", "inside .dvc/"),
        ("file:.vcat/settings.yaml", "inside .vcat/"),
        ("file:.git/config", "inside .git/"),
        ("file:///srv/checkout/.dvc/config.local", "inside .dvc/"),
        ("file://otherhost/share/f.bin", "names the host"),
        ("file:a%00b", "NUL"),
    ],
)
def test_lint_and_fetch_refuse_what_no_allow_list_can_permit(
    url: str, why: str, project: Path
) -> None:
    write_entry(project, url)
    linted = runner.invoke(app, ["catalog", "lint"])
    assert linted.exit_code != 0 and why in linted.output, linted.output
    fetched = runner.invoke(app, ["fetch", "local", "--no-dvc"])
    assert fetched.exit_code == 2, fetched.output
    assert not (project / "data" / "sources" / "local" / "file.bin").exists()


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:dvc.yaml",
        "file:.vcat/demo-world/escape.bin",  # a symlink to ../../.dvc/config.local
        "file:.vcat/demo-world/out.bin",  # a symlink to a folder outside
    ],
)
def test_fetch_refuses_an_entry_that_lint_cannot_judge(url: str, project: Path) -> None:
    (project / DEMO_WORLD / "escape.bin").symlink_to("../../.dvc/config.local")
    (project / DEMO_WORLD / "out.bin").symlink_to(project.parent / "outside" / "secret.jpg")
    write_entry(project, url)
    assert runner.invoke(app, ["catalog", "lint"]).exit_code == 0
    fetched = runner.invoke(app, ["fetch", "local", "--no-dvc"])
    assert fetched.exit_code == 1, fetched.output
    assert "forbidden" in fetched.output and "vcat settings allow DIR" in fetched.output
    root = project / "data" / "sources" / "local"
    assert not (root / "file.bin").exists()
    for path in project.joinpath("data").rglob("*"):
        assert not path.is_file() or SECRET not in path.read_bytes()


def test_fetch_reads_an_allowed_root(project: Path) -> None:
    outside = project.parent / "outside"
    (outside / "file.bin").write_bytes(b"allowed bytes")
    write_entry(project, (outside / "file.bin").as_uri())
    assert runner.invoke(app, ["fetch", "local", "--no-dvc"]).exit_code == 1
    allowed = runner.invoke(app, ["settings", "allow", str(outside)])
    assert allowed.exit_code == 0, allowed.output
    fetched = runner.invoke(app, ["fetch", "local", "--no-dvc"])
    assert fetched.exit_code == 0, fetched.output
    placed = project / "data" / "sources" / "local" / "file.bin"
    assert placed.read_bytes() == b"allowed bytes"


# --- names from data cannot write outside the output folder --------------------------------


@pytest.mark.parametrize(
    "relative",
    [
        "../../escape.jpg",
        "images/../../../escape.jpg",
        "/etc/cron.d/escape.jpg",
        "images\\..\\escape.jpg",
        "images/esc\x01ape.jpg",
    ],
)
def test_a_list_path_that_would_leave_the_output_is_refused(relative: str, tmp_path: Path) -> None:
    listed = tmp_path / "list.tsv"
    listed.write_text(f"1\tfile:.vcat/demo-world/img0.jpg\t{relative}\n", encoding="utf-8")
    with pytest.raises(ListFormatError, match=r"list\.tsv:1: "):
        read_rows(listed)


def test_a_tampered_shard_index_cannot_unpack_outside(project: Path, tmp_path: Path) -> None:
    with ShardWriter(tmp_path / "shards") as writer:
        writer.add("images/a", {"jpg": jpeg(0)})
    index = tmp_path / "shards" / INDEX_NAME
    index.write_text(index.read_text().replace('"images/a"', '"../../escaped"'))
    with pytest.raises(ShardError, match="relative path"):
        unpack_shards(tmp_path / "shards", tmp_path / "tree")
    assert not list(tmp_path.parent.rglob("escaped*"))
