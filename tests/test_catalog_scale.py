"""A catalog of many entries: the parse cache, loading one entry by name, grouped lint.

Every test builds a real project (``dvc.yaml`` and ``catalog/``) in a temporary folder and
runs the real loader or the real ``vcat`` command on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from vcat.catalog import parse_cache, yaml_source
from vcat.catalog.loader import load_around, load_catalog
from vcat.catalog.parse_cache import CACHE_ENV, CACHE_FOLDER, cache_for
from vcat.catalog.yaml_source import PARSER_ENV
from vcat.cli import app

DATASET = """\
title: {title}
description: Entry {name} of a large catalog.
licence:
  name: CC-BY-4.0
  redistribution: allowed
access:
  kind: public
sources:
  - name: images
    url: {url}
    filename: images.zip
    checksum: {checksum}
    archive: zip
{extra}"""

MODEL = """\
title: A model
description: Trained on {dataset}.
licence:
  name: MIT
  redistribution: allowed
architecture:
  library: timm
  name: resnet50
weights:
  name: checkpoint
  url: https://example.org/model/{name}.pth
  filename: model.pth
  checksum: unpublished
trained_on: [{dataset}]
"""

PUBLISHED = "    checksum_source: {kind: published, where: the guide}\n"


def dataset(
    name: str, url: str | None = None, checksum: str = "unpublished", title: str | None = None
) -> str:
    return DATASET.format(
        name=name,
        title=title or f"Dataset {name}",
        url=url or f"https://example.org/{name}/images.zip",
        checksum=checksum,
        extra="" if checksum == "unpublished" else PUBLISHED,
    )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project, made the working directory, with no vcat variables set."""
    for variable in (CACHE_ENV, PARSER_ENV, "VCAT_CATALOG", "VCAT_SETTINGS"):
        monkeypatch.delenv(variable, raising=False)
    root = tmp_path.resolve() / "project"
    (root / "catalog" / "datasets").mkdir(parents=True)
    (root / "catalog" / "models").mkdir()
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    return root


