"""`vcat doctor` on real git + DVC checkouts: a dvc.lock or .dvc file that a stopped command
left empty or cut short, DVC config that DVC itself fails on, and cache objects damaged in
place (same size and time, as bit rot leaves them), which `dvc checkout` copies into the
workspace and `dvc pull --force` does not repair. After `vcat doctor --fix` and `dvc pull`
from a real remote the data is right again."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
PIPELINE = """stages:
  combine:
    cmd: mkdir -p out && cat data/src/* > out/all.txt
    deps: [data/src]
    outs: [out/all.txt]
"""
FILES = {f"f{i}.txt": f"line {i} of the source\n".encode() * (i + 1) for i in range(4)}


def run(args: list[str], cwd: Path, code: int = 0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == code, f"{args}: {result.returncode}\n{result.stdout}{result.stderr}"
    return result


def commit(project: Path, message: str) -> None:
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message], project)


def make_checkout(folder: Path, repro: bool = True, push: bool = True) -> Path:
    """git + DVC, data/src added, the pipeline run, pushed to a directory remote, committed."""
    folder.mkdir()
    run(["git", "init", "-q"], folder)
    run([DVC, "init", "-q"], folder)
    run([DVC, "config", "core.analytics", "false"], folder)
    run([DVC, "remote", "add", "-d", "store", str(folder.parent / "store")], folder)
    source = folder / "data" / "src"
    source.mkdir(parents=True)
    for name, data in FILES.items():
        (source / name).write_bytes(data)
    run([DVC, "add", "-q", "data/src"], folder)
    (folder / "dvc.yaml").write_text(PIPELINE)
    if repro:
        run([DVC, "repro", "-q"], folder)
    if push:
        run([DVC, "push", "-q"], folder)
    commit(folder, "data")
    return folder


def doctor(project: Path, monkeypatch: pytest.MonkeyPatch, *args: str, code: int) -> str:
    monkeypatch.chdir(project)
    result = CliRunner().invoke(app, ["doctor", *args], env={"COLUMNS": "400"})
    assert result.exit_code == code, f"{args}: {result.stdout}{result.stderr}"
    assert "Traceback" not in result.output
    return " ".join((result.stdout + result.stderr).split())


def cache_object(project: Path, data: bytes) -> Path:
    digest = hashlib.md5(data).hexdigest()
    return project / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


def rot(path: Path, offset: int = 0) -> None:
    """Flip one byte in place, keeping the size and the modification time (bit rot)."""
    info = path.stat()
    path.chmod(0o644)
    with path.open("r+b") as stream:
        stream.seek(offset)
        byte = stream.read(1)
        stream.seek(offset)
        stream.write(bytes([byte[0] ^ 0x20]))
    path.chmod(0o444)
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


def tree(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.is_file()}


# --- dvc.lock and .dvc files ----------------------------------------------------------------


def test_empty_lock_of_a_real_repro_is_restored_from_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project", push=False)
    lock = project / "dvc.lock"
    committed = lock.read_bytes()
    lock.write_bytes(b"")  # what a `dvc repro` killed while rewriting it leaves
    bare = run([DVC, "status"], project, code=1).stderr
    assert "validation failed" in bare  # DVC: no way out named

    out = doctor(project, monkeypatch, code=1)
    assert (
        "dvc.lock:1: error: dvc.lock is empty; a `dvc repro` stopped while writing it leaves it "
        "so, and every dvc command fails until it is restored from git: `git checkout -- "
        "dvc.lock` (or `vcat doctor --fix`)"
    ) in out
    assert "the cache was not checked" in out
    assert "1 problem(s); `vcat doctor --fix` repairs 1 of them" in out
    assert lock.read_bytes() == b""  # nothing changes without --fix

    out = doctor(project, monkeypatch, "--fix", code=0)
    assert "dvc.lock:1: fixed: dvc.lock is empty" in out
    assert lock.read_bytes() == committed
    assert "up to date" in run([DVC, "status"], project).stdout
    assert "no problems found" in doctor(project, monkeypatch, code=0)


def cut_in_a_key(text: bytes) -> bytes:
    """Stopped half way through writing a key: no longer YAML."""
    return text[: text.index(b"outs:") + 2]


@pytest.mark.parametrize(
    ("damage", "said", "dvc_fails"),
    [
        (cut_in_a_key, "not valid YAML", True),
        (lambda text: b"   \n\n", "dvc.lock holds only blank space", True),
        (lambda text: b"schema: '2.0'\nstages: [1, 2]\n", "not one DVC can read", True),
        (lambda text: text.replace(b"md5:", b"md5: [", 1), "not valid YAML", True),
        (lambda text: b"\xff\xfe" + text, "not UTF-8 text", True),
        # cut inside a hash: DVC reads it, and would rerun the stage on a wrong record
        (lambda text: text[: text.index(b"md5: ") + 12], "not 32 hexadecimal digits", False),
    ],
    ids=["cut", "blank", "schema", "yaml", "encoding", "hash"],
)
def test_damaged_lock_is_named_and_restored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage, said: str, dvc_fails: bool
) -> None:  # type: ignore[no-untyped-def]
    project = make_checkout(tmp_path / "project", push=False)
    lock = project / "dvc.lock"
    committed = lock.read_bytes()
    lock.write_bytes(damage(committed))
    run([DVC, "status"], project, code=1 if dvc_fails else 0)
    out = doctor(project, monkeypatch, code=1)
    assert said in out and "git checkout -- dvc.lock" in out
    doctor(project, monkeypatch, "--fix", code=0)
    assert lock.read_bytes() == committed
    assert "up to date" in run([DVC, "status"], project).stdout


def test_lock_that_git_lacks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = make_checkout(tmp_path / "project", repro=False, push=False)
    run([DVC, "repro", "-q"], project)  # dvc.lock exists, never committed
    lock = project / "dvc.lock"
    text = lock.read_bytes()

    lock.write_bytes(cut_in_a_key(text))
    out = doctor(project, monkeypatch, "--fix", code=1)  # nothing to restore it from
    assert "git has no valid version of it, so fix it by hand (see `git log -- dvc.lock`)" in out
    assert "or delete it and run `dvc repro`" in out
    assert lock.exists()

    lock.write_bytes(b"")
    out = doctor(project, monkeypatch, code=1)
    assert "git has no valid version of it: delete it (`vcat doctor --fix` does)" in out
    doctor(project, monkeypatch, "--fix", code=0)
    assert not lock.exists()
    run([DVC, "repro", "-q"], project)
    assert lock.read_bytes() == text

    # an empty lock committed to git is no version to restore either
    commit(project, "lock")
    lock.write_bytes(b"")
    commit(project, "empty lock")
    assert "git has no valid version" in doctor(project, monkeypatch, code=1)


def test_empty_dvc_file_is_restored_from_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project", push=False)
    tracked = project / "data" / "src.dvc"
    committed = tracked.read_bytes()
    for cut in (b"", committed[:20], committed[:40]):  # empty, before the path, in the hash
        tracked.write_bytes(cut)
        out = doctor(project, monkeypatch, code=1)
        assert "data/src.dvc:1: error: this .dvc file" in out
        assert "a `dvc add` or `dvc commit` stopped" in out
        assert "`git checkout -- data/src.dvc`" in out
        doctor(project, monkeypatch, "--fix", code=0)
        assert tracked.read_bytes() == committed
        assert "up to date" in run([DVC, "status"], project).stdout
    # not in git: the way back is to add the data again
    run(["git", "rm", "-q", "--cached", "data/src.dvc"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "untrack"], project)
    tracked.write_bytes(committed[:20])
    out = doctor(project, monkeypatch, "--fix", code=1)
    assert "git has no valid version of it" in out and "run `dvc add data/src`" in out


def test_not_a_dvc_checkout_cannot_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = doctor(tmp_path, monkeypatch, code=2)
    assert "error: no DVC checkout at or above" in out


# --- DVC's configuration --------------------------------------------------------------------


def test_config_local_left_over_or_open_to_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project", repro=False, push=False)
    local = project / ".dvc" / "config.local"
    local.write_text("['remote \"old\"']\n    secret_access_key = s3cr3t\n")
    local.chmod(0o644)
    out = doctor(project, monkeypatch, code=1)
    assert ".dvc/config.local:1: error: remote 'old' has settings here (lines 1-2)" in out
    assert "run `dvc remote remove --local old`" in out
    assert "readable by others (mode 644)" in out
    assert "the cache was not checked" in out
    out = doctor(project, monkeypatch, "--fix", code=1)  # the leftover is the user's call
    assert (local.stat().st_mode & 0o777) == 0o600
    run([DVC, "remote", "remove", "--local", "old"], project)
    assert "no problems found" in doctor(project, monkeypatch, code=0)


# --- the cache ------------------------------------------------------------------------------


def test_damaged_object_copied_by_checkout_is_found_removed_and_pulled_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project")
    source = project / "data" / "src"
    wanted = tree(source)
    damaged = cache_object(project, FILES["f2.txt"])
    rot(damaged, offset=3)
    (source / "f2.txt").unlink()
    run([DVC, "checkout", "-q"], project)
    assert (source / "f2.txt").read_bytes() != FILES["f2.txt"]  # DVC copied the damage
    run([DVC, "pull", "-q", "--force"], project)
    assert (source / "f2.txt").read_bytes() != FILES["f2.txt"]  # and does not repair it
    assert "up to date" in run([DVC, "status"], project).stdout.lower()  # nor see it

    out = doctor(project, monkeypatch, code=1)
    digest = hashlib.md5(FILES["f2.txt"]).hexdigest()
    assert (
        f".dvc/cache/files/md5/{digest[:2]}/{digest[2:]}:1: error: damaged: the object of "
        f"data/src/f2.txt should have MD5 {digest} but its content has MD5"
    ) in out
    assert "the workspace file(s) data/src/f2.txt are copies of the damaged object" in out
    assert f"checked {1 + len(FILES) + 1} cache object(s)" in out  # listing, files, report

    out = doctor(project, monkeypatch, "--fix", code=0)
    assert "fixed: damaged" in out and "next: run `dvc pull`" in out
    assert not damaged.exists() and not (source / "f2.txt").exists()
    assert tree(source) == {name: data for name, data in wanted.items() if name != "f2.txt"}
    run([DVC, "pull", "-q"], project)
    assert tree(source) == FILES
    assert damaged.read_bytes() == FILES["f2.txt"]
    assert "no problems found" in doctor(project, monkeypatch, code=0)


def test_damaged_folder_listing_and_stage_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project")
    listings = list((project / ".dvc" / "cache" / "files" / "md5").glob("*/*.dir"))
    assert len(listings) == 1
    listing = listings[0]
    text = listing.read_bytes()
    report = (project / "out" / "all.txt").read_bytes()
    rot(listing, offset=len(text) // 2)
    rot(cache_object(project, report), offset=0)

    out = doctor(project, monkeypatch, code=1)
    assert "damaged: the listing of folder data/src should have MD5" in out
    assert "damaged: the object of out/all.txt should have MD5" in out
    # the workspace file was placed before the damage: intact, and kept by --fix
    assert "the workspace file(s) out/all.txt are intact" in out
    assert "2 problem(s); `vcat doctor --fix` repairs 2 of them" in out
    doctor(project, monkeypatch, "--fix", code=0)
    assert not listing.exists() and (project / "out" / "all.txt").read_bytes() == report
    run([DVC, "pull", "-q"], project)
    assert listing.read_bytes() == text
    assert tree(project / "data" / "src") == FILES
    assert "no problems found" in doctor(project, monkeypatch, code=0)


def test_absent_objects_are_counted_not_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = make_checkout(tmp_path / "project")
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    out = doctor(clone, monkeypatch, code=0)
    assert "tracked path(s) have no object in the cache yet (`dvc pull` fetches them)" in out
    assert "no problems found" in out
    run([DVC, "pull", "-q"], clone)
    cache_object(clone, FILES["f0.txt"]).chmod(0o644)
    cache_object(clone, FILES["f0.txt"]).unlink()
    out = doctor(clone, monkeypatch, code=0)
    assert "1 tracked path(s) have no object in the cache yet" in out
    assert "data/src/f0.txt" in out


@pytest.mark.parametrize(
    "entry",
    [
        {"md5": "../../../../../victim.txt", "relpath": "a.txt"},
        {"md5": "0" * 32, "relpath": "../../../victim.txt"},  # project/../victim.txt
        {"md5": "0" * 32, "relpath": "/tmp/victim.txt"},
    ],
    ids=["object-name", "relative-path", "absolute-path"],
)
def test_a_listing_that_names_paths_out_of_the_cache_or_folder_touches_nothing_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, entry: dict[str, str]
) -> None:
    """A listing whose name matches its content but which DVC did not write (a crafted
    commit, a hostile remote) is reported and removed; no path it names is opened or removed."""
    import json

    project = make_checkout(tmp_path / "project", repro=False, push=False)
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"not yours\n")
    listing = json.dumps([entry]).encode()
    digest = hashlib.md5(listing).hexdigest()
    stored = cache_object(project, listing).with_name(digest[2:] + ".dir")
    stored.parent.mkdir(parents=True, exist_ok=True)
    stored.write_bytes(listing)
    # a damaged object with the victim's bytes: the victim would pass for a copy of it
    zeros = project / ".dvc" / "cache" / "files" / "md5" / "00" / ("0" * 30)
    zeros.parent.mkdir(parents=True, exist_ok=True)
    zeros.write_bytes(b"not yours\n")
    (project / "data" / "evil.dvc").write_text(
        f"outs:\n- md5: {digest}.dir\n  size: 10\n  nfiles: 1\n  hash: md5\n  path: evil\n"
    )
    out = doctor(project, monkeypatch, code=1)
    assert "damaged: the listing of folder data/evil" in out and "which DVC does not write" in out
    doctor(project, monkeypatch, "--fix", code=0)
    assert not stored.exists()
    assert victim.read_bytes() == b"not yours\n"
