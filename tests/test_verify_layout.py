"""Layout checks on real trees, through the API and through `vcat verify`."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vcat.catalog.loader import load_entry
from vcat.catalog.schema import DatasetEntry
from vcat.cli import app
from vcat.settings import SETTINGS_ENV
from vcat.verify.layout import (
    LayoutReport,
    NoLayout,
    RuleSpec,
    RuleStatus,
    check_layout,
    check_rules,
)

# A manual dataset in the style of catalog/datasets/megadepth-v1.yaml.
SCENES = """\
title: Tiny scenes
description: A few scenes of photos, arranged by hand.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: manual
  url: https://example.org/tiny-scenes
  instructions: >
    Download "Tiny scenes" from the project page and arrange it with one folder per
    scene (`0000`, `0001`, ...) each holding `images/`.
sources:
  - name: pairs
    url: https://example.org/tiny-scenes/pairs.txt
    filename: pairs.txt
    checksum: unpublished
    unpack_to: lists
layout:
  rules:
    - glob: "[0-9][0-9][0-9][0-9]"
      type: dir
      min: 1
      max: 3
      description: one folder per scene id
    - glob: "[0-9][0-9][0-9][0-9]/images/*.jpg"
      min: 2
      description: the scene's photos
    - glob: "calibration.txt"
      count: 1
"""

# Public files only: the expected tree comes from the sources.
DOWNLOADS = """\
title: Downloads
description: Two public files, one of them an archive.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: public
sources:
  - name: list
    url: https://example.org/d/list.txt
    filename: list.txt
    checksum: unpublished
    unpack_to: lists
  - name: images
    url: https://example.org/d/images.tar.gz
    filename: images.tar.gz
    checksum: unpublished
    archive: tar.gz
    unpack_to: images
"""

NOTHING = """\
title: Nothing
description: Declares neither a layout nor sources.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: public
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Path:
    folder = tmp_path / "catalog" / "datasets"
    folder.mkdir(parents=True)
    for name, text in {"tiny-scenes": SCENES, "downloads": DOWNLOADS, "nothing": NOTHING}.items():
        (folder / f"{name}.yaml").write_text(text)
    return tmp_path / "catalog"


def entry(catalog: Path, name: str) -> DatasetEntry:
    spec = load_entry(catalog / "datasets" / f"{name}.yaml").spec
    assert isinstance(spec, DatasetEntry)
    return spec


