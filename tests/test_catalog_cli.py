"""The shipped catalog through the CLI: list, show, docs and schema, as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from vcat.catalog.docs import render_pages
from vcat.catalog.loader import load_catalog
from vcat.catalog.schema_export import render_schemas
from vcat.cli import app
from vcat.generated import stale_files

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog"

# The Flickr guide's table: subset -> (published size, MD5, Drive file id).
FLICKR_GUIDE = {
    "0.1M": ("2.3Mb", "2da381ffaba9b37f417b06fdc807e426", "1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y"),
    "0.2M": ("4.5Mb", "d12a135397ae35ef4b10c7bcc04d0d39", "1M1NAxkDvlf0Lpxvq2FqrgNSeTMz0JL2Y"),
    "0.5M": ("11.3Mb", "e98a00e9162c3e627b8316600c0d38e5", "1H49Ua7uorj6CCVutFqrlPB9l5djaSpc0"),
    "1M": ("22.6Mb", "e35de83b63308b8ad4a78c4667c3e4f5", "1YK9x9KLPr_v_Doq7NqmPMZDxodG8wYEI"),
    "2M": ("45.3Mb", "02b847509b2fa43d9da8e17f4ed9474c", "1w8GSMXgft0d0seZgyXdUdJu_gKu9qEdW"),
    "5M": ("113.2Mb", "9ab4fe89352f92c16f948e91ea2418d4", "11PyaJgdF1oTDJs6kq6gqSwI4B1xg9ccD"),
    "10M": ("226.4Mb", "5486eaf81d71e65639c03a57546deba4", "1oiIvHMuOJnOsRWysLaj1eM1ePuci-FyU"),
    "20M": ("452.9Mb", "9b244d66d30a51b8b5b67c2db394a03b", "1Fai4qFXQhjnycSIYPQSabSLV6rNvNS-n"),
    "50M": ("1.11Gb", "0c5b1b47fc80f66fa31924c8e71b49c0", "1VJdOaZQ2dTmhlt2vIlQsss3MdPIPqs8A"),
    "100M": ("2.21Gb", "a4ae31661bbb9feacf60a2218750f1a7", "1r0WJDmCA7KYscdR9nOXO2Ej8uTbvXlWK"),
    "200M": ("4.42Gb", "e82943df78b871781cc1e814405cb83c", "1_1j1s1TO7sncIBRpadr-SUm4fQ9WAv1R"),
    "500M": ("10.03Gb", "6a2a645c49f5983711bc3a73f0583216", "13Sa4jjOrz78xE5ZoOZY3qTuJP7k929A6"),
}

REQUIRED_DATASETS = {
    "arkitscenes", "megadepth-v1", "megadepth-undistorted", "3dstreetview", "indoorvl",
    "croco-crop-metadata", "flickr-cc", "kinetics-400", "krishna-cam", "imagenet-full",
    "disc21", "augly-fonts", "augly-emoji", "vsc2022", "eth3d", "inloc", "matterport3d",
}  # fmt: skip
REQUIRED_MODELS = {"dinov2-vitl14", "vop-best", "locus-dino-rad0.2m", "locus-dino-rad0.6m"}

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args), env={"COLUMNS": "200"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout


def run_json(*args: str) -> dict:
    code, out = run(*args, "--json", "--catalog", str(CATALOG))
    assert code == 0, out
    return json.loads(out)


def test_list_names_every_entry_of_the_guides() -> None:
    listing = run_json("catalog", "list")
    assert listing["format"] == "vcat.catalog.list/1"
    kinds = {e["name"]: e["kind"] for e in listing["entries"]}
    assert {n for n, k in kinds.items() if k == "dataset"} >= REQUIRED_DATASETS
    assert {n for n, k in kinds.items() if k == "model"} >= REQUIRED_MODELS


def test_list_filters_by_kind() -> None:
    models = run_json("catalog", "list", "--kind", "model")["entries"]
    assert {e["name"] for e in models} == REQUIRED_MODELS | {"demo-croco-vit"}
    assert all(e["kind"] == "model" for e in models)


def test_flickr_entry_carries_the_guide_table_exactly() -> None:
    shown = run_json("catalog", "show", "flickr-cc")
    assert shown["format"] == "vcat.catalog.entry/1"
    entry = shown["entry"]
    sources = {s["name"]: s for s in entry["sources"]}
    subsets = {s["name"]: s for s in entry["subsets"]}
    assert set(subsets) == set(FLICKR_GUIDE)
    for name, (size, md5, drive_id) in FLICKR_GUIDE.items():
        source = sources[subsets[name]["list_file"]["source"]]
        assert source["checksum"] == f"md5:{md5}", name
        assert source["size_published"] == size, name
        assert f"/d/{drive_id}/" in source["url"], name
        assert source["filename"] == f"flickr-{name}.tsv.gz"


def test_indoorvl_counts_published_and_released() -> None:
    entry = run_json("catalog", "show", "croco-crop-metadata")["entry"]
    indoorvl = next(s for s in entry["subsets"] if s["name"] == "indoorvl")
    assert indoorvl["count"]["published"] == 1_593_689
    assert indoorvl["count"]["released"] == 144_228


def test_every_real_checksum_says_where_it_comes_from() -> None:
    # A checksum is published upstream (with where) or recorded from a trusted download (with
    # the day); 'unpublished' needs neither. The demo world's files are built and published by
    # vcat itself (`vcat demo build --record`), so its checksums need no provenance.
    catalog = load_catalog([CATALOG])
    for entry in catalog.entries:
        for source in entry.spec.all_sources():
            if source.checksum == "unpublished":
                assert source.checksum_source is None, (entry.name, source.name)
            elif not entry.name.startswith("demo-"):
                assert source.checksum_source is not None, (entry.name, source.name)
    flickr = catalog.get("flickr-cc").spec.all_sources()
    assert {s.checksum_source.kind for s in flickr if s.checksum_source} == {"published"}


def test_show_renders_a_readable_page() -> None:
    code, out = run("catalog", "show", "matterport3d", "--catalog", str(CATALOG))
    assert code == 0
    assert "Matterport3D" in out
    assert "forbidden" in out
    assert "undistorted_camera_parameters" in out


def test_show_unknown_name_suggests_close_ones() -> None:
    result = runner.invoke(app, ["catalog", "show", "flickr", "--catalog", str(CATALOG)])
    assert result.exit_code == 2
    assert "flickr-cc" in result.stderr


def test_shipped_catalog_lints_clean() -> None:
    code, out = run("catalog", "lint", str(CATALOG))
    assert code == 0, out
    lines = out.splitlines()
    assert lines, "the catalog records upstream defects that lint must warn about"
    assert all(": warning: " in line for line in lines), out
    # The shared links the guides really use are reported, with file and line.
    assert any(line.startswith("catalog/datasets/flickr-cc.yaml:") for line in lines) or any(
        "flickr-cc.yaml:" in line for line in lines
    )
    assert any("kinetics-400.yaml:" in line and "shared" in line for line in lines)


def test_committed_docs_match_the_catalog() -> None:
    catalog = load_catalog([CATALOG])
    assert not catalog.problems
    stale = stale_files(REPO / "docs" / "catalog", render_pages(catalog.entries))
    assert not stale, f"regenerate with `vcat catalog docs --out docs/catalog`: {stale}"


def test_committed_json_schema_matches_the_models() -> None:
    stale = stale_files(CATALOG / "schema", render_schemas())
    assert not stale, f"regenerate with `vcat catalog schema --out catalog/schema`: {stale}"


@pytest.mark.parametrize("kind", ["dataset", "model"])
def test_json_schema_accepts_every_shipped_entry(kind: str) -> None:
    import yaml

    schema = json.loads((CATALOG / "schema" / f"{kind}.schema.json").read_text())
    for path in sorted((CATALOG / f"{kind}s").glob("*.yaml")):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_json_schema_rejects_unknown_keys() -> None:
    schema = json.loads((CATALOG / "schema" / "dataset.schema.json").read_text())
    import yaml

    entry = yaml.safe_load((CATALOG / "datasets" / "eth3d.yaml").read_text())
    entry["license"] = "typo"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(entry, schema)


def test_docs_command_writes_and_checks(tmp_path: Path) -> None:
    out = tmp_path / "pages"
    code, _ = run("catalog", "docs", "--out", str(out), "--catalog", str(CATALOG))
    assert code == 0
    assert (out / "index.md").is_file()
    assert (out / "flickr-cc.md").read_text().count("md5:") == 12
    code, _ = run("catalog", "docs", "--out", str(out), "--check", "--catalog", str(CATALOG))
    assert code == 0
    (out / "stray.md").write_text("left over\n")
    (out / "eth3d.md").write_text("edited by hand\n")
    code, out_text = run("catalog", "docs", "--out", str(out), "--check", "--catalog", str(CATALOG))
    assert code == 1
    assert "stray.md: stale" in out_text and "eth3d.md: stale" in out_text


def test_docs_refuses_an_invalid_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "datasets").mkdir(parents=True)
    (catalog / "datasets" / "broken.yaml").write_text("title: [unclosed\n")
    out = tmp_path / "pages"
    result = runner.invoke(app, ["catalog", "docs", "--out", str(out), "--catalog", str(catalog)])
    assert result.exit_code == 1
    assert "broken.yaml:" in result.stderr
    assert not out.exists()


def test_catalog_is_found_from_a_subfolder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    monkeypatch.chdir(REPO / "docs")
    code, out = run("catalog", "list", "--json")
    assert code == 0
    assert "flickr-cc" in out


def test_outside_a_project_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["catalog", "list"])
    assert result.exit_code == 2
    assert "VCAT_CATALOG" in result.stderr


def _ignored_by_git(paths: set[str]) -> set[str]:
    """Those of ``paths`` that git ignores: content DVC keeps out of git (data/, models/, gate
    reports), which a fresh clone does not have."""
    if not paths:
        return set()
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", *sorted(paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    return set(done.stdout.split())


def _stale(change: object, absent_ok: set[str]) -> bool:
    """A `dvc status` change that a fresh clone without DVC's content does not explain:
    anything but an output or dependency in ``absent_ok`` that is deleted or not cached."""
    if not isinstance(change, dict):
        return True  # "changed command", "always changed"
    for kind, paths in change.items():
        if kind not in ("changed deps", "changed outs"):
            return True  # params, command
        for path, state in paths.items():
            if not (path in absent_ok and state in ("deleted", "not in cache")):
                return True
    return False


def test_pipeline_lock_is_current() -> None:
    """dvc.lock matches the committed code, params and catalog; only what DVC keeps out of git
    (data, models, gate reports) may be missing (the end-to-end test reproduces it and
    compares the lock)."""
    dvc = Path(sys.executable).with_name("dvc")
    status = subprocess.run(
        [str(dvc), "status", "--json"], cwd=REPO, capture_output=True, text=True, check=True
    )
    statuses = json.loads(status.stdout)
    missing = {
        path
        for changes in statuses.values()
        for change in changes
        if isinstance(change, dict)
        for paths in change.values()
        if isinstance(paths, dict)
        for path, state in paths.items()
        if state in ("deleted", "not in cache")
    }
    absent_ok = _ignored_by_git(missing)
    stale = {
        stage: changes
        for stage, changes in statuses.items()
        if any(_stale(change, absent_ok) for change in changes)
    }
    assert stale == {}, f"run `dvc repro` and commit dvc.lock: {stale}"


def test_show_of_an_invalid_entry_names_its_problems(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "datasets").mkdir(parents=True)
    (catalog / "datasets" / "half.yaml").write_text("title: Half\ndescription: x\nlicense: MIT\n")
    result = runner.invoke(app, ["catalog", "show", "half", "--catalog", str(catalog)])
    assert result.exit_code == 2
    assert "half.yaml:3: error: unknown key 'license'" in result.stderr
    assert "entry 'half' is invalid" in result.stderr
    listed = runner.invoke(app, ["catalog", "list", "--json", "--catalog", str(catalog)])
    assert listed.exit_code == 0
    assert json.loads(listed.stdout)["entries"] == []
    assert "run `vcat catalog lint`" in listed.stderr
