"""The features and metrics gate kinds (vcat.gates.kinds.features, .metrics), declared in
params.yaml's model_gates and run through ``vcat check``.

Feature files are written with the features stage's own writer (vcat.features.h5layout) from
seeded arrays; each corruption (a NaN descriptor, an inf global descriptor, a zero descriptor,
a keypoint outside the input, mismatched counts, all-identical global descriptors) fails its
check naming the image, or the file for a check of the whole file. Metrics files are JSON
written here; a NaN, a missing required key, a value below its min and a bound on an absent
key each fail their check naming the dotted key. Files that cannot be read exit 2 naming the
file. The features stage's real output of the demo is checked when this checkout has it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner, Result

from vcat.cli import app
from vcat.features import h5layout

runner = CliRunner()

NAMES = [f"scene{scene}/images/{index:02d}.jpg" for scene in (1, 2) for index in range(3)]
ODD = "scene1/images/01.jpg"  # the image a corruption changes
PATCHES, DIMS, PATCH_SIZE, GRID = 16, 8, 8, 4  # a 4 x 4 grid of 8-pixel patches: a 32 px input
IMAGE_SIZE = [32, 24]  # landscape: the bottom patch row's centres (y = 28.5) lie in the padding
REAL_FEATURES = Path("data/prepared/features/demo-megadepth/demo-croco-vit.h5")
REAL_METRICS = Path("metrics/features/demo-megadepth.json")


def patch_centres() -> np.ndarray:
    """VOP's keypoints: the patch centres, row by row, ``p*j + p/2 + 0.5``."""
    centres = np.arange(GRID) * PATCH_SIZE + PATCH_SIZE / 2 + 0.5
    ys, xs = np.meshgrid(centres, centres, indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32)


def features_file(path: Path, change: str | None = None) -> Path:
    """A features file of NAMES in VOP's layout, with ``change`` made to ODD (or to every
    image, for ``identical_globals``)."""
    rng = np.random.default_rng(0)
    groups: dict[str, dict[str, np.ndarray]] = {}
    shared = rng.standard_normal(DIMS).astype(np.float32)
    for name in NAMES:
        groups[name] = {
            "keypoints": patch_centres(),
            "descriptors": rng.standard_normal((PATCHES, DIMS)).astype(np.float32),
            "global_descriptor": rng.standard_normal(DIMS).astype(np.float32),
            "image_size": np.array(IMAGE_SIZE, dtype=np.int64),
        }
        if change == "identical_globals":
            groups[name]["global_descriptor"] = shared.copy()
    odd = groups[ODD]
    if change == "nan_descriptor":
        odd["descriptors"][3, 1] = np.nan
    elif change == "inf_global":
        odd["global_descriptor"][0] = np.inf
    elif change == "zero_descriptor":
        odd["descriptors"][5] = 0.0
    elif change == "keypoint_outside":
        odd["keypoints"][0] = [40.0, 4.5]  # x beyond the 32 px input
    elif change == "fewer_descriptors":
        odd["descriptors"] = odd["descriptors"][:-1]
    elif change == "wider_image":
        odd["descriptors"] = rng.standard_normal((PATCHES, DIMS + 1)).astype(np.float32)
        odd["global_descriptor"] = rng.standard_normal(DIMS + 1).astype(np.float32)
    h5layout.assemble(path, h5layout.signature_text({"model": "test"}), NAMES, groups.__getitem__)
    return path


def gate(tmp_path: Path, artifact: Path, kind: str, checks: dict[str, Any] | None = None) -> Result:
    """``vcat check --json`` of ``artifact`` under the model gate ``g`` declaring ``checks``;
    the gate's folder goes to ``tmp_path``."""
    params = tmp_path / "params.yaml"
    declared = {"artifact": str(artifact), "kind": kind, "checks": checks or {}}
    params.write_text(yaml.safe_dump({"model_gates": {"g": declared}}))
    args = ["check", str(artifact), "--out", str(tmp_path / "g.gate"), "--params", str(params)]
    return runner.invoke(app, [*args, "--json"])


