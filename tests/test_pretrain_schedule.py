"""The pretrain stage's schedule from params: as given, or stretched to the iteration count of
the published data by the catalog's counts (`equivalent_to_published`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from stages.pretrain import PretrainError, _schedule
from vcat.training.schedule import Schedule

CROCO = {"epochs": 100, "warmup_epochs": 10, "cosine_epochs": 200}
ENTRY = """\
title: Crop pairs
description: Two subsets, one released in part.
licence: {{name: CC-BY-4.0, url: https://example.org/l, redistribution: allowed}}
access: {{kind: public}}
sources:
  - name: pairs
    url: https://example.org/pairs.zip
    filename: pairs.zip
    size: 10
    checksum: unpublished
subsets:
  - name: whole
    count: {{unit: pairs, published: {whole}}}
    include: ["whole/*.txt"]
  - name: part
    count: {{unit: pairs, published: {published}, released: {released}}}
    include: ["part/*.txt"]
  - name: uncounted
    include: ["uncounted/*.txt"]
"""


def conf(*refs: str) -> object:
    return OmegaConf.create({"schedule": CROCO, "equivalent_to_published": list(refs)})


@pytest.fixture
def catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty catalog named by VCAT_CATALOG; each test writes its entry."""
    (tmp_path / "datasets").mkdir()
    monkeypatch.setenv("VCAT_CATALOG", str(tmp_path))
    return tmp_path


def write_entry(catalog: Path, whole: int, published: int, released: int) -> None:
    text = ENTRY.format(whole=whole, published=published, released=released)
    (catalog / "datasets" / "crops.yaml").write_text(text)


def test_no_reference_keeps_the_schedule() -> None:
    assert _schedule(conf()) == Schedule(100, 10, 200)


def test_croco_v2_case_exactly(catalog: Path) -> None:
    # 300 + 200 published, 300 + 100 released: 500 / 400 = 1.25, CroCo's released ratio
    write_entry(catalog, whole=300, published=200, released=100)
    assert _schedule(conf("crops:whole", "crops:part")) == Schedule(125, 12, 250)


def test_a_subset_without_released_count_counts_as_whole(catalog: Path) -> None:
    write_entry(catalog, whole=300, published=200, released=200)
    assert _schedule(conf("crops:whole", "crops:part")) == Schedule(100, 10, 200)


def test_a_subset_without_count_is_refused(catalog: Path) -> None:
    write_entry(catalog, whole=300, published=200, released=100)
    with pytest.raises(PretrainError, match=r"'crops:uncounted'.*'published'"):
        _schedule(conf("crops:whole", "crops:uncounted"))
    with pytest.raises(PretrainError, match="equivalent_to_published"):
        _schedule(conf("nothing:here"))


def test_the_real_catalog_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    """ARKitScenes, MegaDepth and IndoorVL as the catalog records them: 4,678,892 pairs
    published, 3,229,431 released, 1.4488 times; 3DStreetView has no published count yet, so
    CroCo v2's whole mix (ratio 1.25) cannot be formed from the catalog."""
    monkeypatch.delenv("VCAT_CATALOG", raising=False)
    refs = [f"croco-crop-metadata:{name}" for name in ("arkitscenes", "megadepth", "indoorvl")]
    assert _schedule(conf(*refs)) == Schedule(144, 14, 289)
    with pytest.raises(PretrainError, match="3dstreetview"):
        _schedule(conf(*refs, "croco-crop-metadata:3dstreetview"))
