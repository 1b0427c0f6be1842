"""The evaluate-copydetect stage and its image-folder descriptors: a DISC21-style set made here
from seeded textures (exact copies, crops, distractors), a tiny seeded ViT backbone, ISC2021's
predictions CSV read back the way its scorer reads it, and every bad input named."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from stages import evaluate_copydetect as stage
from tests.test_features import AVG_VIT, add_backbone
from vcat.catalog.loader import load_around
from vcat.evaluation.copydetect import Prediction, micro_average_precision
from vcat.evaluation.descriptors import (
    DescriptorError,
    describe,
    image_files,
    network_input,
    unit_rows,
)
from vcat.features.extract import Extractor
from vcat.models.factory import build_model, input_config
from vcat.stage import StageError

CPU = {"device": "cpu", "workers": 0}
SCORE_LINE = re.compile(r"^(Q\d+),(R\d+),(-?\d+\.\d{6})$")


@pytest.fixture(autouse=True)
def _no_device_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VCAT_DEVICE", raising=False)


def texture(rng: np.random.Generator, height: int = 72, width: int = 96) -> np.ndarray:
    """A seeded RGB image: per channel a sum of random plane waves, and two flat rectangles."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    image = np.zeros((height, width, 3))
    for channel in range(3):
        for _ in range(3):
            fy, fx = rng.uniform(-0.3, 0.3, 2)
            image[..., channel] += rng.uniform(0.3, 1) * np.sin(
                fy * ys + fx * xs + rng.uniform(0, 6)
            )
    image = (image - image.min()) / (image.max() - image.min()) * 255
    for _ in range(2):
        y, x = rng.integers(0, height - 20), rng.integers(0, width - 20)
        image[y : y + rng.integers(8, 20), x : x + rng.integers(8, 20)] = rng.integers(0, 256, 3)
    return image.astype(np.uint8)


def write_image(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def make_set(root: Path, crops: bool = True, seed: int = 0) -> list[tuple[str, str | None]]:
    """Six references R0..R5 (PNG); queries Q0..Q2 exact copies of R1, R3, R4 (same bytes),
    with ``crops`` Q3, Q4 central crops of R0, R5; two distractors (new textures); the
    ground truth in DISC21's form. Returns its rows."""
    rng = np.random.default_rng(seed)
    references = [texture(rng) for _ in range(6)]
    for index, image in enumerate(references):
        write_image(root / "references" / f"R{index}.png", image)
    rows: list[tuple[str, str | None]] = []
    (root / "queries").mkdir()
    for query, reference in enumerate([1, 3, 4]):
        shutil.copy(root / "references" / f"R{reference}.png", root / "queries" / f"Q{query}.png")
        rows.append((f"Q{query}", f"R{reference}"))
    if crops:
        for query, reference in ((3, 0), (4, 5)):
            write_image(root / "queries" / f"Q{query}.png", references[reference][12:60, 16:80])
            rows.append((f"Q{query}", f"R{reference}"))
    for query in (5, 6):
        write_image(root / "queries" / f"Q{query}.png", texture(rng))
        rows.append((f"Q{query}", None))
    lines = ["query_id,reference_id", *(f"{q},{r or ''}" for q, r in rows)]
    (root / "ground_truth.csv").write_text("\n".join(lines) + "\n")
    return rows


def run(project: Path, root: Path, **conf: object) -> tuple[Path, dict]:
    output = project / "out" / "predictions.csv"
    metrics = project / "out" / "metrics.json"
    stage.main({**CPU, **conf}, root, "tiny", output, metrics, project=project)
    return output, json.loads(metrics.read_text())


def read_predictions(path: Path) -> list[Prediction]:
    """The CSV as ISC2021's ``read_predictions`` reads it: header skipped, each line split at
    commas into query, reference and a float score."""
    lines = path.read_text().splitlines()
    assert lines[0] == "query_id,reference_id,score"
    predictions = []
    for line in lines[1:]:
        assert SCORE_LINE.match(line), line
        query, reference, score = line.split(",")
        predictions.append(Prediction(query, reference, float(score)))
    return predictions


# --- descriptors of an image folder ---


def test_image_files_are_the_folders_images_by_stem(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("b.png", "a.jpg", "sub/c.png"):
        write_image(tmp_path / "set" / name, texture(rng))
    (tmp_path / "set" / "notes.txt").write_text("not an image")
    found = image_files(tmp_path / "set")
    assert list(found) == ["a", "b"]  # sorted ids; sub-folders and other files are not images
    assert found["a"] == tmp_path / "set" / "a.jpg"

    write_image(tmp_path / "set" / "a.png", texture(rng))
    with pytest.raises(DescriptorError, match=r"a\.png: id 'a' is also a\.jpg"):
        image_files(tmp_path / "set")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DescriptorError, match="empty: no image file"):
        image_files(tmp_path / "empty")
    with pytest.raises(DescriptorError, match="absent: no such folder"):
        image_files(tmp_path / "absent")


def test_network_input_fills_the_square_input_with_the_whole_image(tmp_path: Path) -> None:
    image = np.zeros((20, 40, 3), dtype=np.uint8)
    image[:, :20] = (255, 0, 0)  # left half red, right half blue
    image[:, 20:] = (0, 0, 255)
    write_image(tmp_path / "wide.png", image)
    pixels = network_input(tmp_path / "wide.png", 16, "area")
    # the aspect ratio is not kept: 40x20 becomes 16x16, each half 8 columns, no padding
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    assert (pixels[:, :8] == (255, 0, 0)).all() and (pixels[:, 8:] == (0, 0, 255)).all()

    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DescriptorError, match=r"broken\.png: does not decode"):
        network_input(tmp_path / "broken.png", 16, "area")
    with pytest.raises(DescriptorError, match="interpolation 'cubic'"):
        network_input(tmp_path / "wide.png", 16, "cubic")