def failed(result: Result) -> dict[str, list[str]]:
    """Each failed check with its failing items (over all its expectations)."""
    found: dict[str, set[str]] = {}
    for check in json.loads(result.stdout)["checks"]:
        if not check["success"]:
            found.setdefault(check["check"], set()).update(check["items"])
    return {check: sorted(items) for check, items in found.items()}


# -- features ---------------------------------------------------------------------------------


def test_sound_features_pass_with_keypoints_in_the_padding(tmp_path: Path) -> None:
    artifact = features_file(tmp_path / "feats.h5")
    with h5py.File(artifact, "r") as file:  # VOP's grid covers the padded square
        assert file[ODD]["keypoints"][:, 1].max() > IMAGE_SIZE[1]
    result = gate(tmp_path, artifact, "features")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["kind"] == "features"
    assert document["rows"] == {"images": len(NAMES), "file": 1}
    assert {c["check"] for c in document["checks"]} == {
        "finite_features",
        "norms_in_range",
        "keypoints_inside",
        "counts_consistent",
        "not_collapsed",
    }
    facts = document["facts"]
    assert (facts["images"], facts["patches"], facts["dims"]) == (len(NAMES), PATCHES, DIMS)
    assert facts["failures"] == 0 and facts["sampled"] == len(NAMES)


def test_mean_cosine_distance_is_that_of_every_pair(tmp_path: Path) -> None:
    artifact = features_file(tmp_path / "feats.h5")
    with h5py.File(artifact, "r") as file:
        vectors = [file[name]["global_descriptor"][()].astype(np.float64) for name in NAMES]
    distances = [
        1 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
        for i, a in enumerate(vectors)
        for j, b in enumerate(vectors)
        if i != j
    ]
    facts = json.loads(gate(tmp_path, artifact, "features").stdout)["facts"]
    assert facts["mean_cosine_distance"] == pytest.approx(np.mean(distances), abs=1e-12)


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ("nan_descriptor", "finite_features"),
        ("inf_global", "finite_features"),
        ("zero_descriptor", "norms_in_range"),
        ("keypoint_outside", "keypoints_inside"),
        ("fewer_descriptors", "counts_consistent"),
        ("wider_image", "counts_consistent"),
    ],
)
def test_a_corrupted_image_fails_its_check_naming_it(
    tmp_path: Path, change: str, check: str
) -> None:
    artifact = features_file(tmp_path / "feats.h5", change)
    result = gate(tmp_path, artifact, "features")
    assert result.exit_code == 1, result.output
    assert failed(result) == {check: [ODD]}
    bad = (tmp_path / "g.gate" / "bad-items.tsv").read_text().splitlines()[1:]
    assert bad == [f"images\t{ODD}\t{check}"]


def test_identical_global_descriptors_fail_not_collapsed_naming_the_file(tmp_path: Path) -> None:
    artifact = features_file(tmp_path / "feats.h5", "identical_globals")
    result = gate(tmp_path, artifact, "features")
    assert result.exit_code == 1, result.output
    assert failed(result) == {"not_collapsed": [str(artifact)]}
    assert json.loads(result.stdout)["facts"]["mean_cosine_distance"] == 0.0


def test_declared_parameters_replace_the_defaults(tmp_path: Path) -> None:
    artifact = features_file(tmp_path / "feats.h5", "keypoint_outside")
    allowed = gate(tmp_path, artifact, "features", {"keypoints_inside": {"max_outside": 1}})
    assert allowed.exit_code == 0, allowed.output
    sound = features_file(tmp_path / "sound.h5")
    strict = gate(tmp_path, sound, "features", {"norms_in_range": {"max": 1.0}})
    assert strict.exit_code == 1
    assert failed(strict) == {"norms_in_range": sorted(NAMES)}  # N(0, 1) in 8 dims: norm > 1


