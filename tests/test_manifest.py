"""Manifests on real files: the format, every failure class, gzip, parallel hashing, and the
command line."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vcat.cli import app
from vcat.failures import FailureClass
from vcat.settings import SETTINGS_ENV
from vcat.verify import manifest as manifest_module
from vcat.verify.manifest import (
    HashProgress,
    ManifestError,
    build_manifest,
    check_manifest,
    escape_path,
    hash_files,
    read_manifest,
    unescape_path,
    walk_files,
)

PAGE = b"<!DOCTYPE html>\n<html><head><title>Google Drive - Virus scan warning</title></head>"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def sample(root: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    files = {
        "b/two.bin": rng.randbytes(3000),
        "a.txt": b"hello\n",
        "b/one.bin": rng.randbytes(70_000),
        "empty": b"",
        "page.html": b"<html>kept</html>",
    }
    tree(root, files)
    return files


# --- format -------------------------------------------------------------------------------


def test_build_writes_the_documented_format(tmp_path: Path) -> None:
    files = sample(tmp_path / "root")
    out = tmp_path / "m.tsv"
    manifest = build_manifest(tmp_path / "root", out, workers=1)
    lines = out.read_text(encoding="utf-8").splitlines()
    total = sum(len(data) for data in files.values())
    assert lines[0] == f"# vcat-manifest 1 algorithm=md5 files=5 bytes={total}"
    assert lines[1:] == [
        f"{md5(files[name])}\t{len(files[name])}\t{name}" for name in sorted(files)
    ]
    assert [record.path for record in manifest.records] == sorted(files)
    assert read_manifest(out) == manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tsv", "root"]  # no temporaries


def test_sha256_manifests(tmp_path: Path) -> None:
    files = sample(tmp_path / "root")
    out = tmp_path / "m.tsv"
    build_manifest(tmp_path / "root", out, algorithm="sha256", workers=1)
    first = out.read_text().splitlines()[1]
    assert first == f"{hashlib.sha256(files['a.txt']).hexdigest()}\t6\ta.txt"
    assert check_manifest(tmp_path / "root", out, workers=1).ok


def test_awkward_names_round_trip(tmp_path: Path) -> None:
    names = ["tab\there", "new\nline", "back\\slash", "cr\rhere", "ünï cødé", "#not-a-comment"]
    root = tree(tmp_path / "root", {name: name.encode() for name in names})
    raw = os.fsencode(root) + b"/latin1-\xe9.txt"
    with open(raw, "wb") as stream:
        stream.write(b"bytes")
    out = tmp_path / "m.tsv"
    manifest = build_manifest(root, out, workers=1)
    text = out.read_text(encoding="utf-8")
    assert "tab\\there" in text and "new\\nline" in text and "back\\\\slash" in text
    assert "latin1-\\xe9.txt" in text
    assert len(text.splitlines()) == 1 + len(names) + 1
    assert read_manifest(out) == manifest
    assert check_manifest(root, out, workers=1).ok


def test_escape_is_reversible() -> None:
    for path in ["plain/path.jpg", "a\\tb", "\t\n\r\\", "x\udce9y", "\\x41"]:
        assert unescape_path(escape_path(path)) == path
    with pytest.raises(ValueError, match="unknown escape"):
        unescape_path("bad\\q")


def test_gzip_manifests_are_deterministic_and_read_back(tmp_path: Path) -> None:
    sample(tmp_path / "root")
    first, second = tmp_path / "one.tsv.gz", tmp_path / "two.tsv.gz"
    build_manifest(tmp_path / "root", first, workers=1)
    build_manifest(tmp_path / "root", second, workers=1)
    assert first.read_bytes()[:2] == b"\x1f\x8b"
    assert first.read_bytes() == second.read_bytes()
    plain = tmp_path / "plain.tsv"
    build_manifest(tmp_path / "root", plain, workers=1)
    assert gzip.decompress(first.read_bytes()) == plain.read_bytes()
    assert read_manifest(first) == read_manifest(plain)
    assert check_manifest(tmp_path / "root", first, workers=1).ok
    # Told by content, not by name.
    renamed = tmp_path / "renamed.tsv"
    renamed.write_bytes(first.read_bytes())
    assert read_manifest(renamed) == read_manifest(plain)


def test_parallel_hashing_equals_serial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(3)
    files = {f"d{i % 7}/f{i:03d}": rng.randbytes(rng.randint(0, 40_000)) for i in range(150)}
    files["big"] = rng.randbytes(3 << 20)
    root = tree(tmp_path / "root", files)
    monkeypatch.setattr(manifest_module, "BATCH_FILES", 16)  # many tasks, tiny ones
    monkeypatch.setattr(manifest_module, "BATCH_BYTES", 100_000)
    serial, parallel = tmp_path / "serial.tsv", tmp_path / "parallel.tsv"
    seen: list[HashProgress] = []
    build_manifest(root, serial, workers=1)
    build_manifest(root, parallel, workers=3, progress=seen.append)
    assert parallel.read_bytes() == serial.read_bytes()
    assert seen[-1] == HashProgress(151, 151, sum(map(len, files.values())), seen[-1].bytes_total)
    assert seen[-1].bytes_done == seen[-1].bytes_total
    # The same failures whichever way the tree is checked.
    (root / "d3" / "f010").write_bytes(b"changed")
    (root / "d4" / "f011").write_bytes(b"x" * len(files["d4/f011"]))
    serial_report = check_manifest(root, serial, workers=1)
    parallel_report = check_manifest(root, serial, workers=2)
    assert serial_report.failures == parallel_report.failures
    assert serial_report.counts == parallel_report.counts
    assert [f.path for f in serial_report.failures] == ["d3/f010", "d4/f011"]


def test_progress_reaches_the_totals(tmp_path: Path) -> None:
    files = sample(tmp_path / "root")
    seen: list[HashProgress] = []
    listed = walk_files(tmp_path / "root")
    digests, read = hash_files(tmp_path / "root", listed, workers=1, progress=seen.append)
    assert [d.hex() for d in digests] == [md5(files[path]) for path, _ in listed]
    assert read == [len(files[path]) for path, _ in listed]
    total = sum(map(len, files.values()))
    assert seen[0] == HashProgress(0, 5, 0, total)
    assert seen[-1] == HashProgress(5, 5, total, total)


def test_manifest_is_never_written_inside_the_tree(tmp_path: Path) -> None:
    sample(tmp_path / "root")
    with pytest.raises(ManifestError, match="must not be written inside"):
        build_manifest(tmp_path / "root", tmp_path / "root" / "sub" / "m.tsv")
    assert not (tmp_path / "root" / "sub").exists()


# --- checking -----------------------------------------------------------------------------


def test_every_failure_class(tmp_path: Path) -> None:
    root = tmp_path / "root"
    rng = random.Random(11)
    files = {name: rng.randbytes(5000) for name in ["ok", "gone", "short", "long", "flip"]}
    files |= {"drive.zip": rng.randbytes(500_000), "index.html": b"<!doctype html><p>v1</p>"}
    tree(root, files)
    out = tmp_path / "m.tsv"
    build_manifest(root, out, workers=1)
    (root / "gone").unlink()
    (root / "short").write_bytes(files["short"][:100])
    (root / "long").write_bytes(files["long"] + b"more")
    flipped = bytearray(files["flip"])
    flipped[2500] ^= 1
    (root / "flip").write_bytes(bytes(flipped))
    (root / "drive.zip").write_bytes(PAGE)  # a saved web page instead of the archive
    (root / "index.html").write_bytes(b"<!doctype html><p>v2</p>")  # pages may be data
    (root / "new" / "extra.txt").parent.mkdir()
    (root / "new" / "extra.txt").write_bytes(b"surprise")

    report = check_manifest(root, out, workers=1)
    assert not report.ok
    by_path = {f.path: f for f in report.failures}
    assert {path: f.failure for path, f in by_path.items()} == {
        "gone": FailureClass.MISSING,
        "short": FailureClass.TRUNCATED,
        "long": FailureClass.OVERSIZED,
        "flip": FailureClass.CHECKSUM_MISMATCH,
        "drive.zip": FailureClass.HTML_INSTEAD_OF_FILE,
        "index.html": FailureClass.CHECKSUM_MISMATCH,
        "new/extra.txt": FailureClass.UNEXPECTED,
    }
    assert report.counts == {
        "ok": 1,
        "missing": 1,
        "unexpected": 1,
        "truncated": 1,
        "oversized": 1,
        "checksum_mismatch": 2,
        "html_instead_of_file": 1,
        "not_a_file": 0,
    }
    assert by_path["short"].expected_size == 5000 and by_path["short"].actual_size == 100
    assert by_path["short"].actual_digest is None, "a file of the wrong size is not hashed"
    assert by_path["flip"].actual_digest == md5(bytes(flipped))
    assert by_path["flip"].expected_digest == md5(files["flip"])
    assert by_path["new/extra.txt"].actual_size == 8
    assert report.bytes_hashed == 5000 * 2 + len(b"<!doctype html><p>v2</p>")
    assert "shorter than when the manifest was made" in by_path["short"].advice


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("", 1, "empty file"),
        ("d41d8cd98f00b204e9800998ecf8427e\t0\tx\n", 1, "not a vcat manifest"),
        ("# vcat-manifest 2 algorithm=md5\n", 1, "version '2' is not supported"),
        ("# vcat-manifest 1 algorithm=crc32\n", 1, "algorithm 'crc32'"),
        ("# vcat-manifest 1 algorithm=md5 files=many\n", 1, "files='many' is not a number"),
        ("@H\n# ok\nd41d8cd98f00b204e9800998ecf8427e 0 x\n", 3, "expected 3 tab-separated"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427\t0\tx\n", 2, "is not a md5 digest"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427g\t0\tx\n", 2, "is not a md5 digest"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427e\t-1\tx\n", 2, "size '-1' is not a whole number"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427e\t0\t/etc/passwd\n", 2, "must be relative"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427e\t0\ta/../../x\n", 2, "'..' components"),
        ("@H\nd41d8cd98f00b204e9800998ecf8427e\t0\ta\\q\n", 2, "unknown escape"),
        ("@H\n" + "d41d8cd98f00b204e9800998ecf8427e\t0\tx\n" * 2, 3, "listed twice"),
        (
            "# vcat-manifest 1 algorithm=md5 files=3\nd41d8cd98f00b204e9800998ecf8427e\t0\tx\n",
            2,
            "promises 3 files but 1 are listed",
        ),
    ],
)
def test_malformed_manifest_names_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(text.replace("@H", "# vcat-manifest 1 algorithm=md5"), encoding="utf-8")
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert (caught.value.path, caught.value.line) == (path, line)
    assert message in caught.value.message
    assert str(caught.value).startswith(f"{path}:{line}: ")


def _parse_lines(path: Path) -> manifest_module.Manifest:
    with path.open("rb") as stream:
        return manifest_module._parse(path, manifest_module._lines(path, stream))


def test_the_bulk_parse_reads_what_the_line_parse_reads(tmp_path: Path) -> None:
    """Manifests with one defect or oddity each, at a random line: read_manifest (bulk when it
    can) gives the records or the error, line included, that the line-by-line parse gives."""
    rng = random.Random(11)
    digest = "d41d8cd98f00b204e9800998ecf8427e"
    lines = [f"{md5(str(i).encode())}\t{i * 7}\tdir{i % 3}/f{i}.bin\n" for i in range(40)]
    oddities = [
        "# a comment\n",
        "\n",
        f"{digest.upper()}\t0\tupper.bin\n",
        f"{digest}\t0\tback\\\\slash\n",
        f"{digest}\t0\ttab\\there\n",
        "symlink\tf0.bin\tlink\n",
        f"{digest}\t0\tCRLF\r\n",
        f"zz{digest}\t0\tprefixed\n",
        f"{digest}\t0\t/abs\n",
        f"{digest}\t0\ta//b\n",
        f"{digest}\t0\ta/./b\n",
        f"{digest}\t0\ta/../b\n",
        f"{digest}\t0\ta/\n",
        f"{digest}\t0\t.\n",
        f"{digest}\t0\t..\n",
        f"{digest}\t0\t./a\n",
        f"{digest}\t0\ta/..\n",
        f"{digest}\t0\tdir0/.hidden\n",
        f"{digest}\t0\t.hidden\n",
        f"{digest}\t0\ta..b/c.\n",
        f"{digest}\t0\tdir0/f0.bin\n",  # a duplicate
        f"{digest}\t0x1\thex-size\n",
        f"{digest}\t0\tnul\x00\n",
        f"{digest}\t0\tcafé\n",
        f"{digest}\t0\ttwo\tfields-too-many\n",
    ]
    cases = 0
    for oddity in oddities:
        for files_field in ("", " files=41", " files=40"):
            body = list(lines)
            body.insert(rng.randrange(len(body) + 1), oddity)
            text = f"# vcat-manifest 1 algorithm=md5{files_field}\n" + "".join(body)
            for ending in ("", "last line without a newline"):
                path = tmp_path / f"case-{cases}.tsv"
                path.write_text(text + (f"{digest}\t0\tno-newline" if ending else ""))
                cases += 1
                try:
                    expected: object = _parse_lines(path)
                except ManifestError as exc:
                    expected = (exc.line, str(exc))
                try:
                    got: object = read_manifest(path)
                except ManifestError as exc:
                    got = (exc.line, str(exc))
                assert got == expected, (oddity, files_field, ending)
    assert cases == len(oddities) * 6
    # the usual manifest, and paths that only look odd, do take the bulk parse
    for oddity in ("", f"{digest}\t0\tdir0/.hidden\n", f"{digest}\t0\ta..b/c.\n"):
        data = ("# vcat-manifest 1 algorithm=md5\n" + "".join(lines) + oddity).encode()
        assert manifest_module._parse_bulk(tmp_path / "m.tsv", data) is not None


def test_undecodable_and_broken_gzip_manifests(tmp_path: Path) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(
        b"# vcat-manifest 1 algorithm=md5\nd41d8cd98f00b204e9800998ecf8427e\t0\t\xff\n"
    )
    with pytest.raises(ManifestError, match="not valid UTF-8") as caught:
        read_manifest(path)
    assert caught.value.line == 2
    packed = gzip.compress(b"# vcat-manifest 1 algorithm=md5\n" * 1000)
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ManifestError, match="cannot read"):
        read_manifest(path)


# --- the command line ---------------------------------------------------------------------

ENTRY = """\
title: Tiny scenes
description: A few scenes of photos, arranged by hand.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: manual
  url: https://example.org/tiny-scenes
  instructions: Download "Tiny scenes" from the project page.
