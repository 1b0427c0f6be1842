"""The entry check that runs beside hashing (vcat.cli.entry_check): the same verdict and
messages as checking first, nothing written for a refused entry, and no child left behind."""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vcat.cli import app
from vcat.cli.entry_check import EntryRefused, EntryVerdict
from vcat.settings import SETTINGS_ENV
from vcat.verify.manifest import HashProgress, hash_files

GOOD = """\
title: Tiny scenes
description: Two binary files.
licence: {name: CC0-1.0, redistribution: allowed}
access: {kind: manual, instructions: Copy them by hand.}
layout: {rules: [{glob: "*.bin", min: 1}]}
"""
# Loads, but lint refuses it: two sources write one file.
REFUSED = """\
title: Broken scenes
description: Two sources that write one file.
licence: {name: CC0-1.0, redistribution: allowed}
access: {kind: public}
sources:
  - {name: a, url: "https://example.org/a", filename: data.bin, checksum: unpublished}
  - {name: b, url: "https://example.org/b", filename: data.bin, checksum: unpublished}
"""
CLASH = "source 'b' writes 'data.bin', as source 'a' (line 6) does"

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    datasets = tmp_path / "catalog" / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "tiny-scenes.yaml").write_text(GOOD)
    (datasets / "broken-scenes.yaml").write_text(REFUSED)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    return tmp_path


def vcat(*args: str) -> Result:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def big_tree(root: Path, files: int = 40, size: int = 1 << 20) -> Path:
    rng = random.Random(3)
    root.mkdir(parents=True)
    for index in range(files):
        (root / f"{index:03d}.bin").write_bytes(rng.randbytes(size))
    return root


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checks run inline, first, as when the process has other threads."""
    monkeypatch.setattr(threading, "active_count", lambda: 2)


def test_the_child_answers_with_what_extract_returns(project: Path) -> None:
    verdict = EntryVerdict.start("tiny-scenes", None, lambda entry: {"title": entry.spec.title})
    try:
        assert verdict._pid is not None  # forked: pytest's process has no other thread
        assert verdict.result() == {"title": "Tiny scenes"}
        assert verdict._pid is None  # answered and reaped
    finally:
        verdict.close()


def test_a_large_answer_does_not_block_the_child(project: Path) -> None:
    verdict = EntryVerdict.start("tiny-scenes", None, lambda entry: "x" * 300_000)
    try:
        deadline = time.monotonic() + 30
        while verdict._verdict is None and time.monotonic() < deadline:
            verdict.poll()  # drains the pipe without waiting: a 300 kB answer gets through
            time.sleep(0.01)
        assert verdict.result() == "x" * 300_000
    finally:
        verdict.close()


def test_with_other_threads_the_check_runs_inline(project: Path) -> None:
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        verdict = EntryVerdict.start("tiny-scenes", None, lambda entry: entry.name)
        assert verdict._pid is None
        assert verdict.result() == "tiny-scenes"
    finally:
        stop.set()
        other.join()


def test_a_crash_in_the_check_is_raised_with_its_traceback(project: Path) -> None:
    def broken(entry: object) -> None:
        raise ValueError("extract is broken")

    verdict = EntryVerdict.start("tiny-scenes", None, broken)
    with pytest.raises(RuntimeError, match="extract is broken"):
        verdict.result()


def test_close_stops_and_reaps_a_child_still_running(project: Path) -> None:
    verdict = EntryVerdict.start("tiny-scenes", None, lambda entry: time.sleep(60))
    pid = verdict._pid
    assert pid is not None
    verdict.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # already reaped: no zombie left


def test_a_refused_entry_is_an_entry_refused_error(project: Path) -> None:
    verdict = EntryVerdict.start("broken-scenes", None, None)
    with pytest.raises(EntryRefused) as refused:
        verdict.result()
    assert refused.value.code == 2
    assert "broken-scenes.yaml" in refused.value.output and CLASH in refused.value.output
    assert "does not pass `vcat catalog lint`" in refused.value.output


@pytest.mark.parametrize("mode", ["forked", "inline"])
@pytest.mark.parametrize("command", ["build", "verify"])
def test_a_refused_entry_writes_nothing_and_says_what_an_inline_check_says(
    project: Path, request: pytest.FixtureRequest, mode: str, command: str
) -> None:
    if mode == "inline":
        request.getfixturevalue("inline")
    root = big_tree(project / "elsewhere")
    good = vcat("manifest", "build", "tiny-scenes", "--root", str(root), "--out", "m.tsv")
    assert good.exit_code == 0, good.output
    out = project / "refused.tsv"
    if command == "build":
        args = ["manifest", "build", "broken-scenes", "--root", str(root), "--out", str(out)]
    else:
        args = ["verify", "broken-scenes", "--root", str(root), "--manifest", "m.tsv"]
    result = vcat(*args)
    assert result.exit_code == 2
    assert CLASH in result.stderr
    assert "does not pass `vcat catalog lint`" in result.stderr
    assert "OK" not in result.stdout and result.stdout == ""
    assert not out.exists()
    assert not (project / ".vcat" / "settings.yaml").exists()  # no root remembered


@pytest.mark.parametrize("mode", ["forked", "inline"])
def test_an_unknown_entry_without_a_root_is_reported_as_unknown(
    project: Path, request: pytest.FixtureRequest, mode: str
) -> None:
    if mode == "inline":
        request.getfixturevalue("inline")
    for args in (
        ["manifest", "build", "tiny-scene"],
        ["verify", "tiny-scene", "--manifest", "m.tsv"],
    ):
        result = vcat(*args)
        assert result.exit_code == 2
        assert "no catalog entry named 'tiny-scene'" in result.stderr
        assert "tiny-scenes" in result.stderr  # the close name
        assert "no root is known" not in result.stderr  # the entry's error, not what followed


def test_a_bad_manifest_for_a_refused_entry_reports_the_entry(project: Path) -> None:
    root = big_tree(project / "elsewhere", files=2)
    (project / "bad.tsv").write_text("not a manifest\n")
    result = vcat("verify", "broken-scenes", "--root", str(root), "--manifest", "bad.tsv")
    assert result.exit_code == 2
    assert "does not pass `vcat catalog lint`" in result.stderr
    assert "bad.tsv" not in result.stderr


def test_an_error_from_the_progress_callback_stops_hashing(tmp_path: Path) -> None:
    root = big_tree(tmp_path / "tree", files=64)
    files = [(path.name, path.stat().st_size) for path in sorted(root.iterdir())]

    class Stop(Exception):
        pass

    def progress(state: HashProgress) -> None:
        if state.bytes_done:
            raise Stop

    for workers in (1, 2):
        with pytest.raises(Stop):
            hash_files(root, files, "md5", workers, progress)
        assert not [t for t in threading.enumerate() if t.name.startswith("hash")]