@pytest.mark.parametrize(("recorded", "passes"), [(len(NAMES), True), (len(NAMES) + 1, False)])
def test_count_against_the_features_stage_metrics(
    tmp_path: Path, recorded: int, passes: bool
) -> None:
    artifact = features_file(tmp_path / "feats.h5")
    metrics = tmp_path / "features.json"
    metrics.write_text(json.dumps({"images": recorded, "dims": DIMS, "patches": PATCHES}))
    result = gate(tmp_path, artifact, "features", {"count": {"metrics": str(metrics)}})
    assert result.exit_code == (0 if passes else 1), result.output
    assert failed(result) == ({} if passes else {"count": [str(artifact)]})


def test_count_against_a_declared_number(tmp_path: Path) -> None:
    artifact = features_file(tmp_path / "feats.h5")
    result = gate(tmp_path, artifact, "features", {"count": {"equal": len(NAMES) - 1}})
    assert result.exit_code == 1
    assert failed(result) == {"count": [str(artifact)]}


def test_features_that_cannot_be_read_cannot_be_checked(tmp_path: Path) -> None:
    not_hdf5 = tmp_path / "broken.h5"
    not_hdf5.write_text("keypoints,descriptors\n")
    result = gate(tmp_path, not_hdf5, "features")
    assert result.exit_code == 2
    assert str(not_hdf5) in result.stderr and "not a readable HDF5 file" in result.stderr

    empty = tmp_path / "empty.h5"
    with h5py.File(empty, "w") as file:
        file.create_group("scene1").create_dataset("depth", data=np.zeros((4, 4)))
    result = gate(tmp_path, empty, "features")
    assert result.exit_code == 2
    assert str(empty) in result.stderr and "no image group" in result.stderr

    artifact = features_file(tmp_path / "feats.h5")
    absent = tmp_path / "absent.json"
    result = gate(tmp_path, artifact, "features", {"count": {"metrics": str(absent)}})
    assert result.exit_code == 2
    assert str(absent) in result.stderr and "no features metrics" in result.stderr


@pytest.mark.slow  # the demo's features come from the training chain
def test_the_demo_features_file_passes(tmp_path: Path, demo_trained_root: Path) -> None:
    artifact = demo_trained_root / REAL_FEATURES
    metrics = demo_trained_root / REAL_METRICS
    recorded = json.loads(metrics.read_text())
    result = gate(tmp_path, artifact, "features", {"count": {"metrics": str(metrics)}})
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)["facts"]
    assert facts["images"] == len(h5layout.image_names(artifact)) == recorded["images"]
    assert (facts["patches"], facts["dims"]) == (recorded["patches"], recorded["dims"])


# -- metrics ----------------------------------------------------------------------------------


def evaluation(**changes: Any) -> dict[str, Any]:
    """An evaluation's metrics, with ``changes`` set by dotted key (None removes one)."""
    document: dict[str, Any] = {
        "overlap": {"vop": {"mAP": 0.61, "recall@1": 0.5}},
        "pose": {"auc@5": 0.21, "failures": 3},
        "split": "test",
        "curve": [0.1, 0.2],
    }
    for key, value in changes.items():
        *parents, leaf = key.split(".")
        target = document
        for parent in parents:
            target = target[parent]
        if value is None:
            del target[leaf]
        else:
            target[leaf] = value
    return document


def metrics_file(path: Path, document: Any) -> Path:
    path.write_text(json.dumps(document))  # NaN and inf as JSON's NaN, Infinity
    return path


DECLARED = {
    "required": {"keys": ["overlap.vop.mAP", "pose"]},
    "bounds": {"keys": {"overlap.vop.mAP": {"min": 0.5, "max": 1.0}, "pose.auc@5": {"min": 0}}},
}


