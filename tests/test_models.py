"""Models from the catalog (vcat.models): timm builds the architecture, weights come only from a
local file verified against the catalog, the fetch record or dvc.lock."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vcat.catalog.loader import load_around
from vcat.cli import app
from vcat.models.factory import ModelError, build_model, input_config, read_state
from vcat.models.weights import WeightsError, verified_weights
from vcat.settings import SETTINGS_ENV

ARCH = "vit_tiny_patch16_224"
KWARGS = {"img_size": 32, "depth": 2}


def tiny_state(seed: int = 0) -> dict[str, torch.Tensor]:
    import timm

    torch.manual_seed(seed)
    return timm.create_model(ARCH, pretrained=False, **KWARGS).state_dict()


def model_yaml(weights: str, extra: str = "") -> str:
    return f"""\
title: Tiny ViT
description: A two-block ViT on 32x32 images, for tests.
licence: {{name: CC0-1.0, redistribution: allowed}}
architecture:
  library: timm
  name: {ARCH}
  kwargs: {json.dumps(KWARGS)}
{weights}input:
  width: 32
  height: 32
  mean: [0.5, 0.5, 0.5]
  std: [0.25, 0.25, 0.25]
{extra}"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "catalog" / "models").mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv(SETTINGS_ENV, raising=False)
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    return root


def add_model(project: Path, name: str, text: str):  # -> Entry
    (project / "catalog" / "models" / f"{name}.yaml").write_text(text)
    return load_around(project / "catalog", name).get(name)


def save(state: dict[str, torch.Tensor], path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": 3}, path)
    return hashlib.md5(path.read_bytes()).hexdigest()


def same_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(value, state[key]) for key, value in model.state_dict().items())


def weights_yaml(filename: str, checksum: str, url: str = "https://example.org/w.pth") -> str:
    return f"weights:\n  name: w\n  url: {url}\n  filename: {filename}\n  checksum: {checksum}\n"


def test_published_checksum_builds_the_model_with_those_weights(project: Path) -> None:
    state = tiny_state()
    digest = save(state, project / "data" / "sources" / "tiny-vit" / "tiny.pth")
    entry = add_model(project, "tiny-vit", model_yaml(weights_yaml("tiny.pth", f"md5:{digest}")))
    model = build_model(entry, project)
    assert same_weights(model, state) and not model.training
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)
    assert verified_weights(entry, project).checked_against == "catalog"
    assert input_config(entry).mean == (0.5, 0.5, 0.5)


def test_a_changed_file_is_refused_with_how_to_repair(project: Path) -> None:
    path = project / "data" / "sources" / "tiny-vit" / "tiny.pth"
    digest = save(tiny_state(), path)
    save(tiny_state(seed=1), path)  # another version at the same place
    entry = add_model(project, "tiny-vit", model_yaml(weights_yaml("tiny.pth", f"md5:{digest}")))
    with pytest.raises(WeightsError, match=r"damaged or another version.*vcat fetch tiny-vit"):
        build_model(entry, project)


def test_missing_weights_say_how_to_obtain_them_and_nothing_is_downloaded(project: Path) -> None:
    entry = add_model(project, "tiny-vit", model_yaml(weights_yaml("tiny.pth", "md5:" + "0" * 32)))
    with pytest.raises(WeightsError, match=r"not at .*tiny\.pth: run `vcat fetch tiny-vit`"):
        build_model(entry, project)
    assert not (project / "data" / "sources" / "tiny-vit").exists()