def add(project: Path, name: str, text: str, kind: str = "datasets") -> Path:
    path = project / "catalog" / kind / f"{name}.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def cached_files(project: Path) -> list[Path]:
    folder = project / CACHE_FOLDER
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def invoke(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def titles(project: Path) -> dict[str, str]:
    catalog = load_catalog([project / "catalog"])
    assert catalog.problems == []
    return {entry.name: entry.spec.title for entry in catalog.entries}


# --- the parse cache ------------------------------------------------------------------------


def test_a_second_load_comes_from_the_cache(project: Path) -> None:
    for i in range(5):
        add(project, f"e{i}", dataset(f"e{i}"))
    first = load_catalog([project / "catalog"])
    assert len(cached_files(project)) == 5
    second = load_catalog([project / "catalog"])
    assert [(e.name, e.spec, e.lines.lines) for e in first.entries] == [
        (e.name, e.spec, e.lines.lines) for e in second.entries
    ]
    # Proof that the second load read the cache: a cached document changed in place is used.
    [path] = [p for p in cached_files(project) if '"Dataset e3"' in p.read_text()]
    path.write_text(path.read_text().replace('"Dataset e3"', '"From the cache"'))
    assert titles(project)["e3"] == "From the cache"


def test_an_edit_that_keeps_size_and_mtime_is_seen(project: Path) -> None:
    path = add(project, "alpha", dataset("alpha", title="Alpha"))
    assert titles(project) == {"alpha": "Alpha"}
    before = path.stat()
    path.write_text(dataset("alpha", title="Omega"), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert titles(project) == {"alpha": "Omega"}
    assert len(cached_files(project)) == 2


CORRUPTIONS = {
    "empty": lambda text: "",
    "truncated": lambda text: text[: len(text) // 2],
    "not-json": lambda text: "\x00\xff garbage",
    "a-list": lambda text: "[1, 2, 3]",
    "other-key": lambda text: text.replace('"key":"', '"key":"0'),
    "other-format": lambda text: text.replace('"format":', '"format":9'),
    "line-as-text": lambda text: text.replace('"lines":[', '"lines":["1",'),
    "locations-missing": lambda text: text.replace('"locations"', '"elsewhere"'),
    "deep": lambda text: "[" * 100_000 + "]" * 100_000,
}


@pytest.mark.parametrize("corrupt", list(CORRUPTIONS.values()), ids=list(CORRUPTIONS))
def test_a_corrupt_cache_file_is_ignored_and_replaced(project: Path, corrupt) -> None:
    add(project, "alpha", dataset("alpha", title="Alpha"))
    titles(project)
    [path] = cached_files(project)
    path.write_text(corrupt(path.read_text()), encoding="utf-8", errors="surrogateescape")
    assert titles(project) == {"alpha": "Alpha"}
    payload = json.loads(path.read_text())
    assert payload["key"] == path.stem
    assert payload["data"]["title"] == "Alpha"


def test_a_broken_entry_is_never_cached_and_always_reported(project: Path) -> None:
    add(project, "good", dataset("good"))
    add(project, "broken", dataset("broken") + "unknown_key: 1\n")
    for _ in range(2):
        result = invoke("catalog", "lint", str(project / "catalog"))
        assert result.exit_code == 1, result.output
        assert "catalog/datasets/broken.yaml:14: error: unknown key 'unknown_key'" in (
            result.stdout
        )
    broken_yaml = project / "catalog" / "datasets" / "broken.yaml"
    assert len(cached_files(project)) == 2  # the file parses; the schema refuses it
    broken_yaml.write_text("title: [unclosed\n")
    for _ in range(2):
        result = invoke("catalog", "lint", str(project / "catalog"))
        assert "catalog/datasets/broken.yaml:2: error: invalid YAML" in result.stdout
    assert len(cached_files(project)) == 2


def test_keys_change_with_the_parser_and_the_parser_code(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = add(project, "alpha", dataset("alpha"))
    default = cache_for(path)
    monkeypatch.setenv(PARSER_ENV, "pure")
    pure = cache_for(path)
    assert default is not None and pure is not None
    assert default.folder == pure.folder == project / CACHE_FOLDER
    assert default.tag != pure.tag
    changed = tmp_path / "yaml_source.py"
    changed.write_bytes(Path(yaml_source.__file__).read_bytes() + b"\n# changed\n")
    monkeypatch.setattr(yaml_source, "__file__", str(changed))
    assert parse_cache._tag("libyaml") != default.tag


def test_no_cache_when_off_or_outside_a_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, project: Path
) -> None:
    add(project, "alpha", dataset("alpha"))
    monkeypatch.setenv(CACHE_ENV, "off")
    titles(project)
    assert not (project / ".vcat").exists()
    monkeypatch.delenv(CACHE_ENV)
    loose = tmp_path / "loose" / "catalog"
    (loose / "datasets").mkdir(parents=True)
    (loose / "datasets" / "beta.yaml").write_text(dataset("beta"))
    assert [e.name for e in load_catalog([loose]).entries] == ["beta"]
    assert not list(tmp_path.glob("loose/**/.vcat"))


def test_a_cache_that_cannot_be_written_is_skipped(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = project / "not-a-folder"
    blocker.write_text("a file where the cache folder would be\n")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    add(project, "alpha", dataset("alpha", title="Alpha"))
    assert titles(project) == {"alpha": "Alpha"}
    assert titles(project) == {"alpha": "Alpha"}


@pytest.mark.slow
def test_processes_loading_at_once_share_the_cache(project: Path) -> None:
    for i in range(40):
        add(project, f"e{i:02d}", dataset(f"e{i:02d}"))
    command = [sys.executable, "-c", "from vcat.cli import main; main()", "catalog", "list",
               "--json"]  # fmt: skip
    for _ in range(2):  # first all parse and write at once, then all read
        runs = [
            subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(4)
        ]
        outputs = [run.communicate(timeout=300) for run in runs]
        assert [run.returncode for run in runs] == [0] * 4, outputs[0][1].decode()
        assert len({out for out, _ in outputs}) == 1
        assert len(json.loads(outputs[0][0])["entries"]) == 40
    assert len(cached_files(project)) == 40
    assert list((project / CACHE_FOLDER).glob(".tmp-*")) == []


# --- one entry by name ----------------------------------------------------------------------


def test_one_entry_commands_read_only_that_entry(project: Path) -> None:
    for i in range(30):
        add(project, f"e{i:02d}", dataset(f"e{i:02d}"))
    add(project, "zz-broken", "title: [unclosed\n")
    shown = invoke("catalog", "show", "e07", "--json")
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["name"] == "e07"
    assert "problem(s)" not in shown.stderr  # the broken entry was not read
    assert len(cached_files(project)) == 1
    status = invoke("status", "e11", "--json")
    assert status.exit_code == 0, status.output
    assert {item["entry"] for item in json.loads(status.stdout)["items"]} == {"e11"}
    assert len(cached_files(project)) == 2


def test_references_are_loaded_when_asked_for(project: Path) -> None:
    for i in range(10):
        add(project, f"e{i}", dataset(f"e{i}"))
    add(project, "net", MODEL.format(name="net", dataset="e3"), kind="models")
    result = invoke("status", "net")
    assert result.exit_code == 0, result.output
    assert len(cached_files(project)) == 2  # the model and the dataset it names
    add(project, "lost", MODEL.format(name="lost", dataset="e99"), kind="models")
    result = invoke("status", "lost")
    assert result.exit_code == 2
    assert "reference 'e99': no catalog entry named 'e99'" in result.stderr


@pytest.mark.parametrize(
    "name", ["../datasets/e1", "datasets/e1", "/etc/passwd", "e1\n", "E1", ".e1", ""]
)
def test_names_that_are_not_entry_names_find_nothing(project: Path, name: str) -> None:
    add(project, "e1", dataset("e1"))
    (project / "catalog" / "e1.yaml").write_text(dataset("e1"))  # outside datasets/
    catalog = load_around(project / "catalog", name)
    assert catalog.entries == []
    with pytest.raises(KeyError, match="no catalog entry named"):
        catalog.get(name)
    result = invoke("catalog", "show", name)
    assert result.exit_code == 2
    assert "no catalog entry named" in result.stderr


def test_by_name_picks_the_file_the_whole_catalog_picks(project: Path) -> None:
    add(project, "twin", dataset("twin", title="The dataset"))
    add(project, "twin", MODEL.format(name="twin", dataset="twin"), kind="models")
    add(project, "half", "title: Half\n")  # broken dataset, valid model of the same name
    add(project, "half", MODEL.format(name="half", dataset="twin"), kind="models")
    whole = load_catalog([project / "catalog"])
    for name in ("twin", "half"):
        assert load_around(project / "catalog", name).get(name).path == whole.get(name).path
    broken = load_around(project / "catalog", "half").problems
    assert broken
    assert {p.path for p in broken} == {project / "catalog" / "datasets" / "half.yaml"}


def test_close_names_come_from_the_file_names(project: Path) -> None:
    for name in ("flickr-cc", "flickr-yfcc", "imagenet"):
        add(project, name, dataset(name))
    result = invoke("status", "flickr")
    assert result.exit_code == 2
    assert "Did you mean flickr-cc, flickr-yfcc?" in result.stderr
    assert cached_files(project) == []  # suggesting names reads no entry


# --- lint: one description per shared link --------------------------------------------------


def shared_lines(result: Result, fragment: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if fragment in line]


def test_a_shared_link_is_described_once_naming_every_record(project: Path) -> None:
    url = "https://example.org/shared/list.txt"
    names = [f"e{i}" for i in range(6)]
    for name in names:
        add(project, name, dataset(name, url=url))
    result = invoke("catalog", "lint")
    assert result.exit_code == 0, result.output
    lines = shared_lines(result, "download link shared with")
    assert len(lines) == 6
    [full] = [line for line in lines if line.startswith("catalog/datasets/e0.yaml:10:")]
    for name in names[1:]:
        assert f"{name}:images ({name}.yaml:10)" in full
    for name in names[1:]:
        [line] = [line for line in lines if line.startswith(f"catalog/datasets/{name}.yaml:10:")]
        assert "warning: download link shared with e0:images (e0.yaml:10) and 4 more " in line
        assert not any(f"{other}:images" in line for other in names[1:])


@pytest.mark.slow
def test_lint_output_grows_with_records_not_pairs(project: Path) -> None:
    url = "https://example.org/shared/list.txt"
    count = 300
    for i in range(count):
        add(project, f"e{i:03d}", dataset(f"e{i:03d}", url=url))
    result = invoke("catalog", "lint")
    assert result.exit_code == 0, result.output
    lines = shared_lines(result, "download link shared with")
    assert len(lines) == count
    # One line names all 299 others (about 30 characters each); the rest are short. One line
    # per pair, as before, would be about 300 x 299 x 30 = 2.7 MB.
    assert len(result.stdout) < count * 200 + count * 40


def test_a_checksum_conflict_names_every_record_once(project: Path) -> None:
    url = "https://example.org/shared/list.txt"
    add(project, "a1", dataset("a1", url=url, checksum="md5:" + "a" * 32))
    add(project, "a2", dataset("a2", url=url, checksum="md5:" + "b" * 32))
    add(project, "a3", dataset("a3", url=url, checksum="unpublished"))
    result = invoke("catalog", "lint")
    assert result.exit_code == 1
    lines = shared_lines(result, "different checksums")
    assert len(lines) == 3
    assert all(": error: URL is registered with 2 different checksums" in x for x in lines)
    [full] = [line for line in lines if line.startswith("catalog/datasets/a1.yaml")]
    assert "a2:images (a2.yaml:10), a3:images (a3.yaml:10)" in full
    for name in ("a2", "a3"):
        [line] = [line for line in lines if line.startswith(f"catalog/datasets/{name}.yaml")]
        assert "(also used by a1:images (a1.yaml:10) and 1 more record(s), all named there)" in (
            line
        )


ODD_VALUES = """\
astral: "\\U0001F600 \\u00e9"
nan: .nan
inf: -.inf
big: 123456789012345678901234567890
empty: ""
"": empty key
null_key_text: ~
nested: {a: [1, 2.5, true, null, {b: []}]}
"""


def test_any_value_yaml_can_hold_survives_the_cache(project: Path) -> None:
    path = project / "catalog" / "datasets" / "odd.yaml"
    path.write_text(ODD_VALUES, encoding="utf-8")
    cache = cache_for(path)
    assert cache is not None
    parsed = cache.load(path)  # parsed and written
    assert len(cached_files(project)) == 1
    again = cache.load(path)  # read back
    assert again.lines.lines == parsed.lines.lines
    assert again.chars == parsed.chars
    for key, value in parsed.data.items():
        if key == "nan":
            assert again.data[key] != again.data[key]  # NaN
        else:
            assert again.data[key] == value and type(again.data[key]) is type(value), key
    assert again.data["astral"] == "\U0001f600 \u00e9"