def test_sound_metrics_pass(tmp_path: Path) -> None:
    artifact = metrics_file(tmp_path / "eval.json", evaluation())
    result = gate(tmp_path, artifact, "metrics", DECLARED)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    # 7 leaves, and the row of the required key `pose`, an object
    assert document["rows"] == {"metrics": 8}
    assert document["facts"] == {"metrics": 7, "numbers": 6, "not_finite": 0, "absent": 0}
    assert {c["check"] for c in document["checks"]} == {"finite_metrics", "required", "bounds"}


@pytest.mark.parametrize("value", [math.nan, math.inf, None])
def test_a_metric_that_is_not_finite_fails_naming_its_key(tmp_path: Path, value: Any) -> None:
    document = evaluation()
    document["pose"]["auc@5"] = value  # None: JSON's null, a metric not computed
    artifact = metrics_file(tmp_path / "eval.json", document)
    result = gate(tmp_path, artifact, "metrics")
    assert result.exit_code == 1, result.output
    assert failed(result) == {"finite_metrics": ["pose.auc@5"]}


@pytest.mark.parametrize(
    ("changes", "check", "key"),
    [
        ({"overlap.vop.mAP": None}, "required", "overlap.vop.mAP"),
        ({"overlap.vop.mAP": 0.4}, "bounds", "overlap.vop.mAP"),
        ({"pose.auc@5": -0.1}, "bounds", "pose.auc@5"),
    ],
)
def test_a_missing_or_out_of_bounds_metric_fails_naming_its_key(
    tmp_path: Path, changes: dict[str, Any], check: str, key: str
) -> None:
    artifact = metrics_file(tmp_path / "eval.json", evaluation(**changes))
    result = gate(tmp_path, artifact, "metrics", DECLARED)
    assert result.exit_code == 1, result.output
    if check == "required":  # an absent key is out of its bounds too
        assert failed(result) == {"required": [key], "bounds": [key]}
    else:
        assert failed(result) == {check: [key]}


def test_a_bound_on_an_absent_or_non_numeric_key_fails_naming_it(tmp_path: Path) -> None:
    artifact = metrics_file(tmp_path / "eval.json", evaluation())
    bounds = {"retrieval.vop.mAP": {"min": 0.5}, "split": {"max": 1}, "overlap": {}}
    result = gate(tmp_path, artifact, "metrics", {"bounds": {"keys": bounds}})
    assert result.exit_code == 1, result.output
    assert failed(result) == {"bounds": ["overlap", "retrieval.vop.mAP", "split"]}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[0.5, 0.6]", "a JSON list, not an object of metrics"),
        ('{"mAP": 0.5', "not valid JSON"),
        ('{"mAP": 0.5, "mAP": 0.6}', "the key 'mAP' is given twice"),
        ('{"a.b": 1, "a": {"b": 2}}', "the key path 'a.b' names two values"),
        ("{}", "holds no metric"),
    ],
)
def test_metrics_that_cannot_be_read_cannot_be_checked(
    tmp_path: Path, text: str, message: str
) -> None:
    artifact = tmp_path / "eval.json"
    artifact.write_text(text)
    result = gate(tmp_path, artifact, "metrics")
    assert result.exit_code == 2
    assert str(artifact) in result.stderr and message in result.stderr


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ({"required": {"keys": "overlap.vop.mAP"}}, "required: keys must be a list"),
        ({"bounds": {"keys": ["overlap.vop.mAP"]}}, "bounds: keys must map dotted keys"),
        ({"bounds": {"keys": {"pose": {"low": 1}}}}, "'pose' must map to {min, max}"),
        ({"bounds": {"keys": {"pose": {"min": 2, "max": 1}}}}, "min 2.0 above max 1.0"),
    ],
)
def test_a_malformed_declaration_is_refused(
    tmp_path: Path, checks: dict[str, Any], message: str
) -> None:
    artifact = metrics_file(tmp_path / "eval.json", evaluation())
    result = gate(tmp_path, artifact, "metrics", checks)
    assert result.exit_code == 2
    assert message in result.stderr