layout:
  rules:
    - glob: "*.bin"
      min: 1
"""

runner = CliRunner()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project folder holding a one-entry catalog; the working directory is inside it."""
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "catalog" / "datasets").mkdir(parents=True)
    (tmp_path / "catalog" / "datasets" / "tiny-scenes.yaml").write_text(ENTRY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    return tmp_path


def vcat(*args: str) -> Result:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_cli_build_then_verify(project: Path) -> None:
    root = tree(project / "elsewhere" / "scenes", {"a.bin": b"a" * 10, "b.bin": b"b" * 20})
    built = vcat("manifest", "build", "tiny-scenes", "--root", str(root), "--workers", "1")
    assert built.exit_code == 0, built.output
    default = project / "data" / "manifests" / "tiny-scenes.md5.manifest.tsv"
    assert default.is_file()
    assert "2 files, 30 bytes" in built.stdout
    checked = vcat("verify", "tiny-scenes", "--root", str(root), "--manifest", str(default))
    assert checked.exit_code == 0, checked.output
    assert "ok 2" in checked.stdout and "OK: every file matches" in checked.stdout
    # The passing root is remembered, so later commands need no --root.
    assert "tiny-scenes: " + str(root) in (project / ".vcat" / "settings.yaml").read_text()
    again = vcat("verify", "tiny-scenes", "--manifest", str(default), "--json")
    assert again.exit_code == 0
    payload = json.loads(again.stdout)
    assert payload["format"] == "vcat.verify.manifest/1"
    assert payload["counts"]["ok"] == 2 and payload["failures"] == []


def test_cli_build_json_sha256_gz(project: Path) -> None:
    root = tree(project / "scenes", {"a.bin": b"a"})
    out = project / "out" / "m.tsv.gz"
    result = vcat(
        "manifest", "build", "tiny-scenes", "--root", str(root), "--out", str(out),
        "--algorithm", "sha256", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["format"] == "vcat.manifest.build/1"
    assert (payload["manifest"], payload["algorithm"], payload["files"]) == (
        "out/m.tsv.gz", "sha256", 1,
    )  # fmt: skip
    assert read_manifest(out).algorithm == "sha256"


def test_cli_verify_reports_failures_with_advice(project: Path) -> None:
    root = tree(project / "scenes", {"a.bin": b"a" * 10, "b.bin": b"b" * 20, "c.bin": b"c"})
    out = project / "m.tsv"
    assert (
        vcat("manifest", "build", "tiny-scenes", "--root", str(root), "--out", str(out)).exit_code
        == 0
    )
    (root / "a.bin").write_bytes(b"a" * 5)
    (root / "c.bin").unlink()
    (root / "d.bin").write_bytes(PAGE)
    result = vcat("verify", "tiny-scenes", "--root", str(root), "--manifest", str(out))
    assert result.exit_code == 1
    out_text = result.stdout
    assert "ok 1, missing 1, unexpected 1, truncated 1" in out_text
    assert "a.bin (5 bytes, 10 expected)" in out_text
    assert "shorter than when the manifest was made" in out_text
    assert "FAILED: 3 file(s) differ" in out_text
    assert "How to obtain tiny-scenes" in result.stderr
    assert not (project / ".vcat" / "settings.yaml").exists()
    payload = json.loads(
        vcat("verify", "tiny-scenes", "--root", str(root), "--manifest", str(out), "--json").stdout
    )
    assert payload["ok"] is False
    assert payload["counts"] == {
        "ok": 1, "missing": 1, "unexpected": 1, "truncated": 1, "oversized": 0,
        "checksum_mismatch": 0, "html_instead_of_file": 0, "not_a_file": 0,
    }  # fmt: skip
    assert payload["failures"][0] == {
        "path": "a.bin",
        "status": "truncated",
        "expected_size": 10,
        "actual_size": 5,
        "expected_digest": md5(b"a" * 10),
        "actual_digest": None,
        "detail": None,
    }
    assert set(payload["advice"]) == {"missing", "unexpected", "truncated"}


def test_cli_malformed_manifest_exits_2_with_its_line(project: Path) -> None:
    root = tree(project / "scenes", {"a.bin": b"a"})
    bad = project / "bad.tsv"
    bad.write_text("# vcat-manifest 1 algorithm=md5\nnot a line\n")
    result = vcat("verify", "tiny-scenes", "--root", str(root), "--manifest", str(bad))
    assert result.exit_code == 2
    assert f"{bad}:2: expected 3 tab-separated fields" in result.stderr


def test_cli_refuses_a_manifest_inside_the_tree(project: Path) -> None:
    root = tree(project / "scenes", {"a.bin": b"a"})
    result = vcat(
        "manifest", "build", "tiny-scenes", "--root", str(root), "--out", str(root / "m.tsv")
    )
    assert result.exit_code == 2
    assert "must not be written inside" in result.stderr