def test_describe_gives_unit_descriptors_in_order_whatever_the_batches(project: Path) -> None:
    add_backbone(project, "tiny", AVG_VIT)
    rng = np.random.default_rng(2)
    paths = []
    for index in range(5):
        paths.append(project / "images" / f"{index}.png")
        write_image(paths[-1], texture(rng, 30 + 5 * index, 40))
    entry = load_around(project / "catalog", "tiny").get("tiny")
    config = input_config(entry)
    cpu = torch.device("cpu")
    torch.manual_seed(9)
    networks = [
        Extractor(build_model(entry, project, load_weights=load), 32, config.mean, config.std, cpu)
        for load in (True, False)
    ]
    steps: list[int] = []
    whole = describe(
        paths, networks, interpolation="area", batch_size=2, workers=0, step=steps.append
    )
    assert steps == [2, 2, 1]
    assert [d.shape for d in whole] == [(5, 192), (5, 192)]
    for descriptors in whole:
        assert np.allclose(np.linalg.norm(descriptors, axis=1), 1, atol=1e-6)
    assert not np.allclose(whole[0], whole[1])  # two networks, two descriptors
    # each row is the network's own global descriptor of that image, normalised
    for row, path in enumerate(paths):
        single = torch.from_numpy(network_input(path, 32, "area")[None])
        expected = networks[0](single).global_descriptor[0]
        assert np.allclose(whole[0][row], expected / np.linalg.norm(expected), atol=1e-5)
    one_by_one = describe(paths, networks, interpolation="area", batch_size=1, workers=1)
    for a, b in zip(whole, one_by_one, strict=True):
        assert np.allclose(a, b, atol=1e-5)

    paths[3].write_bytes(b"GIF89a broken")
    for workers in (0, 1):  # a worker process's failure names the file too
        with pytest.raises(DescriptorError, match=r"3\.png: does not decode"):
            describe(paths, networks[:1], interpolation="area", batch_size=2, workers=workers)


def test_unit_rows_names_the_image_of_a_zero_descriptor() -> None:
    rows = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    with pytest.raises(DescriptorError, match=r"b\.png: its descriptor is zero"):
        unit_rows(rows, [Path("a.png"), Path("b.png")])
    assert unit_rows(rows[:1], [Path("a.png")])[0] == pytest.approx([0.6, 0.8])