def make(root: Path, *paths: str) -> Path:
    """Create ``paths`` under ``root``: names ending in '/' are folders, others small files."""
    for path in paths:
        target = root / path
        if path.endswith("/"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(b"x")
    return root


def good_scenes(root: Path) -> Path:
    return make(
        root,
        "0000/images/a.jpg",
        "0000/images/b.jpg",
        "0001/images/c.jpg",
        "0001/depths/c.h5",  # inside a folder a dir rule claims: accounted for
        "calibration.txt",
        "lists/pairs.txt",  # a source's destination: accounted for
    )


def found(report: LayoutReport) -> dict[str, tuple[int, str]]:
    return {r.spec.glob: (r.found, r.status.value) for r in report.rules}


# --- the API ------------------------------------------------------------------------------


def test_a_complete_tree_passes(catalog: Path, tmp_path: Path) -> None:
    report = check_layout(good_scenes(tmp_path / "root"), entry(catalog, "tiny-scenes"))
    assert report.ok
    assert found(report) == {
        "[0-9][0-9][0-9][0-9]": (2, "ok"),
        "[0-9][0-9][0-9][0-9]/images/*.jpg": (3, "ok"),
        "calibration.txt": (1, "ok"),
        "lists/pairs.txt": (1, "ok"),
    }
    assert report.derived_from == "layout"
    assert (report.extras, report.extra_count, report.errors) == ([], 0, [])
    assert report.files == 5  # 0001/depths is not entered: no rule can match inside it


def test_missing_too_few_and_too_many(catalog: Path, tmp_path: Path) -> None:
    root = make(tmp_path / "root", "0000/images/a.jpg", "0001/", "0002/", "0003/")
    report = check_layout(root, entry(catalog, "tiny-scenes"))
    assert not report.ok
    assert found(report) == {
        "[0-9][0-9][0-9][0-9]": (4, "too_many"),
        "[0-9][0-9][0-9][0-9]/images/*.jpg": (1, "too_few"),
        "calibration.txt": (0, "missing"),
        "lists/pairs.txt": (0, "ok"),  # optional: fetched files may come later
    }
    assert [r.spec.glob for r in report.missing] == ["calibration.txt"]


def test_extras_are_the_topmost_unaccounted_paths(catalog: Path, tmp_path: Path) -> None:
    root = good_scenes(tmp_path / "root")
    make(root, "README.md", "MegaDepth_v1/0000/images/x.jpg", "lists/other.txt", "0000/images/")
    os.mkdir(root / "0000" / "images" / "d.jpg")  # a folder is not a file
    report = check_layout(root, entry(catalog, "tiny-scenes"))
    assert report.ok, "extras alone do not fail a tree"
    assert [(e.path, e.type) for e in report.extras] == [
        ("MegaDepth_v1", "dir"),
        ("README.md", "file"),
        ("lists/other.txt", "file"),
    ]
    assert report.extra_count == 3
    assert found(report)["[0-9][0-9][0-9][0-9]/images/*.jpg"] == (3, "ok")


def test_extras_are_counted_all_and_listed_first_by_path(tmp_path: Path) -> None:
    root = make(tmp_path / "root", "keep.txt", *(f"stray-{i:03d}.bin" for i in range(120)))
    report = check_rules(root, [RuleSpec("keep.txt", "file", 1, 1)], extras_listed=50)
    assert report.extra_count == 120
    assert [e.path for e in report.extras] == [f"stray-{i:03d}.bin" for i in range(50)]


def test_star_stays_in_one_component_and_double_star_spans_any(tmp_path: Path) -> None:
    root = make(tmp_path / "root", "a.jpg", "x/b.jpg", "x/y/c.jpg", ".hidden.jpg", "x/notes.txt")
    report = check_rules(
        root,
        [
            RuleSpec("*.jpg", "file", 0, None),
            RuleSpec("**/*.jpg", "file", 0, None),
            RuleSpec("x/**", "file", 0, None),
            RuleSpec("x/*", "dir", 0, None),
            RuleSpec("X/*.jpg", "file", 0, None),  # case-sensitive
        ],
    )
    assert [r.found for r in report.rules] == [2, 4, 3, 1, 0]
    assert report.extra_count == 0


def test_symlinks_inside_are_followed_and_loops_reported(tmp_path: Path) -> None:
    root = make(tmp_path / "root", "0000/images/a.jpg", "store/0005/images/z.jpg")
    (root / "0005").symlink_to(root / "store" / "0005", target_is_directory=True)
    (root / "0000" / "images" / "b.jpg").symlink_to("a.jpg")
    (root / "0000" / "images" / "loop").symlink_to(root, target_is_directory=True)
    (root / "0000" / "images" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    report = check_rules(root, [RuleSpec("*/images/*.jpg", "file", 1, None)])
    assert report.rules[0].found == 3
    assert report.errors == [
        "0000/images/gone.jpg: broken symbolic link",
        "0000/images/loop: symbolic link to an enclosing folder; not followed",
    ]
    assert not report.ok


def test_symlinks_out_of_the_tree_are_reported_not_followed(tmp_path: Path) -> None:
    elsewhere = make(tmp_path / "disk2", "0005/images/z.jpg", "secret.jpg")
    root = make(tmp_path / "root", "0000/images/a.jpg")
    (root / "0005").symlink_to(elsewhere / "0005", target_is_directory=True)
    (root / "0000" / "images" / "s.jpg").symlink_to(elsewhere / "secret.jpg")
    (root / "everything").symlink_to("/", target_is_directory=True)
    (root / "up").symlink_to("..", target_is_directory=True)
    report = check_rules(root, [RuleSpec("**", "file", 1, None)])
    assert report.rules[0].found == 1  # only 0000/images/a.jpg
    assert [error.split(":")[0] for error in report.errors] == [
        "0000/images/s.jpg",
        "0005",
        "everything",
        "up",
    ]
    assert all("outside the tree; not followed" in error for error in report.errors)
    assert not report.ok


def test_fifos_sockets_and_devices_are_named_never_opened(tmp_path: Path) -> None:
    import socket

    root = make(tmp_path / "root", "0000/images/a.jpg")
    os.mkfifo(root / "0000" / "images" / "pipe.jpg")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(root / "0000" / "images" / "sock.jpg"))
        (root / "0000" / "images" / "zero.jpg").symlink_to("/dev/zero")
        report = check_rules(root, [RuleSpec("*/images/*.jpg", "file", 1, None)])
    assert report.rules[0].found == 1
    assert report.errors == [
        "0000/images/pipe.jpg: a FIFO, not a file; not opened",
        "0000/images/sock.jpg: a socket, not a file; not opened",
        "0000/images/zero.jpg: symbolic link to /dev/zero, not a file or folder; not followed",
    ]
    assert not report.ok


def test_sources_give_the_tree_when_there_is_no_layout(catalog: Path, tmp_path: Path) -> None:
    root = make(tmp_path / "root", "lists/list.txt", "images/")
    report = check_layout(root, entry(catalog, "downloads"))
    assert report.derived_from == "sources"
    assert found(report) == {"lists/list.txt": (1, "ok"), "images/**": (0, "missing")}
    make(root, "images/sub/one.png", "images.tar.gz")
    report = check_layout(root, entry(catalog, "downloads"))
    assert report.ok
    assert [e.path for e in report.extras] == ["images.tar.gz"]


def test_source_names_with_glob_characters_match_literally(tmp_path: Path) -> None:
    spec = DatasetEntry.model_validate(
        {
            "title": "t",
            "description": "d",
            "licence": {"name": "x", "redistribution": "allowed"},
            "access": {"kind": "public"},
            "sources": [
                {
                    "name": "odd",
                    "url": "https://example.org/a",
                    "filename": "list[1]*.txt",
                    "checksum": "unpublished",
                }
            ],
        }
    )
    root = make(tmp_path / "root", "list1x.txt")
    assert not check_layout(root, spec).ok
    make(root, "list[1]*.txt")
    assert check_layout(root, spec).ok


def test_no_layout_and_no_sources_is_said_plainly(catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(NoLayout, match="no layout and no sources"):
        check_layout(tmp_path, entry(catalog, "nothing"))


def test_root_must_be_a_folder(catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        check_layout(tmp_path / "absent", entry(catalog, "tiny-scenes"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_layout(tmp_path / "file", entry(catalog, "tiny-scenes"))


def test_rule_bounds_in_words() -> None:
    assert RuleSpec("a", "file", 90, 90).expected() == "exactly 90"
    assert RuleSpec("a", "file", 1, None).expected() == "at least 1"
    assert RuleSpec("a", "file", 2, 5).expected() == "2 to 5"
    assert RuleSpec("a", "file", 0, 3).expected() == "at most 3"
    assert RuleSpec("a", "file", 0, None).expected() == "optional"
    assert RuleStatus.MISSING == "missing"


# --- the command line ---------------------------------------------------------------------

runner = CliRunner()


def vcat(catalog: Path, settings: Path, *args: str) -> Result:
    result = runner.invoke(
        app,
        [*args, "--catalog", str(catalog)],
        env={"COLUMNS": "200", SETTINGS_ENV: str(settings)},
    )
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_cli_passing_tree_is_remembered(catalog: Path, tmp_path: Path) -> None:
    root = good_scenes(tmp_path / "root")
    settings = tmp_path / "settings.yaml"
    result = vcat(catalog, settings, "verify", "tiny-scenes", "--root", str(root))
    assert result.exit_code == 0, result.output
    assert "OK: 4 rule(s) met" in result.stdout
    assert "remembered" in result.stderr
    assert f"tiny-scenes: {root}" in settings.read_text()
    again = vcat(catalog, settings, "verify", "tiny-scenes", "--json")
    assert again.exit_code == 0
    payload = json.loads(again.stdout)
    assert payload["format"] == "vcat.verify.layout/1"
    assert payload["root"] == str(root)
    assert payload["ok"] is True and payload["remembered"] is False


def test_cli_failing_tree_says_what_and_how_to_obtain(catalog: Path, tmp_path: Path) -> None:
    root = make(tmp_path / "root", "0000/images/a.jpg", "README.md")
    settings = tmp_path / "settings.yaml"
    result = vcat(catalog, settings, "verify", "tiny-scenes", "--root", str(root))
    assert result.exit_code == 1
    out = result.stdout
    assert "missing" in out and "calibration.txt" in out
    assert "too few" in out and "at least 2" in out
    assert "1 path(s) match no rule" in out and "README.md" in out
    assert "FAILED: 2 of 4 rule(s) not met" in out
    assert "How to obtain tiny-scenes" in result.stderr
    assert "one folder per" in result.stderr and "https://example.org/tiny-scenes" in result.stderr
    assert not settings.exists(), "a failing root is not remembered"


def test_cli_json_lists_rules_and_extras(catalog: Path, tmp_path: Path) -> None:
    root = make(tmp_path / "root", "0000/images/a.jpg", "README.md")
    result = vcat(
        catalog, tmp_path / "s.yaml", "verify", "tiny-scenes", "--root", str(root), "--json"
    )
    assert result.exit_code == 1
    payload = json.loads(result.stdout)
    assert payload["format"] == "vcat.verify.layout/1"
    assert payload["ok"] is False
    rules = {r["glob"]: r for r in payload["rules"]}
    assert rules["calibration.txt"] == {
        "glob": "calibration.txt",
        "type": "file",
        "origin": "layout",
        "min": 1,
        "max": 1,
        "expected": "exactly 1",
        "found": 0,
        "status": "missing",
        "description": None,
    }
    assert rules["lists/pairs.txt"]["origin"] == "source"
    assert payload["extras"] == {"count": 1, "listed": [{"path": "README.md", "type": "file"}]}
    assert payload["access"]["kind"] == "manual"
    assert payload["scanned"] == {"files": 2, "dirs": 3}


def test_cli_strict_fails_on_extras(catalog: Path, tmp_path: Path) -> None:
    root = good_scenes(tmp_path / "root")
    make(root, "notes.txt")
    settings = tmp_path / "s.yaml"
    assert vcat(catalog, settings, "verify", "tiny-scenes", "--root", str(root)).exit_code == 0
    strict = vcat(catalog, settings, "verify", "tiny-scenes", "--root", str(root), "--strict")
    assert strict.exit_code == 1
    assert "notes.txt" in strict.stdout


def test_cli_hints_at_a_root_one_level_too_high(catalog: Path, tmp_path: Path) -> None:
    root = tmp_path / "download"
    good_scenes(root / "TinyScenes")
    result = vcat(catalog, tmp_path / "s.yaml", "verify", "tiny-scenes", "--root", str(root))
    assert result.exit_code == 1
    assert f"Try --root {root / 'TinyScenes'}" in result.stdout


def test_cli_unknown_name_suggests_close_ones(catalog: Path, tmp_path: Path) -> None:
    result = vcat(catalog, tmp_path / "s.yaml", "verify", "tiny-scene", "--root", str(tmp_path))
    assert result.exit_code == 2
    assert "tiny-scenes" in result.stderr


def test_cli_without_a_root_says_how_to_give_one(catalog: Path, tmp_path: Path) -> None:
    result = vcat(catalog, tmp_path / "s.yaml", "verify", "tiny-scenes")
    assert result.exit_code == 2
    assert "no root is known for 'tiny-scenes': pass --root DIR" in result.stderr


def test_cli_absent_root_fails_with_instructions(catalog: Path, tmp_path: Path) -> None:
    result = vcat(
        catalog, tmp_path / "s.yaml", "verify", "tiny-scenes", "--root", str(tmp_path / "no")
    )
    assert result.exit_code == 1
    assert "does not exist" in result.stderr and "How to obtain" in result.stderr


def test_cli_entry_without_layout_or_sources(catalog: Path, tmp_path: Path) -> None:
    result = vcat(catalog, tmp_path / "s.yaml", "verify", "nothing", "--root", str(tmp_path))
    assert result.exit_code == 2
    assert "nothing" in result.stderr and "Traceback" not in result.output


def test_cli_bad_settings_file_is_reported_with_its_line(catalog: Path, tmp_path: Path) -> None:
    settings = tmp_path / "s.yaml"
    settings.write_text(
        textwrap.dedent("""\
        roots:
          tiny-scenes: relative/path
        """)
    )
    result = vcat(catalog, settings, "verify", "tiny-scenes")
    assert result.exit_code == 2
    assert f"{settings}:2: error: roots.tiny-scenes:" in result.stderr
    assert "absolute path" in result.stderr