def test_unpublished_checksum_uses_the_fetch_record(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror = tmp_path / "mirror"
    monkeypatch.setenv("VCAT_LOCAL_ROOTS", str(mirror))  # see vcat/localfiles.py
    state = tiny_state()
    save(state, mirror / "tiny.pth")
    text = model_yaml(weights_yaml("tiny.pth", "unpublished", (mirror / "tiny.pth").as_uri()))
    entry = add_model(project, "tiny-vit", text)
    with pytest.raises(WeightsError, match="no fetch of it is recorded"):
        (project / "data" / "sources" / "tiny-vit").mkdir(parents=True)
        (project / "data" / "sources" / "tiny-vit" / "tiny.pth").write_bytes(
            (mirror / "tiny.pth").read_bytes()
        )
        build_model(entry, project)
    (project / "data" / "sources" / "tiny-vit" / "tiny.pth").unlink()
    fetched = CliRunner().invoke(app, ["fetch", "tiny-vit", "--no-dvc"])
    assert fetched.exit_code == 0, fetched.output
    model = build_model(entry, project)
    assert same_weights(model, state)
    assert verified_weights(entry, project).checked_against == "fetch record"
    placed = project / "data" / "sources" / "tiny-vit" / "tiny.pth"
    damaged = bytearray(placed.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF  # one byte flipped after the fetch
    placed.write_bytes(bytes(damaged))
    with pytest.raises(WeightsError, match="differs from what `vcat fetch` placed"):
        build_model(entry, project)


def test_trained_checkpoint_is_checked_against_dvc_lock(project: Path) -> None:
    state = tiny_state()
    digest = save(state, project / "models" / "tiny-vit" / "checkpoint.pt")
    produced = "produced_by:\n  stage: pretrain\n  checkpoint: models/tiny-vit/checkpoint.pt\n"
    entry = add_model(project, "tiny-vit", model_yaml("", produced))
    with pytest.raises(WeightsError, match=r"dvc\.lock"):
        build_model(entry, project)  # no lock yet
    lock = {
        "schema": "2.0",
        "stages": {
            "pretrain@tiny": {
                "cmd": "x",
                "outs": [{"path": "models/tiny-vit/checkpoint.pt", "md5": digest, "size": 1}],
            }
        },
    }
    (project / "dvc.lock").write_text(json.dumps(lock))  # JSON is YAML
    assert same_weights(build_model(entry, project), state)
    save(tiny_state(seed=2), project / "models" / "tiny-vit" / "checkpoint.pt")
    with pytest.raises(WeightsError, match=r"dvc checkout models/tiny-vit/checkpoint\.pt"):
        build_model(entry, project)


def test_weights_of_another_architecture_name_the_keys(project: Path) -> None:
    import timm

    other = timm.create_model(ARCH, pretrained=False, img_size=32, depth=3).state_dict()
    digest = save(other, project / "data" / "sources" / "tiny-vit" / "tiny.pth")
    entry = add_model(project, "tiny-vit", model_yaml(weights_yaml("tiny.pth", f"md5:{digest}")))
    with pytest.raises(WeightsError, match=r"unexpected \d+ \(blocks\.2\."):
        build_model(entry, project)


def test_checkpoints_that_hold_code_or_no_tensors_are_refused(tmp_path: Path) -> None:
    class Payload:
        def __reduce__(self):  # runs on a plain unpickling: weights_only must refuse it
            return (print, ("owned",))

    path = tmp_path / "evil.pth"
    torch.save({"model": Payload()}, path)
    with pytest.raises(WeightsError, match="not a readable checkpoint"):
        read_state(path)
    torch.save({"model": {"step": 3}}, tmp_path / "plain.pth")
    with pytest.raises(WeightsError, match="no mapping of parameter names to tensors"):
        read_state(tmp_path / "plain.pth")


def test_unknown_architectures_and_external_ones_are_model_errors(project: Path) -> None:
    text = model_yaml(weights_yaml("tiny.pth", "md5:" + "0" * 32)).replace(
        ARCH, "vit_tiny_patch16_22"
    )
    entry = add_model(project, "typo-vit", text)
    with pytest.raises(ModelError, match="did you mean vit_tiny_patch16_224"):
        build_model(entry, project, load_weights=False)
    external = text.replace("library: timm", "library: external")
    entry = add_model(project, "other-vit", external)
    with pytest.raises(ModelError, match="external architecture"):
        build_model(entry, project, load_weights=False)


def test_schema_keeps_trained_checkpoints_under_models(project: Path) -> None:
    produced = "produced_by:\n  stage: pretrain\n  checkpoint: data/tiny.pt\n"
    (project / "catalog" / "models" / "bad.yaml").write_text(model_yaml("", produced))
    catalog = load_around(project / "catalog", "bad")
    assert any("must lie under models/" in p.message for p in catalog.problems)


def test_load_model_by_name_and_unknown_names(project: Path) -> None:
    from vcat.models.factory import load_model

    state = tiny_state()
    digest = save(state, project / "data" / "sources" / "tiny-vit" / "tiny.pth")
    add_model(project, "tiny-vit", model_yaml(weights_yaml("tiny.pth", f"md5:{digest}")))
    assert same_weights(load_model("tiny-vit", project), state)
    with pytest.raises(ModelError, match="tiny-vit"):  # the close name is offered
        load_model("tiny-vi", project)