# --- the stage ---


def test_exact_copies_rank_first_and_the_metrics_are_iscs(project: Path) -> None:
    add_backbone(project, "tiny", AVG_VIT, seed=1)
    rows = make_set(project / "set")
    output, metrics = run(project, project / "set", k=3, batch_size=2, seed=7)

    assert metrics["model"] == "tiny"
    assert (metrics["k"], metrics["queries"], metrics["distractors"]) == (3, 7, 2)
    assert metrics["references"] == 6
    assert set(metrics) == {
        "model", "k", "queries", "distractors", "references", "micro_ap", "recall_at_1",
        "recall_at_p90", "baseline",
    }  # fmt: skip
    assert metrics["baseline"]["kind"] == "untrained" and metrics["baseline"]["seed"] == 7
    for values in (metrics, metrics["baseline"]):
        for key in ("micro_ap", "recall_at_1", "recall_at_p90"):
            assert 0 <= values[key] <= 1

    predictions = read_predictions(output)
    assert len(predictions) == 7 * 3  # k per query
    by_query: dict[str, list[Prediction]] = {}
    for p in predictions:
        by_query.setdefault(p.query, []).append(p)
    assert list(by_query) == [f"Q{i}" for i in range(7)]  # queries in id order
    for found in by_query.values():
        assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
        assert len({p.reference for p in found}) == 3
    # the exact copies find their reference first, at cosine 1
    for query, reference in rows[:3]:
        assert by_query[query][0].reference == reference
        assert by_query[query][0].score == pytest.approx(1.0, abs=2e-6)
        assert by_query[query][1].score < 0.9999
    # the metrics are those of the file, as ISC2021's scorer reads it
    assert metrics["micro_ap"] == micro_average_precision(predictions, rows).micro_average_precision
    first = [found[0].reference for found in by_query.values()]
    hits = sum(ref == reference for ref, (_, reference) in zip(first, rows, strict=True))
    assert metrics["recall_at_1"] == pytest.approx(hits / 5)
    assert metrics["recall_at_1"] >= 3 / 5

    # a second run writes the same bytes
    before = output.read_bytes(), (project / "out" / "metrics.json").read_bytes()
    run(project, project / "set", k=3, batch_size=3, seed=7)
    assert (output.read_bytes(), (project / "out" / "metrics.json").read_bytes()) == before


def test_only_exact_copies_give_micro_ap_one(project: Path) -> None:
    # every right prediction scores 1 and every wrong one less: the pooled list starts with
    # the 3 right ones, so precision is 1 at each of them: muAP = (1 + 1 + 1) / 3
    add_backbone(project, "tiny", AVG_VIT, seed=1)
    make_set(project / "set", crops=False)
    _, metrics = run(project, project / "set", k=2)
    for values in (metrics, metrics["baseline"]):
        assert values["micro_ap"] == 1.0
        assert values["recall_at_1"] == 1.0
        assert values["recall_at_p90"] == 1.0


def test_the_baseline_is_the_untrained_network_of_its_seed(project: Path) -> None:
    # the backbone's checkpoint is timm's initialisation under seed 5, so the baseline of
    # seed 5 is the same network and scores the same; seed 6 is another network
    add_backbone(project, "tiny", AVG_VIT, seed=5)
    make_set(project / "set")
    _, same = run(project, project / "set", k=6, seed=5)
    scored = {key: same[key] for key in ("micro_ap", "recall_at_1", "recall_at_p90")}
    assert same["baseline"] == {"kind": "untrained", "seed": 5, **scored}
    assert 0 < same["micro_ap"] < 1  # the crops are not all found first: a real comparison
    _, other = run(project, project / "set", k=6, seed=6)
    assert other["micro_ap"] == same["micro_ap"]  # the backbone did not change
    assert other["baseline"]["micro_ap"] != same["baseline"]["micro_ap"]


def _append(path: Path, text: str) -> None:
    path.write_text(path.read_text() + text)


