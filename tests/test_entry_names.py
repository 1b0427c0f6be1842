"""Every command that takes an entry name answers a wrong one alike: exit 2, one message."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from vcat.cli import app

REPO = Path(__file__).resolve().parents[1]
CATALOG = REPO / "catalog"
runner = CliRunner()


def commands(name: str, catalog: Path, tmp: Path) -> dict[str, list[str]]:
    """Each command that takes an entry name, called with ``name``."""
    where = ["--catalog", str(catalog)]
    return {
        "catalog show": ["catalog", "show", name, *where],
        "catalog show --json": ["catalog", "show", name, "--json", *where],
        "fetch": ["fetch", name, "--dest", str(tmp / "dest"), *where],
        "verify": ["verify", name, "--root", str(tmp), *where],
        "verify --manifest": [
            "verify", name, "--root", str(tmp), "--manifest", str(tmp / "m.tsv"), *where
        ],
        "status": ["status", name, *where],
        "status --json": ["status", name, "--json", *where],
        "manifest build": ["manifest", "build", name, "--root", str(tmp), *where],
        "stage dataset-stats": [
            "stage", "dataset-stats", name, str(tmp), str(tmp / "stats.json"), *where
        ],
    }  # fmt: skip


CASES = list(commands("x", CATALOG, Path("/")))


@pytest.mark.parametrize("command", CASES)
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flickr-c", "error: no catalog entry named 'flickr-c'. Did you mean flickr-cc"),
        ("no-such-entry", "error: no catalog entry named 'no-such-entry'."),
        ("Flickr-CC", "error: no catalog entry named 'Flickr-CC'. Did you mean flickr-cc"),
    ],
    ids=["close name", "no close name", "wrong case"],
)
def test_an_unknown_entry_exits_2_with_one_message(
    command: str, name: str, message: str, tmp_path: Path
) -> None:
    result = runner.invoke(app, commands(name, CATALOG, tmp_path)[command])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(message), result.stderr
    assert result.stdout == ""
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", CASES)
def test_an_entry_that_does_not_load_exits_2_naming_its_problem(
    command: str, tmp_path: Path
) -> None:
    catalog = tmp_path / "catalog"
    (catalog / "datasets").mkdir(parents=True)
    (catalog / "datasets" / "half.yaml").write_text("title: Half\ndescription: x\nlicense: MIT\n")
    result = runner.invoke(app, commands("half", catalog, tmp_path)[command])
    assert result.exit_code == 2, result.output
    assert "half.yaml:3: error: unknown key 'license'" in result.stderr
    assert result.stderr.rstrip().endswith(
        "error: entry 'half' is invalid; fix the problems above"
    ), result.stderr
    assert result.stdout == ""
