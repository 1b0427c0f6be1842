"""The demo world with its held-out scene leaked on purpose: a pair of demo04 images added to a
copy of the demo's crop list and cut without exclusions is caught by the audit,
by scene, with both sides' paths; cut with the project's exclusions (params.yaml), the same
list gives no hit."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from stages.croco_crops import main as croco_crops
from vcat.cli.audit import app

REPO = Path(__file__).resolve().parents[1]
CROP_LIST = "data/sources/demo-croco-crops/crop_metadata/MegaDepth/crops_release.txt"
IMAGES = "data/sources/demo-megadepth/Undistorted_SfM"

runner = CliRunner()


def leaked_list(root: Path, destination: Path) -> list[str]:
    """The demo crop list plus one pair of demo04's images; returns the pair's two paths."""
    first, second = sorted((root / IMAGES / "demo04" / "images").glob("*.jpg"))[:2]
    pair = [f"demo04/images/{first.name}", f"demo04/images/{second.name}"]
    text = (root / CROP_LIST).read_text()
    destination.write_text(f"{text}{pair[0]}, {pair[1]}, 0\n10, 110, 10, 110, 20, 120, 20, 120\n")
    return pair


def audit(root: Path, crops: Path, tmp_path: Path) -> tuple[int, dict[str, object]]:
    training = {
        "kind": "croco-crops",
        "path": str(crops),
        "entry": "demo-megadepth",
        "under": "Undistorted_SfM",
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"audit": {"jobs": 1, "training": {"crops": training}}}))
    result = runner.invoke(
        app,
        [
            *["leakage", "crops", "--json", "--params", str(params)],
            *["--catalog", str(REPO / "catalog")],
            *["--root", f"demo-megadepth={root / 'data/sources/demo-megadepth'}"],
        ],
    )
    assert result.exit_code in (0, 1), result.output
    return result.exit_code, json.loads(result.stdout)


def test_a_held_out_demo_scene_leaked_into_the_crops_is_caught(
    demo_root: Path, tmp_path: Path
) -> None:
    crop_list = tmp_path / "crops_release.txt"
    pair = leaked_list(demo_root, crop_list)
    settings = {"imsize": 64, "jobs": 1, "exclude_scenes": []}
    crops = croco_crops(settings, crop_list, demo_root / IMAGES, tmp_path / "leaked")

    code, report = audit(demo_root, crops, tmp_path)
    assert code == 1
    hits = report["hits"]
    assert isinstance(hits, list) and len(hits) == 2  # both images of the one leaked pair
    assert {hit["kind"] for hit in hits} == {"scene"}
    assert {hit["held_item"] for hit in hits} == {"demo04"}
    assert sorted(hit["item_path"] for hit in hits) == sorted(pair)
    for hit in hits:
        assert Path(hit["held_path"]).is_file()
        assert hit["held_path"].endswith(hit["item_path"])


def test_the_projects_exclusions_keep_the_held_out_scene_out(
    demo_root: Path, tmp_path: Path
) -> None:
    excluded = yaml.safe_load((REPO / "params.yaml").read_text())["croco-crops"]["exclude_scenes"]
    assert "demo04" in excluded
    crop_list = tmp_path / "crops_release.txt"
    leaked_list(demo_root, crop_list)
    settings = {"imsize": 64, "jobs": 1, "exclude_scenes": excluded}
    crops = croco_crops(settings, crop_list, demo_root / IMAGES, tmp_path / "clean")

    code, report = audit(demo_root, crops, tmp_path)
    assert code == 0, report
    assert report["hits"] == []