def _replace(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


BAD_SETS: dict[str, tuple[Callable[[Path], object], str]] = {
    "no references folder": (
        lambda root: shutil.rmtree(root / "references"),
        r"set/references: no such folder",
    ),
    "no queries": (
        lambda root: [p.unlink() for p in (root / "queries").iterdir()],
        r"set/queries: no image file",
    ),
    "no ground truth": (
        lambda root: (root / "ground_truth.csv").unlink(),
        r"set/ground_truth\.csv: no such file",
    ),
    "malformed line": (
        lambda root: _replace(root / "ground_truth.csv", "Q1,R3\n", "Q1,R3,0.5\n"),
        r"ground_truth\.csv:3: expected 2 fields",
    ),
    "absent reference": (
        lambda root: _replace(root / "ground_truth.csv", "Q2,R4\n", "Q2,R44\n"),
        r"ground_truth\.csv:4: reference 'R44' has no image in .*set/references",
    ),
    "absent query": (
        lambda root: _append(root / "ground_truth.csv", "Q9,R1\n"),
        r"ground_truth\.csv:9: query 'Q9' has no image in .*set/queries",
    ),
    "query without a row": (
        lambda root: _replace(root / "ground_truth.csv", "Q6,\n", ""),
        r"queries/Q6\.png: query 'Q6' has no row in .*ground_truth\.csv; add `Q6,`",
    ),
    "no copy at all": (
        lambda root: (root / "ground_truth.csv").write_text(
            "query_id,reference_id\n" + "".join(f"Q{i},\n" for i in range(7))
        ),
        r"ground_truth\.csv: no query names a reference",
    ),
    "undecodable query": (
        lambda root: (root / "queries" / "Q4.png").write_bytes(b"\xff\xd8\xff truncated"),
        r"queries/Q4\.png: does not decode as an image",
    ),
    "k above the references": (
        lambda root: None,
        r"k=7, but .*set/references holds 6 image\(s\)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_SETS))
def test_a_bad_set_is_an_error_naming_the_file(project: Path, case: str) -> None:
    add_backbone(project, "tiny", AVG_VIT)
    make_set(project / "set")
    spoil, message = BAD_SETS[case]
    spoil(project / "set")
    with pytest.raises(StageError, match=message):
        run(project, project / "set", k=7 if case.startswith("k ") else 2)
    assert not (project / "out" / "predictions.csv").exists()
    assert not (project / "out" / "metrics.json").exists()


def test_the_command_runs_with_params_and_fails_in_one_line(project: Path) -> None:
    add_backbone(project, "tiny", AVG_VIT)
    make_set(project / "set")
    params = project / "params.yaml"
    params.write_text(
        "evaluate-copydetect:\n  model: tiny\n  k: 2\n  batch_size: 4\n  workers: 0\n"
        "  device: cpu\n  seed: 0\n"
    )
    app = typer.Typer()
    app.command()(stage.command)
    output, metrics = project / "eval" / "predictions.csv", project / "eval" / "m.json"
    args = [str(project / "set"), str(output), "--model", "tiny", "--metrics", str(metrics)]
    result = CliRunner().invoke(app, [*args, "--params", str(params)])
    assert result.exit_code == 0, result.output
    assert len(read_predictions(output)) == 7 * 2
    assert json.loads(metrics.read_text())["k"] == 2

    result = CliRunner().invoke(app, [*args[:2], "--model", "nonesuch"])
    assert result.exit_code == 2
    assert "nonesuch" in result.output
    params.write_text("evaluate-copydetect:\n  k: 0\n")
    result = CliRunner().invoke(app, [*args, "--params", str(params)])
    assert result.exit_code == 2
    assert "k must be at least 1" in result.output
    params.write_text("evaluate-copydetect:\n  k: 2\n  workers: 0\n  device: cpu\n")
    (project / "set" / "ground_truth.csv").unlink()
    result = CliRunner().invoke(app, args)  # the project's params.yaml
    assert result.exit_code == 2
    assert "ground_truth.csv: no such file" in result.output
